"""Reading nnU-Net's pickles (``{case}.pkl`` properties, ``postprocessing.pkl``) without running code.

A restricted unpickler admits only plain builtin containers/scalars, ``collections.OrderedDict``
and the numpy callables needed to rebuild arrays, scalars and dtypes. Anything else (a pickle
naming ``os.system``, a class from some package...) is refused with an error naming the file.
oxunet itself never writes pickles.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

__all__ = ["UnsafePickleError", "load_pickle_restricted"]

_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bytearray",
             "bool", "slice", "range", "NoneType"}
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric", "numpy.dtypes")
_NUMPY_NAMES = {"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer", "frombuffer"}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something outside the allow-list."""


class _Restricted(pickle.Unpickler):
    def __init__(self, f, source: str):
        super().__init__(f)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        if module in _NUMPY_MODULES and (name in _NUMPY_NAMES or (module == "numpy.dtypes" and name.endswith("DType"))):
            return super().find_class(module, name)
        raise UnsafePickleError(f"{self._source}: refused to unpickle {module}.{name} (only builtins and numpy "
                                "arrays/scalars are allowed)")


def load_pickle_restricted(path: str | os.PathLike) -> Any:
    """Loads a pickle that may only contain builtins and numpy arrays/scalars/dtypes."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _Restricted(io.BytesIO(data), path).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated / not a pickle
        raise pickle.UnpicklingError(f"{path}: not a readable pickle ({e})") from None
