"""Raw datasets in nnU-Net's layout: folder roots, dataset.json and case discovery."""

from .cases import images_by_case, training_cases
from .dataset_json import DatasetInfo, DatasetJsonError, load_dataset_json
from .paths import DatasetNotFoundError, Paths, dataset_name, resolve_paths

__all__ = [
    "DatasetInfo",
    "DatasetJsonError",
    "DatasetNotFoundError",
    "Paths",
    "dataset_name",
    "images_by_case",
    "load_dataset_json",
    "resolve_paths",
    "training_cases",
]
