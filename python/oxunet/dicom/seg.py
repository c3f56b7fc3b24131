"""DICOM-SEG in (segments placed on a reference series grid) and out (a label map as a BINARY SEG).

Frames are placed by their own geometry (PlanePositionSequence / PlaneOrientationSequence), not
by the source-instance references, so a SEG is read correctly even when it does not claim that
spatial locations are preserved, or references instances by another route. Reading with
pydicom decodes bit-packed BINARY frames; highdicom parses the segment descriptions and writes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from ._deps import DicomInputError, highdicom, pydicom
from .labels import combine_masks
from .series import SeriesMeta, physical_to_index, read_series

_GRID_ATOL = 0.01  # voxels


@dataclass
class SegmentInfo:
    """One structure: its number in its source file, its label (name) and where it came from."""

    number: int
    label: str
    description: str | None = None
    category: str | None = None  # code meaning, e.g. "Tissue"
    property_type: str | None = None  # code meaning, e.g. "Liver"
    source: str = ""


def _reference_image(reference: Any) -> sitk.Image:
    if isinstance(reference, sitk.Image):
        return reference
    if isinstance(reference, tuple) and reference and isinstance(reference[0], sitk.Image):
        return reference[0]
    if isinstance(reference, (str, Path)):
        return read_series(reference)[0]
    raise TypeError(f"reference must be a SimpleITK image, (image, meta) or a series folder, got {type(reference).__name__}")


def _frame_item(ds: Any, i: int, keyword: str) -> Any:
    """An attribute's item for frame ``i``: per-frame if given there, else shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    for item in (per_frame[i] if per_frame else None, shared[0] if shared else None):
        if item is not None and keyword in item and len(item[keyword].value):
            return item[keyword].value[0]
    return None


def _segment_infos(ds: Any, source: str) -> list[SegmentInfo]:
    out = []
    for item in ds.SegmentSequence:
        def meaning(key: str) -> str | None:
            seq = item.get(key)
            return str(seq[0].CodeMeaning) if seq else None
        out.append(SegmentInfo(
            number=int(item.SegmentNumber), label=str(item.get("SegmentLabel", f"segment {item.SegmentNumber}")),
            description=str(item.SegmentDescription) if "SegmentDescription" in item else None,
            category=meaning("SegmentedPropertyCategoryCodeSequence"),
            property_type=meaning("SegmentedPropertyTypeCodeSequence"), source=source))
    return out


def read_seg_masks(path: str | Path, reference: Any) -> tuple[np.ndarray, list[SegmentInfo]]:
    """One boolean mask per segment, shape (K, z, y, x) on the reference grid, and the segments.

    ``reference``: the SimpleITK image of the series (or ``(image, meta)`` or the series folder).
    Raises DicomInputError when the file is not a SEG or a frame does not lie on the grid.
    """
    pd, hd = pydicom(), highdicom()
    path = Path(path)
    image = _reference_image(reference)
    try:
        ds = pd.dcmread(path)
    except Exception as e:
        raise DicomInputError(f"{path}: not a DICOM file ({e})") from None
    if ds.get("Modality") != "SEG" or "SegmentSequence" not in ds:
        raise DicomInputError(f"{path}: not a DICOM-SEG (Modality {ds.get('Modality')!r})")
    hd.seg.Segmentation.from_dataset(ds, copy=False)  # validates the SEG structure
    segments = _segment_infos(ds, path.name)
    index_of = {s.number: k for k, s in enumerate(segments)}
    frames = ds.pixel_array
    n_frames = int(ds.get("NumberOfFrames", 1))
    frames = frames.reshape(n_frames, int(ds.Rows), int(ds.Columns))
    if ds.SegmentationType == "FRACTIONAL":
        frames = frames > (int(ds.get("MaximumFractionalValue", 255)) / 2)
    else:
        frames = frames > 0
    size = image.GetSize()  # x, y, z
    masks = np.zeros((len(segments), size[2], size[1], size[0]), dtype=bool)
    ref_dir = np.asarray(image.GetDirection()).reshape(3, 3)
    for i in range(n_frames):
        ident = _frame_item(ds, i, "SegmentIdentificationSequence")
        number = int(ident.ReferencedSegmentNumber) if ident is not None else segments[0].number
        if number not in index_of:
            raise DicomInputError(f"{path}: frame {i + 1} refers to segment {number}, not in SegmentSequence")
        plane = _frame_item(ds, i, "PlanePositionSequence")
        orient = _frame_item(ds, i, "PlaneOrientationSequence")
        if plane is None or orient is None:
            raise DicomInputError(f"{path}: frame {i + 1} has no plane position/orientation; cannot place it")
        cosines = np.asarray([float(v) for v in orient.ImageOrientationPatient])
        if not (np.allclose(cosines[:3], ref_dir[:, 0], atol=1e-4) and np.allclose(cosines[3:], ref_dir[:, 1], atol=1e-4)):
            raise DicomInputError(f"{path}: frame {i + 1} orientation {cosines.tolist()} differs from the series'")
        xyz = physical_to_index(image, np.asarray([[float(v) for v in plane.ImagePositionPatient]]))[0]
        rounded = np.round(xyz).astype(int)
        if np.any(np.abs(xyz - rounded) > _GRID_ATOL) or not 0 <= rounded[2] < size[2]:
            raise DicomInputError(
                f"{path}: frame {i + 1} at {list(plane.ImagePositionPatient)} is not on a slice of the series grid "
                f"(continuous index {np.round(xyz, 3).tolist()}, grid size {size})")
        x0, y0, z = (int(v) for v in rounded)
        frame = frames[i]
        # Frames may cover a sub-rectangle of the slice (or stick out): clip to the grid.
        ys, xs = slice(max(y0, 0), min(y0 + frame.shape[0], size[1])), slice(max(x0, 0), min(x0 + frame.shape[1], size[0]))
        sub = frame[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
        if np.count_nonzero(sub) != np.count_nonzero(frame):
            raise DicomInputError(f"{path}: frame {i + 1} has segmented pixels outside the series grid")
        masks[index_of[number], z, ys, xs] |= sub
    return masks, segments


def read_seg(path: str | Path, reference: Any, overlap: str = "last") -> tuple[np.ndarray, list[SegmentInfo]]:
    """Label map (segment k of the file → label k, in SegmentSequence order) and the segments.

    Overlapping segments are resolved by ``overlap`` (see :func:`combine_masks`) and reported
    with a warning giving the voxel count of each overlapping pair.
    """
    masks, segments = read_seg_masks(path, reference)
    labels, report = combine_masks(list(masks), [s.label for s in segments], overlap)
    if report:
        warnings.warn(f"{Path(path).name}: overlapping segments, resolved by '{overlap}':\n" + "\n".join(report.lines()),
                      stacklevel=2)
    return labels, segments


def _check_same_grid(label_image: sitk.Image, series_image: sitk.Image, what: str) -> None:
    problems = []
    if label_image.GetSize() != series_image.GetSize():
        problems.append(f"size {label_image.GetSize()} vs {series_image.GetSize()}")
    for name, a, b, tol in (("spacing", label_image.GetSpacing(), series_image.GetSpacing(), 1e-3),
                            ("origin", label_image.GetOrigin(), series_image.GetOrigin(), 1e-2),
                            ("direction", label_image.GetDirection(), series_image.GetDirection(), 1e-4)):
        if not np.allclose(a, b, atol=tol):
            problems.append(f"{name} {tuple(round(v, 4) for v in a)} vs {tuple(round(v, 4) for v in b)}")
    if problems:
        raise DicomInputError(f"{what} is not on the series grid: " + "; ".join(problems))


def write_seg(
    labels: np.ndarray | sitk.Image,
    series: tuple[sitk.Image, SeriesMeta],
    out_path: str | Path,
    names: dict[int, str] | None = None,
    series_description: str = "oxunet segmentation",
) -> Path:
    """Write a label map on the series grid as a BINARY DICOM-SEG with one segment per label.

    ``labels``: (z, y, x) integer array in series order, or a SimpleITK image (checked to be on
    the series grid). ``names``: label value → segment label (default "label N"); every value in
    ``names`` gets a segment, as does every value present. The SEG references the series'
    instances and shares its study and frame of reference.
    """
    hd = highdicom()
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from ..io import atomic_path

    image, meta = series
    if isinstance(labels, sitk.Image):
        _check_same_grid(labels, image, "the prediction")
        labels = sitk.GetArrayFromImage(labels)
    labels = np.asarray(labels)
    expected = tuple(reversed(image.GetSize()))
    if labels.shape != expected:
        raise DicomInputError(f"label array has shape {labels.shape}, the series is {expected} (z, y, x)")
    if labels.size and (labels.min() < 0 or not np.array_equal(labels, np.round(labels))):
        raise DicomInputError("labels must be non-negative integers")
    labels = labels.astype(np.uint16 if labels.max(initial=0) > 255 else np.uint8)
    values = sorted(set(int(v) for v in np.unique(labels) if v) | set(k for k in (names or {}) if k))
    if not values:
        raise DicomInputError("the prediction has no foreground and no label names were given: nothing to write")
    # Segment numbers must be 1..K without gaps; remap label values onto them.
    remapped = np.zeros_like(labels)
    for number, value in enumerate(values, start=1):
        remapped[labels == value] = number
    try:
        from .. import __version__ as version
    except ImportError:  # pragma: no cover
        version = "unknown"
    algorithm = hd.AlgorithmIdentificationSequence(
        name="oxunet", version=str(version), family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=(names or {}).get(value, f"label {value}")[:64],
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for number, value in enumerate(values, start=1)
    ]
    sources = [_clean_source(ds) for ds in meta.datasets]
    with warnings.catch_warnings():
        # Patient names like "JANCT000" (one component) are legal but make highdicom chatter.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=remapped,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=generate_uid(), series_number=900, sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer="oxunet", manufacturer_model_name="oxunet", software_versions=str(version),
            device_serial_number="0", series_description=series_description[:64],
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        seg.save_as(tmp)
    return out_path


def _clean_source(ds: Any) -> Any:
    """A copy of a source header highdicom accepts: an empty SpecificCharacterSet means the default
    repertoire (legal DICOM, but highdicom rejects the empty string)."""
    import copy

    ds = copy.deepcopy(ds)
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet
    return ds


def label_names_from_segments(segments: Sequence[SegmentInfo]) -> list[str]:
    """Unique names for labels 1..K (repeated segment labels get " 2", " 3", ...)."""
    seen: dict[str, int] = {}
    out = []
    for s in segments:
        name = s.label.strip() or f"segment {s.number}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out
