"""DICOM in and out: series → NIfTI case with DICOM-SEG/RTSTRUCT labels, predictions → DICOM-SEG.

Needs the ``dicom`` extra (pydicom, highdicom); importing this package does not import them, the
functions do, and say "install oxunet[dicom]" when they are missing.
"""

from __future__ import annotations

from ._deps import INSTALL_HINT, DicomInputError
from .convert import CaseResult, dicom_to_case, label_names_from_dataset_json, prediction_to_seg
from .labels import OVERLAP_POLICIES, OverlapReport, combine_masks, overlap_report
from .rtstruct import fill_polygon, rasterize_rtstruct, rasterize_rtstruct_masks
from .seg import SegmentInfo, read_seg, read_seg_masks, write_seg
from .series import SeriesMeta, physical_to_index, read_series

__all__ = [
    "INSTALL_HINT", "DicomInputError", "CaseResult", "dicom_to_case", "label_names_from_dataset_json",
    "prediction_to_seg", "OVERLAP_POLICIES", "OverlapReport", "combine_masks", "overlap_report", "fill_polygon",
    "rasterize_rtstruct", "rasterize_rtstruct_masks", "SegmentInfo", "read_seg", "read_seg_masks", "write_seg",
    "SeriesMeta", "physical_to_index", "read_series",
]
