"""The compiled kernels (``oxunet._core``) behind a guard.

A Rust panic that escapes a binding reaches Python as ``pyo3_runtime.PanicException``, a
BaseException that ``except Exception`` misses. The bindings catch panics themselves; this
guard is the second line, turning any that slip through into :class:`KernelInternalError`.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from .. import _core as _raw
from .errors import KernelInternalError


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


def guard(fn, name: str):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            raise KernelInternalError(
                f"internal error in oxunet kernel {name}: {exc} (this is a bug, please report it)") from None
        return _Guarded(result, name) if isinstance(result, _raw.Aggregator) else result

    return call


class _Guarded:
    """An object of the extension (the Aggregator) whose methods are guarded."""

    __slots__ = ("_obj", "_name")

    def __init__(self, obj, name: str):
        self._obj = obj
        self._name = name

    def __getattr__(self, attr: str):
        value = getattr(self._obj, attr)
        return guard(value, f"{self._name}.{attr}") if callable(value) else value


core = SimpleNamespace(**{
    name: guard(value, name) if callable(value) else value
    for name, value in vars(_raw).items() if not name.startswith("__")
})
