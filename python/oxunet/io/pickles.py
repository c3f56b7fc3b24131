"""Reading nnU-Net's ``.pkl`` files (case properties, ``postprocessing.pkl``) without running
arbitrary code: a restricted unpickler that admits only builtin containers/scalars and numpy's
array, dtype and scalar reconstruction. Anything else is refused with the file and the global
named. oxunet itself never writes pickles (JSON instead)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from ..errors import OxunetError

_ALLOWED: dict[tuple[str, str], object] = {}


def _register_defaults() -> None:
    import builtins
    import codecs
    import collections
    import importlib

    import numpy as np

    for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "bool", "str", "bytes", "bytearray",
                 "complex", "slice", "range"):
        _ALLOWED[("builtins", name)] = getattr(builtins, name)
        _ALLOWED[("__builtin__", name)] = getattr(builtins, name)  # protocol-2 pickles written by Python 2
    _ALLOWED[("_codecs", "encode")] = codecs.encode  # how protocol 2 stores bytes (numpy buffers)
    _ALLOWED[("collections", "OrderedDict")] = collections.OrderedDict
    try:  # numpy >= 2 stores numpy._core, older numpy.core; both names must load with either numpy
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # pragma: no cover - numpy < 2
        multiarray = importlib.import_module("numpy.core.multiarray")
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        _ALLOWED[(module, "_reconstruct")] = multiarray._reconstruct
        _ALLOWED[(module, "scalar")] = multiarray.scalar
    _ALLOWED[("numpy", "ndarray")] = np.ndarray
    _ALLOWED[("numpy", "dtype")] = np.dtype
    for name in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                 "float32", "float64", "complex64", "complex128"):
        _ALLOWED[("numpy", name)] = getattr(np, name)
    for module in ("numpy.dtypes", ):
        import numpy.dtypes as dtypes

        for name in dir(dtypes):
            if name.endswith("DType"):
                _ALLOWED[(module, name)] = getattr(dtypes, name)


class UnsafePickleError(OxunetError, pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, extra: Mapping[tuple[str, str], object]):
        super().__init__(file)
        self._source = source
        self._extra = extra

    def find_class(self, module: str, name: str):
        key = (module, name)
        if key in self._extra:
            return self._extra[key]
        if key in _ALLOWED:
            return _ALLOWED[key]
        raise UnsafePickleError(
            f"{self._source}: refusing to load global '{module}.{name}' (only builtin containers/scalars and numpy "
            "arrays/dtypes/scalars are allowed in pickles read by oxunet)"
        )


def load_restricted_pickle(
    path: str | os.PathLike, extra_globals: Mapping[tuple[str, str], object] | None = None
):
    """Loads ``path`` admitting only builtins and numpy types (plus ``extra_globals``, a map from
    ``(module, name)`` to the object to use instead). Raises UnsafePickleError naming the file
    and the refused global; other damage raises pickle.UnpicklingError naming the file."""
    if not _ALLOWED:
        _register_defaults()
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, str(path), extra_globals or {}).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as e:
        raise pickle.UnpicklingError(f"{path}: not a readable pickle ({e})") from None
