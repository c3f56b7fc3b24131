"""Evaluation as nnU-Net's ``evaluate_predictions`` (summary.json with Dice, IoU, counts; NaN
rules; regions; ignore label) plus surface metrics (HD95, ASSD, NSD) and a several-raters mode.

Never imports torch.
"""

from .folder import (
    EvaluationError,
    evaluate_case,
    evaluate_folder_from_dataset_json,
    evaluate_folders,
    evaluate_simple,
    labels_from_dataset_json,
    load_summary,
    summarize,
    write_json,
)
from .metrics import OVERLAP_METRICS, SURFACE_METRICS, compute_metrics, key_to_label_or_region, label_key
from .multi_reference import evaluate_multi_reference
from .surface import surface_metrics

__all__ = [
    "OVERLAP_METRICS",
    "SURFACE_METRICS",
    "EvaluationError",
    "compute_metrics",
    "evaluate_case",
    "evaluate_folder_from_dataset_json",
    "evaluate_folders",
    "evaluate_multi_reference",
    "evaluate_simple",
    "key_to_label_or_region",
    "label_key",
    "labels_from_dataset_json",
    "load_summary",
    "summarize",
    "surface_metrics",
    "write_json",
]
