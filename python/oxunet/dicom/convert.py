"""DICOM series + DICOM-SEG/RTSTRUCT masks → one nnU-Net raw case, and a prediction → DICOM-SEG."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ._deps import DicomInputError
from .labels import OverlapReport, combine_masks
from .rtstruct import rasterize_rtstruct_masks
from .seg import label_names_from_segments, read_seg_masks, write_seg
from .series import read_series

FILE_ENDING = ".nii.gz"


@dataclass
class CaseResult:
    image: Path
    label: Path | None
    label_names: list[str]  # label k is label_names[k - 1]
    overlaps: OverlapReport | None
    warnings: list[str] = field(default_factory=list)
    dataset_json: Path | None = None


def _write_image(image: sitk.Image, path: Path) -> None:
    from ..io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def _update_dataset_json(out_dir: Path, names: list[str], channel: str) -> Path:
    """Create or extend ``out_dir/dataset.json``; labels must agree with cases converted before."""
    from ..io import atomic_path

    path = out_dir / "dataset.json"
    labels = {"background": 0, **{n: k for k, n in enumerate(names, start=1)}}
    if path.is_file():
        ds = json.loads(path.read_text())
        if ds.get("labels") != labels:
            raise DicomInputError(
                f"{path}: labels {ds.get('labels')} differ from this case's {labels}; convert cases with the same "
                "structures (same names, same order) into one dataset")
    else:
        ds = {"channel_names": {"0": channel}, "labels": labels, "file_ending": FILE_ENDING}
    ds["numTraining"] = len(list((out_dir / "labelsTr").glob(f"*{FILE_ENDING}")))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(ds, indent=2) + "\n")
    return path


def dicom_to_case(
    series_dir: str | Path,
    out_dir: str | Path,
    case: str,
    segs: Sequence[str | Path] = (),
    rtstructs: Sequence[str | Path] = (),
    overlap: str = "last",
    dataset_json: bool = False,
    series_uid: str | None = None,
) -> CaseResult:
    """Convert one DICOM case into nnU-Net's raw layout under ``out_dir``.

    Writes ``imagesTr/<case>_0000.nii.gz`` and ``labelsTr/<case>.nii.gz`` (or only
    ``imagesTs/<case>_0000.nii.gz`` when no masks are given). Structures get labels 1..K in the
    order given: the segments of each SEG in SegmentSequence order, then the ROIs of each
    RTSTRUCT. Overlaps are reported and resolved by ``overlap`` ("last": later structure wins;
    "first"; "error"). ``dataset_json``: create/extend ``out_dir/dataset.json`` with these labels.
    """
    out_dir = Path(out_dir)
    if not case or "/" in case or case.endswith("_0000"):
        raise DicomInputError(f"bad case name {case!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, meta = read_series(series_dir, series_uid)
    masks: list[np.ndarray] = []
    segment_names = []
    notes: list[str] = [str(w.message) for w in caught]
    for path in segs:
        m, segments = read_seg_masks(path, image)
        masks += list(m)
        segment_names += [(s.label, s.number) for s in segments]
    for path in rtstructs:
        m, names, warn = rasterize_rtstruct_masks(path, (image, meta))
        masks += list(m)
        segment_names += [(n, k) for k, n in enumerate(names, start=1)]
        notes += warn
    if not masks:
        target = out_dir / "imagesTs" / f"{case}_0000{FILE_ENDING}"
        _write_image(image, target)
        return CaseResult(image=target, label=None, label_names=[], overlaps=None, warnings=notes)
    from .seg import SegmentInfo

    names = label_names_from_segments([SegmentInfo(number=n, label=s) for s, n in segment_names])
    labels, report = combine_masks(masks, names, overlap)
    if report:
        notes.append(f"overlapping structures, resolved by '{overlap}':\n" + "\n".join(report.lines()))
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    image_path = out_dir / "imagesTr" / f"{case}_0000{FILE_ENDING}"
    label_path = out_dir / "labelsTr" / f"{case}{FILE_ENDING}"
    _write_image(image, image_path)
    _write_image(label_image, label_path)
    js = _update_dataset_json(out_dir, names, meta.modality or "CT") if dataset_json else None
    return CaseResult(image=image_path, label=label_path, label_names=names, overlaps=report, warnings=notes, dataset_json=js)


def label_names_from_dataset_json(path: str | Path) -> dict[int, str]:
    """Label value → name from a dataset.json (background skipped; region-based labels refused)."""
    path = Path(path)
    try:
        labels = json.loads(path.read_text())["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise DicomInputError(f"{path}: cannot read 'labels' from it ({e})") from None
    out = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise DicomInputError(f"{path}: label {name!r} is region-based ({value}); write a label map per region instead")
        if int(value):
            out[int(value)] = str(name)
    return out


def prediction_to_seg(
    prediction: str | Path, series_dir: str | Path, out_path: str | Path,
    labels_json: str | Path | None = None, series_uid: str | None = None,
) -> Path:
    """Write a predicted label map (NIfTI etc. on the series grid) as a DICOM-SEG referencing the series."""
    prediction = Path(prediction)
    if not prediction.is_file():
        raise DicomInputError(f"{prediction}: no such file")
    out_path = Path(out_path)
    if out_path.resolve() == prediction.resolve():
        raise DicomInputError(f"{out_path}: refusing to write over the prediction")
    series = read_series(series_dir, series_uid)
    names = label_names_from_dataset_json(labels_json) if labels_json else None
    try:
        pred = sitk.ReadImage(str(prediction))
    except RuntimeError as e:
        raise DicomInputError(f"{prediction}: cannot read it as an image ({str(e).strip().splitlines()[-1]})") from None
    if pred.GetNumberOfComponentsPerPixel() != 1 or pred.GetDimension() != 3:
        raise DicomInputError(f"{prediction}: expected a 3D single-channel label map")
    try:
        return write_seg(pred, series, out_path, names)
    except DicomInputError as e:
        raise DicomInputError(f"{prediction}: {e}") from None
