"""Read a DICOM image series into a SimpleITK image (LPS geometry, as SimpleITK's own reader).

Slices are sorted by their position along the slice normal (``ImagePositionPatient`` projected on
row x column cosines). The z-spacing comes from those positions, never from ``SliceThickness``
(which often differs, e.g. 1.25 mm thick slices 1.0 mm apart). Missing slices, uneven spacing,
mixed orientations or sizes are errors naming the series and the gap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ._deps import DicomInputError, pydicom

# Positions may wobble by rounding in the DS strings; relative to the slice spacing.
_SPACING_RTOL = 0.01
_ORIENTATION_ATOL = 1e-4


@dataclass
class SeriesMeta:
    """What the converters need besides the voxels: UIDs in slice order and the headers."""

    directory: Path
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str | None
    modality: str
    sop_instance_uids: list[str]  # one per slice, in image (z) order
    files: list[Path]  # same order
    datasets: list[Any] = field(repr=False)  # pydicom Datasets without pixel data, same order

    @property
    def uid_to_slice(self) -> dict[str, int]:
        return {uid: k for k, uid in enumerate(self.sop_instance_uids)}


def _read_headers(directory: Path) -> list[tuple[Path, Any]]:
    pd = pydicom()
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            ds = pd.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM (README, DICOMDIR-less junk): skip it
            continue
        found.append((path, ds))
    return found


def _is_image(ds: Any) -> bool:
    return all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns")) and \
        ds.get("Modality", "") not in ("SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR")


def _select_series(directory: Path, headers: list[tuple[Path, Any]], series_uid: str | None) -> list[tuple[Path, Any]]:
    images = [(p, ds) for p, ds in headers if _is_image(ds)]
    if not images:
        what = f"{len(headers)} DICOM files, none an image slice with a position" if headers else "no DICOM files"
        raise DicomInputError(f"{directory}: not a DICOM image series ({what})")
    by_series: dict[str, list[tuple[Path, Any]]] = {}
    for p, ds in images:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((p, ds))
    if series_uid is not None:
        if series_uid not in by_series:
            raise DicomInputError(f"{directory}: no series {series_uid}; found {sorted(by_series)}")
        return by_series[series_uid]
    if len(by_series) > 1:
        listing = ", ".join(f"{uid} ({len(v)} slices)" for uid, v in by_series.items())
        raise DicomInputError(f"{directory}: holds {len(by_series)} image series ({listing}); pass series_uid to choose one")
    return next(iter(by_series.values()))


def _geometry(directory: Path, slices: list[tuple[Path, Any]]) -> tuple[np.ndarray, list[tuple[Path, Any]], float]:
    """Direction matrix (columns: row, column, normal cosines), slices sorted along the normal, z-spacing."""
    uid = slices[0][1].get("SeriesInstanceUID", "?")
    first = slices[0][1]
    orient = np.asarray([float(v) for v in first.ImageOrientationPatient])
    size = (int(first.Rows), int(first.Columns))
    pixel_spacing = [float(v) for v in first.get("PixelSpacing", [1.0, 1.0])]
    for p, ds in slices[1:]:
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], orient, atol=_ORIENTATION_ATOL):
            raise DicomInputError(f"series {uid} in {directory}: {p.name} has orientation "
                                  f"{list(ds.ImageOrientationPatient)}, {slices[0][0].name} has {orient.tolist()}")
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise DicomInputError(f"series {uid} in {directory}: {p.name} is {ds.Rows}x{ds.Columns}, "
                                  f"{slices[0][0].name} is {size[0]}x{size[1]}")
        if not np.allclose([float(v) for v in ds.get("PixelSpacing", [1.0, 1.0])], pixel_spacing, rtol=1e-4):
            raise DicomInputError(f"series {uid} in {directory}: {p.name} has pixel spacing {list(ds.PixelSpacing)}, "
                                  f"{slices[0][0].name} has {pixel_spacing}")
    row, col = orient[:3], orient[3:]
    normal = np.cross(row, col)
    direction = np.stack([row, col, normal], axis=1)
    pos = {id(ds): float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for _, ds in slices}
    ordered = sorted(slices, key=lambda s: pos[id(s[1])])
    z = np.array([pos[id(ds)] for _, ds in ordered])
    if len(ordered) == 1:
        thickness = float(first.get("SliceThickness", 1.0) or 1.0)
        return direction, ordered, thickness
    steps = np.diff(z)
    dup = np.flatnonzero(steps < 1e-6)
    if dup.size:
        a, b = ordered[dup[0]][0].name, ordered[dup[0] + 1][0].name
        raise DicomInputError(f"series {uid} in {directory}: {a} and {b} are at the same position z={z[dup[0]]:.4g} mm")
    spacing = float(np.min(steps))
    bad = np.flatnonzero(np.abs(steps - spacing) > _SPACING_RTOL * spacing)
    if bad.size:
        i = int(bad[0])
        ratio = steps[i] / spacing
        where = f"between {ordered[i][0].name} (z={z[i]:.4g} mm) and {ordered[i + 1][0].name} (z={z[i + 1]:.4g} mm)"
        if abs(ratio - round(ratio)) < _SPACING_RTOL * round(ratio):
            raise DicomInputError(
                f"series {uid} in {directory}: {int(round(ratio)) - 1} missing slice(s) {where}: "
                f"gap of {steps[i]:.4g} mm, the other slices are {spacing:.4g} mm apart")
        raise DicomInputError(
            f"series {uid} in {directory}: inconsistent slice spacing {where}: {steps[i]:.4g} mm, "
            f"other slices are {spacing:.4g} mm apart (spacings found: {sorted(set(np.round(steps, 4).tolist()))})")
    return direction, ordered, float(np.mean(steps))


def _check_instance_numbers(directory: Path, ordered: list[tuple[Path, Any]]) -> None:
    """Warn when InstanceNumbers, monotonic along the slice normal, skip values: evenly spaced
    positions cannot reveal a slice missing from a 2-slice remainder, the numbering can."""
    numbers = [ds.get("InstanceNumber") for _, ds in ordered]
    if len(numbers) < 2 or any(n is None for n in numbers):
        return
    steps = np.diff([int(n) for n in numbers])
    if not (np.all(steps > 0) or np.all(steps < 0)):
        return  # numbering not along z: it says nothing about gaps
    for i in np.flatnonzero(np.abs(steps) > 1):
        warnings.warn(
            f"series in {directory}: InstanceNumber jumps from {numbers[i]} ({ordered[i][0].name}) to "
            f"{numbers[i + 1]} ({ordered[i + 1][0].name}) although the positions are evenly spaced: "
            "a slice may be missing at an end or the numbering skips", stacklevel=3)
        break


def read_series(directory: str | Path, series_uid: str | None = None) -> tuple[sitk.Image, SeriesMeta]:
    """The image series in ``directory`` as a float32/int16 SimpleITK image in LPS, and its metadata.

    Pixel values have RescaleSlope/Intercept applied (int16 kept when both are integral).
    Raises DicomInputError for a folder without an image series, several series (unless
    ``series_uid`` picks one), missing slices, uneven spacing or mixed orientation/size.
    """
    pd = pydicom()
    directory = Path(directory)
    if not directory.is_dir():
        raise DicomInputError(f"{directory}: not a folder (expected a folder of DICOM slices)")
    slices = _select_series(directory, _read_headers(directory), series_uid)
    direction, ordered, z_spacing = _geometry(directory, slices)
    _check_instance_numbers(directory, ordered)
    arrays = []
    integral = True
    for path, _ in ordered:
        ds = pd.dcmread(path)
        try:
            pixels = ds.pixel_array
        except Exception as e:
            raise DicomInputError(f"{path}: cannot decode pixel data ({e})") from None
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        integral &= slope.is_integer() and intercept.is_integer()
        arrays.append(pixels.astype(np.float64) * slope + intercept)
    volume = np.stack(arrays)
    if integral and volume.min() >= np.iinfo(np.int16).min and volume.max() <= np.iinfo(np.int16).max:
        volume = volume.astype(np.int16)
    else:
        volume = volume.astype(np.float32)
    first = ordered[0][1]
    row_spacing, col_spacing = (float(v) for v in first.get("PixelSpacing", [1.0, 1.0]))
    image = sitk.GetImageFromArray(volume)
    # PixelSpacing is (between rows, between columns) = (y, x).
    image.SetSpacing((col_spacing, row_spacing, z_spacing))
    image.SetOrigin(tuple(float(v) for v in first.ImagePositionPatient))
    image.SetDirection(tuple(direction.flatten().tolist()))
    meta = SeriesMeta(
        directory=directory,
        series_instance_uid=str(first.SeriesInstanceUID),
        study_instance_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.FrameOfReferenceUID) if "FrameOfReferenceUID" in first else None,
        modality=str(first.get("Modality", "")),
        sop_instance_uids=[str(ds.SOPInstanceUID) for _, ds in ordered],
        files=[p for p, _ in ordered],
        datasets=[ds for _, ds in ordered],
    )
    return image, meta


def physical_to_index(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Continuous (x, y, z) voxel indices of LPS points (N, 3), as SimpleITK's transform."""
    origin = np.asarray(image.GetOrigin())
    spacing = np.asarray(image.GetSpacing())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return ((points - origin) @ direction) / spacing
