"""Cropping to the nonzero region (nnU-Net's ``crop_to_nonzero``), implemented in Rust."""

from __future__ import annotations

import numpy as np

from ._guarded import core as _core
from ._validate import check_crop_to_nonzero_args

__all__ = ["crop_to_nonzero"]


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
