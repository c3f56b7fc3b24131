"""Argument checks shared by the Rust-backed kernels and their reference twins, so both
reject bad input with the same exception and the same message."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .errors import KernelShapeError, KernelTypeError, KernelValueError

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
LABEL_DTYPES = (np.int8, np.int16, np.int32, np.uint8, np.uint16)
_INT_LIMIT = 2**62


def array(name: str, value, dtypes: Sequence[type] | None = None, ndim: Iterable[int] | None = None) -> np.ndarray:
    """Checks that `value` is a numpy array of one of `dtypes` with one of the `ndim`s."""
    if not isinstance(value, np.ndarray):
        raise KernelTypeError(f"{name}: expected a numpy array, got {type(value).__name__}")
    if dtypes is not None and value.dtype.type not in dtypes:
        allowed = ", ".join(np.dtype(d).name for d in dtypes)
        raise KernelTypeError(f"{name}: dtype {value.dtype} is not supported (expected one of {allowed})")
    if ndim is not None:
        ndim = tuple(ndim)
        if value.ndim not in ndim:
            want = " or ".join(str(n) for n in ndim)
            raise KernelShapeError(f"{name}: expected {want} dimensions, got {value.ndim} (shape {value.shape})")
    return value


def int_tuple(name: str, value, length: int | None = None, minimum: int | None = None) -> tuple[int, ...]:
    """A sequence of integers (numpy integers accepted), optionally of a given length and lower bound."""
    try:
        items = tuple(value)
    except TypeError:
        raise KernelTypeError(f"{name}: expected a sequence of integers, got {type(value).__name__}") from None
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                v = int(v)
            else:
                raise KernelTypeError(f"{name}: expected integers, got {v!r}")
        out.append(int(v))
    # beyond int64 no kernel argument makes sense, and the bindings could not even convert it
    if any(abs(v) > _INT_LIMIT for v in out):
        raise KernelValueError(f"{name}: values must lie within +-2**62, got {tuple(out)}")
    if length is not None and len(out) != length:
        raise KernelShapeError(f"{name}: expected {length} values, got {len(out)} ({tuple(out)})")
    if minimum is not None and any(v < minimum for v in out):
        raise KernelValueError(f"{name}: every value must be >= {minimum}, got {tuple(out)}")
    return tuple(out)


def spacing(name: str, value, length: int) -> tuple[float, ...]:
    """A positive, finite spacing of `length` values."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise KernelTypeError(f"{name}: expected a sequence of {length} numbers, got {value!r}") from None
    if len(out) != length:
        raise KernelShapeError(f"{name}: expected {length} values, got {len(out)} ({out})")
    if not all(np.isfinite(v) and v > 0 for v in out):
        raise KernelValueError(f"{name}: every spacing must be positive and finite, got {out}")
    return out
