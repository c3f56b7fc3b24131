"""Ensembling of probability folders and nnU-Net's ``find_best_configuration``."""

from .ensemble import (
    EnsembleError,
    average_probabilities,
    ensemble_folders,
    load_case_properties,
    probabilities_to_segmentation,
)
from .find_best import find_best_configuration

__all__ = [
    "EnsembleError",
    "average_probabilities",
    "ensemble_folders",
    "find_best_configuration",
    "load_case_properties",
    "probabilities_to_segmentation",
]
