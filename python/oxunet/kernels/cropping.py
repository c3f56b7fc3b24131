"""Cropping to the nonzero region (nnU-Net's ``crop_to_nonzero``), implemented in Rust."""

from __future__ import annotations

import numpy as np

from ._guarded import core as _core
from . import _validate
from .errors import KernelShapeError, KernelTypeError, KernelValueError

__all__ = ["crop_to_nonzero"]


def _native(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _label_value(name: str, value, dtype) -> int:
    """An integer (not bool) that fits `dtype`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise KernelTypeError(f"{name}: expected an integer, got {value!r}")
    info = np.iinfo(dtype)
    if not info.min <= int(value) <= info.max:
        raise KernelValueError(
            f"{name}: {int(value)} does not fit the seg dtype {np.dtype(dtype).name} ([{info.min}, {info.max}])"
        )
    return int(value)


def check_crop_to_nonzero_args(data, seg, nonzero_label) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Validates the arguments of :func:`crop_to_nonzero` (shared with the reference twin)."""
    data = _validate.array("data", data, _validate.FLOAT_DTYPES, ndim=(3, 4))
    if 0 in data.shape:
        raise KernelShapeError(f"data: every axis must have at least one element, got shape {data.shape}")
    if seg is not None:
        seg = _validate.array("seg", seg, _validate.LABEL_DTYPES, ndim=(data.ndim,))
        if seg.shape[1:] != data.shape[1:] or seg.shape[0] < 1:
            raise KernelShapeError(
                f"seg: expected shape (k, {', '.join(map(str, data.shape[1:]))}) with k >= 1 to match data "
                f"{data.shape}, got {seg.shape}"
            )
        seg = _native(seg)
    nonzero_label = _label_value("nonzero_label", nonzero_label, seg.dtype if seg is not None else np.int8)
    return _native(data), seg, nonzero_label


def crop_to_nonzero(
    data: np.ndarray, seg: np.ndarray | None = None, nonzero_label: int = -1
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Crops `data` (and `seg`) to the bounding box of the hole-filled nonzero mask.

    Same results as nnU-Net's ``crop_to_nonzero``: the mask is the OR over channels of
    ``data[c] != 0`` (NaN counts as nonzero), its holes are filled as
    ``scipy.ndimage.binary_fill_holes`` does (face connectivity), and the bounding box is
    half-open. An all-zero image keeps its full extent.

    Parameters
    ----------
    data : ndarray, float16/float32/float64, shape ``(c, x, y, z)`` or ``(c, x, y)``
        Image channels (integer images are not accepted: nnU-Net reads images as float).
    seg : ndarray, int8/int16/int32/uint8/uint16, shape ``(k, *data.shape[1:])``, optional
        Segmentation cropped alongside; not modified.
    nonzero_label : int
        Written into the cropped seg where it is 0 and outside the filled mask; must fit the
        seg dtype (int8 when `seg` is None).

    Returns
    -------
    data_cropped : ndarray
        New C-contiguous array, same dtype as `data`.
    seg_cropped : ndarray
        New C-contiguous array, same dtype as `seg`; without `seg`, an int8 ``(1, ...)`` array
        that is 0 inside the filled mask and `nonzero_label` outside.
    bbox : list of [start, end] lists of int, one per spatial axis.

    Notes
    -----
    nnU-Net returns views into `data` and modifies the caller's `seg` in place; here both
    outputs are copies and the inputs are left untouched.
    """
    data, seg, nonzero_label = check_crop_to_nonzero_args(data, seg, nonzero_label)
    d, s, bbox = _core.crop_to_nonzero(data, seg, nonzero_label)
    return d, s, [[int(a), int(b)] for a, b in bbox]
