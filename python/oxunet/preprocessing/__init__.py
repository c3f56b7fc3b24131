"""Preprocessing: nnU-Net's DefaultPreprocessor per case, the dataset driver and the storage format."""

from .configuration import PlansError, PreprocessingPlan, resolve_configuration
from .normalization import normalization_class, normalization_for_channel_name, normalize
from .pipeline import PreprocessingError, class_location_keys, compute_new_shape, preprocess_case
from .run import ConfigurationReport, preprocess_dataset
from .storage import CaseHandle, StorageError, case_is_complete, list_cases, open_case, read_patch, write_case

__all__ = [
    "CaseHandle",
    "ConfigurationReport",
    "PlansError",
    "PreprocessingError",
    "PreprocessingPlan",
    "StorageError",
    "case_is_complete",
    "class_location_keys",
    "compute_new_shape",
    "list_cases",
    "normalization_class",
    "normalization_for_channel_name",
    "normalize",
    "open_case",
    "preprocess_case",
    "preprocess_dataset",
    "read_patch",
    "resolve_configuration",
    "write_case",
]
