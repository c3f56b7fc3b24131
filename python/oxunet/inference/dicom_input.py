"""``oxunet predict -i DICOM_FOLDER``: one case per image series, DICOM-SEG / RTSTRUCT out.

The input folder (searched recursively) is grouped by SeriesInstanceUID; every series is read by
:func:`oxunet.dicom.read_series` (slices ordered by position along the normal, the checks of
``oxunet dicom to-nifti``: missing slices, uneven spacing, mixed orientation or size), written as
a temporary ``{case}_0000`` image in the model's file format, predicted like any raw case, and the
label map is then written per series as a DICOM-SEG (highdicom) and/or an RTSTRUCT
(:mod:`oxunet.dicom.rtstruct_write`) that reference it, with the dataset's label names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .model_folder import InferenceError

__all__ = ["DICOM_FORMATS", "DicomCase", "find_dicom_series", "is_dicom_folder", "write_dicom_outputs"]

DICOM_FORMATS = ("dicom-seg", "rtstruct")


@dataclass
class DicomCase:
    name: str
    directory: Path
    series_uid: str
    num_slices: int


def _headers(input_dir: Path):
    from ..dicom.series import _read_headers

    return _read_headers(input_dir)


def is_dicom_folder(input_dir) -> bool:
    """True when the folder holds DICOM files and no ``CASE_XXXX`` images (the first 50 files decide)."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        return False
    try:
        from ..dicom._deps import pydicom
    except ImportError:
        return False
    pd = None
    for i, p in enumerate(f for f in sorted(input_dir.rglob("*")) if f.is_file()):
        if i >= 50:
            break
        if re.match(r"^.+_\d{4}\..+$", p.name) and not p.name.endswith(".dcm"):
            return False
        try:
            pd = pd or pydicom()
            pd.dcmread(p, stop_before_pixels=True)
            return True
        except Exception:
            continue
    return False


def find_dicom_series(input_dir) -> list[DicomCase]:
    """Image series under `input_dir`, one case each, named after their folder and series number."""
    from ..dicom.series import _is_image

    input_dir = Path(input_dir)
    groups: dict[str, list] = {}
    for path, ds in _headers(input_dir):
        if _is_image(ds):
            groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    if not groups:
        raise InferenceError(f"{input_dir}: no DICOM image series found")
    cases, used = [], set()
    for uid, items in sorted(groups.items(), key=lambda kv: str(min(p for p, _ in kv[1]))):
        common = Path(*Path(items[0][0]).parent.parts)
        for p, _ in items[1:]:
            while common not in p.parents:
                common = common.parent
        rel = common.relative_to(input_dir) if common != input_dir else Path("series")
        base = re.sub(r"[^A-Za-z0-9.-]+", "_", str(rel)).strip("_") or "series"
        number = items[0][1].get("SeriesNumber", None)
        name = f"{base}_s{number}" if number not in (None, "") else base
        if name in used:
            name = f"{name}_{uid[-8:].replace('.', '')}"
        used.add(name)
        cases.append(DicomCase(name, common, uid, len(items)))
    return cases


def stage_dicom_input(cases: list[DicomCase], staging: Path, file_ending: str, num_channels: int) -> dict:
    """Writes each series as ``staging/{case}_0000{file_ending}``; returns ``{case: (image, meta)}``."""
    import SimpleITK as sitk

    from ..dicom import DicomInputError, read_series

    if num_channels != 1:
        raise InferenceError(f"DICOM input: the model takes {num_channels} channels; one series per case gives one")
    if file_ending not in (".nii.gz", ".nii", ".nrrd", ".mha"):
        raise InferenceError(f"DICOM input: the model reads {file_ending!r} files; DICOM series are staged as "
                             f"SimpleITK images (.nii.gz/.nrrd/.mha)")
    staging.mkdir(parents=True, exist_ok=True)
    series = {}
    for case in cases:
        try:
            image, meta = read_series(case.directory, case.series_uid)
        except DicomInputError as e:
            raise InferenceError(f"DICOM series {case.name} ({case.series_uid}): {e}") from None
        sitk.WriteImage(image, str(staging / f"{case.name}_0000{file_ending}"), True)
        series[case.name] = (image, meta)
    return series


def write_dicom_outputs(case: str, seg_file: Path, series, output_dir: Path, formats, dataset_json: dict) -> dict:
    """Writes ``{case}_seg.dcm`` / ``{case}_rtstruct.dcm`` from the predicted label map; returns what was written."""
    import SimpleITK as sitk

    from ..dicom import DicomInputError, write_seg
    from ..dicom.rtstruct_write import write_rtstruct

    labels = dataset_json.get("labels", {})
    if any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values()):
        raise InferenceError("DICOM output: region-based labels cannot be written as one label per segment")
    names = {int(v if not isinstance(v, (list, tuple)) else v[0]): str(k) for k, v in labels.items()
             if k != "ignore" and int(v if not isinstance(v, (list, tuple)) else v[0])}
    pred = sitk.ReadImage(str(seg_file))
    image, meta = series
    out = {"series_instance_uid": meta.series_instance_uid, "files": []}
    try:
        if "dicom-seg" in formats:
            out["files"].append(str(write_seg(pred, series, output_dir / f"{case}_seg.dcm", names)))
        if "rtstruct" in formats:
            out["files"].append(str(write_rtstruct(pred, series, output_dir / f"{case}_rtstruct.dcm", names)))
    except DicomInputError as e:
        raise InferenceError(f"case {case}: {e}") from None
    return out
