"""Label maps → RTSTRUCT (one ROI per label), written with pydicom.

Why our own writer: highdicom (our SEG writer) has no RTSTRUCT; rt-utils, the usual choice, needs
OpenCV only to find contours, had its last release in January 2023, and traces contours through
boundary pixel *centres*, so re-rasterising shrinks every structure by half a pixel. Here each
slice's mask is outlined along pixel *edges* (polygon vertices on pixel corners, holes as their
own contours, collinear vertices dropped), so an even-odd fill at pixel centres -- how planning
systems and :func:`oxunet.dicom.rasterize_rtstruct` read RTSTRUCTs -- gives back the mask exactly.
The object shares the series' patient, study and frame of reference and references every slice
it has a contour on (ContourImageSequence) and the whole series
(ReferencedFrameOfReferenceSequence).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ._deps import DicomInputError, pydicom
from .series import SeriesMeta

__all__ = ["RTSTRUCT_SOP_CLASS", "mask_outlines", "write_rtstruct"]

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # DICOM's "Detached Study Management", as RTSTRUCTs reference studies
_COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 200, 0), (0, 200, 200), (200, 0, 200), (255, 128, 0),
            (128, 0, 255), (0, 128, 255), (128, 255, 0)]


def mask_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines of a 2D boolean mask along pixel edges: a list of ``(n, 2)`` arrays of corner
    points ``(row, col)`` in pixel units (pixel centres are integers, corners half-integers).

    Every boundary edge is oriented with the region on one side (clockwise around each pixel), so
    the edges link into closed loops; filling them with the even-odd rule gives back `mask`."""
    m = np.pad(np.asarray(mask, bool), 1)
    inside = m[1:-1, 1:-1]
    r, c = np.nonzero(inside & ~m[:-2, 1:-1])  # top edges: (r, c) -> (r, c+1), corners as (row, col)
    edges = [((a, b), (a, b + 1)) for a, b in zip(r.tolist(), c.tolist())]
    r, c = np.nonzero(inside & ~m[1:-1, 2:])  # right: (r, c+1) -> (r+1, c+1)
    edges += [((a, b + 1), (a + 1, b + 1)) for a, b in zip(r.tolist(), c.tolist())]
    r, c = np.nonzero(inside & ~m[2:, 1:-1])  # bottom: (r+1, c+1) -> (r+1, c)
    edges += [((a + 1, b + 1), (a + 1, b)) for a, b in zip(r.tolist(), c.tolist())]
    r, c = np.nonzero(inside & ~m[1:-1, :-2])  # left: (r+1, c) -> (r, c)
    edges += [((a + 1, b), (a, b)) for a, b in zip(r.tolist(), c.tolist())]
    nexts: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for a, b in edges:
        nexts.setdefault(a, []).append(b)
    loops = []
    while nexts:
        start = next(iter(nexts))
        loop, point = [start], start
        while True:
            outs = nexts[point]
            nxt = outs.pop()
            if not outs:
                del nexts[point]
            if nxt == start:
                break
            loop.append(nxt)
            point = nxt
        pts = np.asarray(loop, float)
        # drop vertices where the outline goes straight on
        prev, nxt_ = np.roll(pts, 1, 0), np.roll(pts, -1, 0)
        turn = np.abs(np.cross(pts - prev, nxt_ - pts)) > 0
        loops.append(pts[turn] - 0.5)  # corner (i, j) lies at pixel coordinates (i - 0.5, j - 0.5)
    return loops


def _copy(src, dst, keywords) -> None:
    for kw in keywords:
        if kw in src:
            setattr(dst, kw, src.data_element(kw).value)
        else:
            setattr(dst, kw, "")


def write_rtstruct(labels: np.ndarray | sitk.Image, series: tuple[sitk.Image, SeriesMeta], out_path: str | Path,
                   names: dict[int, str] | None = None, series_description: str = "oxunet segmentation") -> Path:
    """Writes a label map on the series grid (``(z, y, x)`` in series order, or an image on the
    grid) as an RTSTRUCT with one CLOSED_PLANAR ROI per label value (named from `names`)."""
    pd = pydicom()
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ImplicitVRLittleEndian, generate_uid

    from ..io import atomic_path
    from .seg import _check_same_grid

    image, meta = series
    if isinstance(labels, sitk.Image):
        _check_same_grid(labels, image, "the prediction")
        labels = sitk.GetArrayFromImage(labels)
    labels = np.asarray(labels)
    expected = tuple(reversed(image.GetSize()))
    if labels.shape != expected:
        raise DicomInputError(f"label array has shape {labels.shape}, the series is {expected} (z, y, x)")
    if meta.frame_of_reference_uid is None:
        raise DicomInputError(f"{meta.directory}: the series has no FrameOfReferenceUID; an RTSTRUCT needs one")
    values = sorted(set(int(v) for v in np.unique(labels) if v) | set(k for k in (names or {}) if k))
    if not values:
        raise DicomInputError("the prediction has no foreground and no label names were given: nothing to write")
    first = meta.datasets[0]
    now = datetime.datetime.now()
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = UID(RTSTRUCT_SOP_CLASS)
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    # implicit VR: 32-bit element lengths, so a long contour's ContourData (DS) may pass 64 KiB
    file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(out_path), {}, file_meta=file_meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP_CLASS, file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    _copy(first, ds, ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                      "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"])
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), 901, 1
    ds.SeriesDescription = series_description[:64]
    ds.FrameOfReferenceUID = meta.frame_of_reference_uid
    ds.Manufacturer = "oxunet"
    ds.StructureSetLabel = "oxunet"
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ContentDate, ds.ContentTime = ds.StructureSetDate, ds.StructureSetTime

    def image_ref(i: int):
        item = pd.Dataset()
        item.ReferencedSOPClassUID = meta.datasets[i].SOPClassUID
        item.ReferencedSOPInstanceUID = meta.sop_instance_uids[i]
        return item

    series_ref = pd.Dataset()
    series_ref.SeriesInstanceUID = meta.series_instance_uid
    series_ref.ContourImageSequence = Sequence([image_ref(i) for i in range(len(meta.sop_instance_uids))])
    study_ref = pd.Dataset()
    study_ref.ReferencedSOPClassUID = _STUDY_COMPONENT_SOP_CLASS
    study_ref.ReferencedSOPInstanceUID = meta.study_instance_uid
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = pd.Dataset()
    frame_ref.FrameOfReferenceUID = meta.frame_of_reference_uid
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])

    origin = np.asarray(image.GetOrigin())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing())
    rois, contours, observations = [], [], []
    for number, value in enumerate(values, start=1):
        roi = pd.Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = meta.frame_of_reference_uid
        roi.ROIName = (names or {}).get(value, f"label {value}")[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        rois.append(roi)
        items = []
        for k in range(labels.shape[0]):
            for outline in mask_outlines(labels[k] == value):
                # (row, col) pixel coordinates → continuous (x=col, y=row, z=k) index → LPS millimetres
                idx = np.stack([outline[:, 1], outline[:, 0], np.full(len(outline), float(k))], 1)
                xyz = origin + (idx * spacing) @ direction.T
                item = pd.Dataset()
                item.ContourImageSequence = Sequence([image_ref(k)])
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(outline)
                item.ContourData = [f"{v:.4f}" for v in xyz.ravel()]
                items.append(item)
        rc = pd.Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = list(_COLOURS[(number - 1) % len(_COLOURS)])
        rc.ContourSequence = Sequence(items)
        contours.append(rc)
        obs = pd.Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = "ORGAN"
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return out_path
