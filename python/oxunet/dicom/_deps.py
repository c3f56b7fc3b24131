"""Lazy imports of the optional DICOM libraries, with one clear error when they are missing."""

from __future__ import annotations

from types import ModuleType
from ..errors import DatasetError

INSTALL_HINT = "install oxunet[dicom] (pip install 'oxunet[dicom]': pydicom>=3, highdicom>=0.23)"


class DicomInputError(DatasetError):
    """A DICOM input cannot be converted; the message names the file/series and the problem."""


def pydicom() -> ModuleType:
    try:
        import pydicom as module
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"DICOM support needs pydicom: {INSTALL_HINT}") from e
    return module


def highdicom() -> ModuleType:
    try:
        import highdicom as module
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"DICOM-SEG support needs highdicom: {INSTALL_HINT}") from e
    return module
