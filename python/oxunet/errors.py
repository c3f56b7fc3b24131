"""oxunet's error contract: one base class, one subclass per stage.

Every error oxunet raises for a user's mistake (a bad file, a wrong argument, a dataset that
cannot be trained on) is an :class:`OxunetError` whose message names the file or case and the
problem; the command line prints it as one line and exits with status 1. Each stage class also
inherits the builtin that stage raised before, so ``except ValueError`` (or ``RuntimeError``,
``FileNotFoundError``) around oxunet calls keeps working. Anything that is not an
``OxunetError`` is a bug: the command line logs its traceback (see :mod:`oxunet.cli.guard`).
"""

from __future__ import annotations


class OxunetError(Exception):
    """Base of every error oxunet raises for a problem the user can fix."""


class DatasetError(OxunetError, ValueError):
    """A raw dataset (dataset.json, images, labels) is missing, unreadable or inconsistent."""


class PlanningError(OxunetError, ValueError):
    """Fingerprinting or experiment planning cannot go on (bad fingerprint, impossible plan)."""


class PreprocessingError(OxunetError, RuntimeError):
    """A case could not be preprocessed (read, normalised, resampled or stored)."""


class TrainingError(OxunetError, RuntimeError):
    """Training cannot start or go on (configuration, checkpoint, data loading)."""


class InferenceError(OxunetError, RuntimeError):
    """Prediction cannot run (model folder, checkpoint, input images)."""


class EvaluationError(OxunetError, RuntimeError):
    """Predictions cannot be scored against the reference."""


class KernelError(OxunetError):
    """A kernel of :mod:`oxunet.kernels` rejected its arguments (see its subclasses)."""


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """A file the dataset declares (an image, a label, dataset.json) does not exist."""


__all__ = [
    "DatasetError",
    "DatasetFileNotFoundError",
    "EvaluationError",
    "InferenceError",
    "KernelError",
    "OxunetError",
    "PlanningError",
    "PreprocessingError",
    "TrainingError",
]
