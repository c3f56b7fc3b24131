"""Exceptions raised by oxunet's kernels (Rust and reference alike).

They subclass the builtin TypeError/ValueError, so callers that catch those keep working,
and every message starts with the name of the argument at fault.
"""


class KernelTypeError(TypeError):
    """An argument has the wrong type or dtype."""


class KernelValueError(ValueError):
    """An argument has a value the kernel cannot work with (range, spacing, target shape)."""


class KernelShapeError(KernelValueError):
    """An argument has the wrong number of dimensions or a shape inconsistent with another."""


__all__ = ["KernelShapeError", "KernelTypeError", "KernelValueError"]
