"""Medical Segmentation Decathlon task folders → nnU-Net raw layout (``oxunet convert-msd``).

MSD ships multi-channel images as 4D NIfTI; the raw layout wants one 3D file per channel
(``CASE_0000.nii.gz`` …). Files starting with '.' or '_' (macOS resource forks in the MSD
tarballs) are skipped, as nnU-Net does.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from .._workers import map_cases
from ..io import atomic_path
from .paths import DatasetNotFoundError, Paths, dataset_name
from ..errors import DatasetError


class ConversionError(DatasetError):
    """The source folder is not an MSD task, or the target exists."""


def _visible_niftis(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(".nii.gz") and not p.name.startswith((".", "_")))


def split_4d_nifti(source: Path, output_folder: Path) -> list[str]:
    """Writes ``{case}_{c:04d}.nii.gz`` per channel of a 3D or 4D NIfTI; returns the names written."""
    import SimpleITK as sitk

    case = source.name[: -len(".nii.gz")]
    img = sitk.ReadImage(str(source))
    dim = img.GetDimension()
    if dim == 3:
        target = output_folder / f"{case}_0000.nii.gz"
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return [target.name]
    if dim != 4:
        raise ConversionError(f"{source}: {dim}D image, expected 3D or 4D")
    arr = sitk.GetArrayFromImage(img)  # (channels, z, y, x)
    spacing, origin = img.GetSpacing()[:3], img.GetOrigin()[:3]
    direction = tuple(np.array(img.GetDirection()).reshape(4, 4)[:3, :3].reshape(-1))
    written = []
    for c in range(arr.shape[0]):
        out = sitk.GetImageFromArray(arr[c])
        out.SetSpacing(spacing)
        out.SetOrigin(origin)
        out.SetDirection(direction)
        target = output_folder / f"{case}_{c:04d}.nii.gz"
        with atomic_path(target) as tmp:
            sitk.WriteImage(out, str(tmp), True)
        written.append(target.name)
    return written


def convert_msd(source: str | Path, paths: Paths, target_id: int | None = None, num_processes: int = 4, quiet: bool = False) -> Path:
    """Converts ``TaskXX_Name`` into ``<raw>/DatasetXXX_Name``; returns the new folder."""
    source = Path(source).expanduser().resolve()
    m = re.fullmatch(r"Task(\d+)_(.+)", source.name)
    if not m:
        raise ConversionError(f"{source}: expected an MSD task folder named TaskXX_Name")
    for sub in ("imagesTr", "labelsTr"):
        if not (source / sub).is_dir():
            raise ConversionError(f"{source}: {sub}/ is missing (not an MSD task folder?)")
    if not (source / "dataset.json").is_file():
        raise ConversionError(f"{source}: dataset.json is missing")
    msd = json.loads((source / "dataset.json").read_text())
    if "modality" not in msd or "labels" not in msd:
        raise ConversionError(f"{source / 'dataset.json'}: expected MSD keys 'modality' and 'labels'")

    new_id = int(m[1]) if target_id is None else int(target_id)
    try:
        existing = dataset_name(new_id, paths)
    except DatasetNotFoundError:
        existing = None
    if existing is not None:
        raise ConversionError(f"dataset id {new_id} is taken by {existing}; choose another with --target-id")
    target = paths.require("raw") / f"Dataset{new_id:03d}_{m[2]}"
    for sub in ("imagesTr", "imagesTs", "labelsTr"):
        (target / sub).mkdir(parents=True, exist_ok=True)

    jobs = [(p, target / "imagesTr") for p in _visible_niftis(source / "imagesTr")]
    jobs += [(p, target / "imagesTs") for p in _visible_niftis(source / "imagesTs")]
    map_cases(split_4d_nifti, jobs, num_processes, f"Converting {source.name}", quiet)
    labels = _visible_niftis(source / "labelsTr")
    for p in labels:
        with atomic_path(target / "labelsTr" / p.name) as tmp:
            shutil.copyfile(p, tmp)

    ds = {k: v for k, v in msd.items() if k not in ("modality", "training", "test", "labels")}
    ds["channel_names"] = msd["modality"]
    ds["labels"] = {name: int(value) for value, name in msd["labels"].items()}
    ds["numTraining"] = len(labels)
    ds["file_ending"] = ".nii.gz"
    with atomic_path(target / "dataset.json") as tmp:
        tmp.write_text(json.dumps(ds, indent=2))
    return target
