"""Exceptions raised by oxunet's kernels (Rust and reference alike).

They subclass :class:`oxunet.errors.KernelError` (so the command line reports them as one
line) and the builtin they stand for (TypeError / ValueError / MemoryError), so callers that
catch those keep working; every message starts with the name of the argument (or of the
buffer, for MemoryError) at fault.
"""

from ..errors import KernelError


class KernelTypeError(KernelError, TypeError):
    """An argument has the wrong type or dtype."""


class KernelValueError(KernelError, ValueError):
    """An argument has a value the kernel cannot work with (range, spacing, target shape)."""


class KernelShapeError(KernelValueError):
    """An argument has the wrong number of dimensions or a shape inconsistent with another."""


class KernelMemoryError(KernelError, MemoryError):
    """A buffer the arguments ask for cannot be allocated (its name and size are in the message)."""


class KernelInternalError(RuntimeError):
    """A kernel failed in a way no argument explains: a bug (never an OxunetError)."""


__all__ = ["KernelInternalError", "KernelMemoryError", "KernelShapeError", "KernelTypeError", "KernelValueError"]
