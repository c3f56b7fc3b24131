"""RTSTRUCT ROIs rasterised onto the series grid.

Each CLOSED_PLANAR contour is placed on the slice it references (ContourImageSequence), or, when
it references none, on the slice its z position falls on. Contours are filled with an even-odd
point-in-polygon test at voxel centres, so several contours of one ROI on one slice combine by
XOR: a contour inside another is a hole, as in the RTSTRUCT convention used by most planning
systems. Contours on slices missing from the series (e.g. an RTSTRUCT drawn on the full scan,
shipped with a subset of its slices) are skipped with a warning naming the missing instances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ._deps import DicomInputError, pydicom
from .series import SeriesMeta, physical_to_index

_PLANE_ATOL = 0.05  # voxels: how far off a slice a contour may lie


def fill_polygon(shape: tuple[int, int], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean (rows, cols) mask of pixel centres inside the closed polygon with vertex indices
    (xs = column, ys = row), by the even-odd rule. Only the polygon's bounding box is tested."""
    mask = np.zeros(shape, dtype=bool)
    if len(xs) < 3:
        return mask
    r0, r1 = max(int(np.floor(ys.min())), 0), min(int(np.ceil(ys.max())) + 1, shape[0])
    c0, c1 = max(int(np.floor(xs.min())), 0), min(int(np.ceil(xs.max())) + 1, shape[1])
    if r0 >= r1 or c0 >= c1:
        return mask
    py = np.arange(r0, r1, dtype=np.float64)[:, None]
    px = np.arange(c0, c1, dtype=np.float64)[None, :]
    inside = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    xj, yj = np.roll(xs, 1), np.roll(ys, 1)
    for x_i, y_i, x_j, y_j in zip(xs, ys, xj, yj):
        if y_i == y_j:
            continue  # horizontal edges never cross a horizontal ray
        crosses = (y_i > py) != (y_j > py)  # (rows, 1)
        x_cross = x_i + (py - y_i) * (x_j - x_i) / (y_j - y_i)
        inside ^= crosses & (px < x_cross)
    mask[r0:r1, c0:c1] = inside
    return mask


def _roi_names(ds: Any) -> dict[int, str]:
    return {int(item.ROINumber): str(item.get("ROIName", f"ROI {item.ROINumber}")) for item in ds.get("StructureSetROISequence", [])}


def _referenced_instances(ds: Any) -> list[str]:
    uids = []
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                uids += [str(c.ReferencedSOPInstanceUID) for c in series.get("ContourImageSequence", [])]
    return uids


def rasterize_rtstruct_masks(
    path: str | Path, series: tuple[sitk.Image, SeriesMeta]
) -> tuple[np.ndarray, list[str], list[str]]:
    """Masks (K, z, y, x) for the K ROIs (in StructureSetROISequence order), their names, warnings."""
    pd = pydicom()
    path = Path(path)
    image, meta = series
    try:
        ds = pd.dcmread(path)
    except Exception as e:
        raise DicomInputError(f"{path}: not a DICOM file ({e})") from None
    if ds.get("Modality") != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise DicomInputError(f"{path}: not an RTSTRUCT (Modality {ds.get('Modality')!r})")
    names = _roi_names(ds)
    order = list(names)
    size = image.GetSize()
    masks = np.zeros((len(order), size[2], size[1], size[0]), dtype=bool)
    uid_to_slice = meta.uid_to_slice
    warnings_out: list[str] = []

    frame_uid = next((str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])
                      if "FrameOfReferenceUID" in f), None)
    if frame_uid and meta.frame_of_reference_uid and frame_uid != meta.frame_of_reference_uid:
        warnings_out.append(f"{path.name}: FrameOfReferenceUID {frame_uid} differs from the series' "
                            f"{meta.frame_of_reference_uid}; contours are placed by their coordinates")
    missing_refs = [u for u in dict.fromkeys(_referenced_instances(ds)) if u not in uid_to_slice]
    if missing_refs:
        warnings_out.append(
            f"{path.name}: references {len(missing_refs)} CT instance(s) missing from series {meta.series_instance_uid}: "
            + ", ".join(missing_refs))

    skipped: dict[str, dict[str, int]] = {}  # ROI name -> missing uid -> contours skipped
    for roi in ds.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        if number not in names:
            warnings_out.append(f"{path.name}: contours for ROI number {number}, which StructureSetROISequence lacks; skipped")
            continue
        k, name = order.index(number), names[number]
        for contour in roi.get("ContourSequence", []):
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind != "CLOSED_PLANAR":
                continue  # points and open polylines have no area
            pts = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64).reshape(-1, 3)
            idx = physical_to_index(image, pts)
            refs = [str(c.ReferencedSOPInstanceUID) for c in contour.get("ContourImageSequence", [])]
            z_float = float(np.mean(idx[:, 2]))
            z = int(round(z_float))
            if refs and refs[0] not in uid_to_slice:
                skipped.setdefault(name, {}).setdefault(refs[0], 0)
                skipped[name][refs[0]] += 1
                continue
            if refs:
                z_ref = uid_to_slice[refs[0]]
                if abs(z_float - z_ref) > _PLANE_ATOL:
                    raise DicomInputError(
                        f"{path}: a contour of {name!r} references slice {z_ref} but lies at slice index {z_float:.3f}")
                z = z_ref
            elif abs(z_float - z) > _PLANE_ATOL or not 0 <= z < size[2]:
                skipped.setdefault(name, {}).setdefault(f"(no slice at index {z_float:.2f})", 0)
                skipped[name][f"(no slice at index {z_float:.2f})"] += 1
                continue
            masks[k, z] ^= fill_polygon((size[1], size[0]), idx[:, 0], idx[:, 1])
    for name, where in skipped.items():
        for uid, n in where.items():
            warnings_out.append(f"{path.name}: ROI {name!r}: {n} contour(s) on missing slice {uid} skipped")
    return masks, [names[n] for n in order], warnings_out


def rasterize_rtstruct(
    path: str | Path, series: tuple[sitk.Image, SeriesMeta], overlap: str = "last"
) -> tuple[np.ndarray, list[str], list[str]]:
    """Label map (ROI k → label k), ROI names and warnings (missing slices, overlaps)."""
    from .labels import combine_masks

    masks, names, notes = rasterize_rtstruct_masks(path, series)
    labels, report = combine_masks(list(masks), names, overlap)
    if report:
        notes.append(f"{Path(path).name}: overlapping ROIs, resolved by '{overlap}':\n" + "\n".join(report.lines()))
    return labels, names, notes
