"""Postprocessing as nnU-Net (connected-component rules decided on cross-validation) plus a
size-threshold rule; stored as versioned JSON, nnU-Net's postprocessing.pkl read safely."""

from .folder import apply_postprocessing_to_folder, determine_postprocessing, load_postprocess_save
from .steps import (
    PostprocessingError,
    apply_steps,
    load_nnunet_postprocessing_pkl,
    load_postprocessing,
    postprocessing_document,
)

__all__ = [
    "PostprocessingError",
    "apply_postprocessing_to_folder",
    "apply_steps",
    "determine_postprocessing",
    "load_nnunet_postprocessing_pkl",
    "load_postprocess_save",
    "load_postprocessing",
    "postprocessing_document",
]
