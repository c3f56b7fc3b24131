"""The compiled kernels (``oxunet._core``) behind a guard.

A Rust panic that escapes a binding reaches Python as ``pyo3_runtime.PanicException``, a
BaseException that ``except Exception`` misses. The bindings catch panics themselves; this
guard is the second line, turning any that slip through into :class:`KernelInternalError`.

Without the extension (a source tree that was never built) every module still imports, so the
NumPy twins in :mod:`oxunet.kernels.reference` run; a Rust-backed kernel raises ImportError
when called.
"""

from __future__ import annotations

import functools
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING

from .errors import KernelInternalError

_raw: ModuleType | None
_missing_reason = ""
try:
    from .. import _core as _raw
except ImportError as exc:  # not built: see the module docs
    _raw = None
    _missing_reason = str(exc)


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
        return _Guarded(result, name) if _raw is not None and isinstance(result, _raw.Aggregator) else result

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


class _Missing:
    """Stands in for the extension when it is not built: any entry point raises ImportError."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise ImportError(f"oxunet._core (the Rust kernels) is not available ({_missing_reason}); build it with "
                              "`pip install -e .` or use the NumPy twins in oxunet.kernels.reference")

        return unavailable


if TYPE_CHECKING:  # the guarded namespace has the extension's signatures (oxunet/_core.pyi)
    from .. import _core as core
elif _raw is None:
    core = _Missing()
else:
    core = SimpleNamespace(**{
        name: guard(value, name) if callable(value) else value
        for name, value in vars(_raw).items() if not name.startswith("__")
    })
