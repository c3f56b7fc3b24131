"""I/O errors that name the file at fault."""

from ..errors import DatasetError


class ImageReadError(DatasetError, RuntimeError):
    """A file could not be read, or its channels disagree in shape or spacing."""
