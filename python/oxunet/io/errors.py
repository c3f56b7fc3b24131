"""I/O errors that name the file at fault."""


class ImageReadError(RuntimeError):
    """A file could not be read, or its channels disagree in shape or spacing."""
