"""One mask file per structure → one nnU-Net label map (``oxunet import-masks``).

Exports from clinical tools often give a folder per patient with the image and a binary mask
per structure. nnU-Net needs a single label file per case; combining masks by hand is where
"shape mismatch" and silently lost overlaps come from. Here every mask is checked against the
image geometry, and overlaps follow a declared policy:

* ``error`` (default): any voxel in two masks stops the import, naming case, structures and count;
* ``last-wins``: structures are painted in the declared label order, later ones overwrite;
* ``regions``: each combination of structures that occurs gets its own label, and dataset.json
  declares every structure as the region (list of labels) that contains it, so region-based
  training learns each structure with its overlaps intact.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._workers import map_cases
from ..io import atomic_path
from ..errors import DatasetError

if TYPE_CHECKING:
    import SimpleITK as sitk

OVERLAP_POLICIES = ("error", "last-wins", "regions")
MASK_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".gipl")


class ImportMasksError(DatasetError):
    """A case cannot be imported; the message names the case and file."""


@dataclass
class CaseSource:
    images: list[Path]
    masks: dict[str, Path] = field(default_factory=dict)


def _strip_ending(name: str) -> str | None:
    for ending in MASK_ENDINGS:
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return None


def cases_from_folders(root: str | Path, image_glob: str = "image*") -> dict[str, CaseSource]:
    """One sub-folder per case: image file(s) matching ``image_glob`` (several = channels, sorted)
    and one mask per structure named ``<structure><ending>``."""
    root = Path(root)
    cases = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.glob(image_glob) if p.is_file())
        if not images:
            raise ImportMasksError(f"{folder}: no image file matches {image_glob!r}")
        masks = {}
        for p in sorted(folder.iterdir()):
            stem = _strip_ending(p.name)
            if p in images or stem is None or not p.is_file():
                continue
            masks[stem] = p
        cases[folder.name] = CaseSource(images, masks)
    if not cases:
        raise ImportMasksError(f"{root}: no case folders found")
    return cases


def cases_from_csv(csv_file: str | Path) -> dict[str, CaseSource]:
    """A CSV with columns ``case,image,structure,mask`` (one row per mask; ``image`` may list
    channels separated by ';'; relative paths are relative to the CSV's folder)."""
    csv_file = Path(csv_file)
    base = csv_file.parent
    cases: dict[str, CaseSource] = {}
    with csv_file.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"case", "image", "structure", "mask"} - set(reader.fieldnames or [])
        if missing:
            raise ImportMasksError(f"{csv_file}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            images = [base / p.strip() for p in row["image"].split(";") if p.strip()]
            case = cases.setdefault(row["case"], CaseSource(images))
            if images and images != case.images:
                raise ImportMasksError(f"{csv_file}:{line}: case {row['case']} lists different images than on an earlier row")
            if row["structure"]:
                case.masks[row["structure"]] = base / row["mask"].strip()
    return cases


def _read(path: Path) -> sitk.Image:
    import SimpleITK as sitk

    if not path.is_file():
        raise ImportMasksError(f"{path}: file not found")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ImportMasksError(f"{path}: cannot be read ({str(e).strip().splitlines()[-1]})") from None


def _check_geometry(case: str, ref, ref_path: Path, img, path: Path) -> None:
    if img.GetSize() != ref.GetSize():
        raise ImportMasksError(f"case {case}: {path.name} has size {img.GetSize()}, image {ref_path.name} has {ref.GetSize()}")
    if not np.allclose(img.GetSpacing(), ref.GetSpacing(), rtol=1e-4):
        raise ImportMasksError(f"case {case}: {path.name} spacing {img.GetSpacing()} differs from image {ref.GetSpacing()}")
    if not np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-3) or not np.allclose(img.GetDirection(), ref.GetDirection(), atol=1e-4):
        raise ImportMasksError(f"case {case}: {path.name} origin/direction differ from image {ref_path.name} (not aligned)")


def _structure_bits(case: str, source: CaseSource, label_order: list[str]) -> tuple[np.ndarray, sitk.Image, list[str]]:
    """Bit s of the returned uint32 array is set where structure ``label_order[s]`` is."""
    import SimpleITK as sitk

    ref_path = source.images[0]
    ref = _read(ref_path)
    bits = np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.uint32)
    notes = []
    for s, name in enumerate(label_order):
        path = source.masks.get(name)
        if path is None:
            notes.append(f"case {case}: no mask for {name} (treated as empty)")
            continue
        img = _read(path)
        _check_geometry(case, ref, ref_path, img, path)
        bits |= (sitk.GetArrayViewFromImage(img) != 0).astype(np.uint32) << np.uint32(s)
    extra = sorted(set(source.masks) - set(label_order))
    if extra:
        notes.append(f"case {case}: masks {extra} are not in the label order and were ignored")
    return bits, ref, notes


def _scan_case(case: str, source: CaseSource, label_order: list[str], policy: str) -> dict:
    bits, _, notes = _structure_bits(case, source, label_order)
    combos, counts = np.unique(bits, return_counts=True)
    overlaps = {int(c): int(n) for c, n in zip(combos, counts) if bin(int(c)).count("1") > 1}
    if overlaps and policy == "error":
        worst = max(overlaps, key=lambda c: overlaps[c])
        names = [label_order[s] for s in range(len(label_order)) if worst >> s & 1]
        total = sum(overlaps.values())
        raise ImportMasksError(
            f"case {case}: {total} voxel(s) belong to several structures (e.g. {' & '.join(names)}: "
            f"{overlaps[worst]}); choose --overlap last-wins or --overlap regions"
        )
    return {"combos": [int(c) for c in combos if c], "overlap_voxels": sum(overlaps.values()), "notes": notes}


def _write_case(case: str, source: CaseSource, label_order: list[str], policy: str, combo_label: dict, out: Path, ending: str) -> None:
    import SimpleITK as sitk

    bits, ref, _ = _structure_bits(case, source, label_order)
    if policy == "regions":
        lut_keys = np.array(sorted(combo_label), np.uint32)
        lut_vals = np.array([combo_label[k] for k in sorted(combo_label)], np.uint16)
        seg = np.zeros(bits.shape, np.uint16)
        nz = bits != 0
        seg[nz] = lut_vals[np.searchsorted(lut_keys, bits[nz])]
    else:  # last-wins (and error, where no overlap exists): the highest set bit wins
        seg = np.zeros(bits.shape, np.uint16)
        for s in range(len(label_order)):
            seg[((bits >> np.uint32(s)) & 1) == 1] = s + 1
    seg = seg.astype(np.uint8 if seg.max(initial=0) < 255 else np.uint16)
    label = sitk.GetImageFromArray(seg)
    label.CopyInformation(ref)
    with atomic_path(out / "labelsTr" / f"{case}{ending}") as tmp:
        sitk.WriteImage(label, str(tmp), True)
    for c, path in enumerate(source.images):
        img = ref if c == 0 else _read(path)
        with atomic_path(out / "imagesTr" / f"{case}_{c:04d}{ending}") as tmp:
            sitk.WriteImage(img, str(tmp), True)


def import_masks(
    cases: dict[str, CaseSource],
    output_dir: str | Path,
    label_order: list[str],
    channel_names: list[str],
    overlap: str = "error",
    file_ending: str = ".nii.gz",
    num_processes: int = 4,
    quiet: bool = False,
) -> dict:
    """Writes a raw dataset (imagesTr, labelsTr, dataset.json) into ``output_dir``; returns a
    summary ``{"labels", "overlap_voxels" (per case), "notes"}``. Every case is checked before
    anything is written."""
    output_dir = Path(output_dir)
    if overlap not in OVERLAP_POLICIES:
        raise ImportMasksError(f"overlap: expected one of {', '.join(OVERLAP_POLICIES)}, got {overlap!r}")
    if not re.fullmatch(r"Dataset\d{3}_.+", output_dir.name):
        raise ImportMasksError(f"{output_dir}: the output folder must be named DatasetXXX_Name")
    if len(set(label_order)) != len(label_order) or not label_order:
        raise ImportMasksError(f"labels: expected distinct structure names, got {label_order}")
    if len(label_order) > 32:
        raise ImportMasksError(f"labels: at most 32 structures are supported, got {len(label_order)}")
    for case, src in cases.items():
        if len(src.images) != len(channel_names):
            raise ImportMasksError(f"case {case}: {len(src.images)} image file(s) but {len(channel_names)} channel name(s)")

    names = list(cases)
    scans = map_cases(_scan_case, [(c, cases[c], label_order, overlap) for c in names], num_processes, "Checking masks", quiet)
    notes = [n for s in scans for n in s["notes"]]
    for n in notes:
        warnings.warn(n, stacklevel=2)

    combo_label: dict[int, int] = {}
    if overlap == "regions":
        present = sorted({c for s in scans for c in s["combos"]}, key=lambda c: (bin(c).count("1"), c))
        combo_label = {c: i + 1 for i, c in enumerate(present)}
        labels: dict[str, object] = {"background": 0}
        order = []
        for s, name in enumerate(label_order):
            members = [lab for c, lab in combo_label.items() if c >> s & 1]
            if not members:
                continue
            labels[name] = members if len(members) > 1 else members[0]
            single = combo_label.get(1 << s)
            order.append(single if single is not None else min(members))
    else:
        labels = {"background": 0, **{name: i + 1 for i, name in enumerate(label_order)}}
        order = None

    for sub in ("imagesTr", "labelsTr"):
        (output_dir / sub).mkdir(parents=True, exist_ok=True)
    map_cases(_write_case, [(c, cases[c], label_order, overlap, combo_label, output_dir, file_ending) for c in names],
              num_processes, "Writing cases", quiet)
    ds = {
        "channel_names": {str(i): n for i, n in enumerate(channel_names)},
        "labels": labels,
        "numTraining": len(names),
        "file_ending": file_ending,
    }
    if order is not None and any(isinstance(v, list) for v in labels.values()):
        ds["regions_class_order"] = order
    ds["oxunet"] = {"artefact": "import-masks", "format_version": 1, "overlap": overlap, "structures": label_order}
    with atomic_path(output_dir / "dataset.json") as tmp:
        tmp.write_text(json.dumps(ds, indent=2))
    return {"labels": labels, "overlap_voxels": {c: s["overlap_voxels"] for c, s in zip(names, scans)}, "notes": notes}
