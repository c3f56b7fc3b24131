"""nnU-Net's default resampling of images and label maps, in Rust.

Same signatures and semantics as the NumPy/SciPy twins in
:mod:`oxunet.kernels.reference.resampling` (nnU-Net v2.8.1 ``resample_data_or_seg_to_shape``
with scikit-image ``resize(mode='edge', anti_aliasing=False)`` and batchgenerators 0.25.5
``resize_segmentation``), computed separably axis by axis in parallel, never through a
float64 copy of a float32 volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._guarded import core as _core
from ._validate import FLOAT_DTYPES, LABEL_DTYPES, check_resample_args
from .reference.resampling import separate_z_axis

__all__ = ["resample_data", "resample_seg", "separate_z_axis"]

_DATA_FNS = {
    np.dtype(np.float16): _core.resample_data_f16,
    np.dtype(np.float32): _core.resample_data_f32,
    np.dtype(np.float64): _core.resample_data_f64,
}
_SEG_FNS = {
    np.dtype(np.int8): _core.resample_seg_i8,
    np.dtype(np.int16): _core.resample_seg_i16,
    np.dtype(np.int32): _core.resample_seg_i32,
    np.dtype(np.uint8): _core.resample_seg_u8,
    np.dtype(np.uint16): _core.resample_seg_u16,
}


def _call(fns, arr: np.ndarray, *args) -> np.ndarray:
    # the bindings take native byte order (non-contiguous views are fine as they are); the
    # result has the input's dtype, byte order included
    if arr.dtype.isnative:
        return fns[arr.dtype](arr, *args)
    out = fns[arr.dtype.newbyteorder("=")](arr.astype(arr.dtype.newbyteorder("=")), *args)
    return out.astype(arr.dtype)


def resample_data(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                  new_spacing: Sequence[float], order: int = 3, order_z: int = 0,
                  force_separate_z: bool | None = None) -> np.ndarray:
    """Resamples image data ``(c, x, y, z)`` or ``(c, x, y)`` to ``new_shape`` (nnU-Net semantics).

    Parameters
    ----------
    data : float16, float32 or float64 array, channel first (a torch tensor is converted).
    new_shape : target spatial shape (one entry per spatial axis, each >= 1).
    current_spacing, new_spacing : voxel spacings (positive, finite); they only decide the
        separate-z (anisotropic) path: ``max/min > 3`` of the current, else of the new spacing,
        along the axis of largest spacing (a tie for the largest disables it).
    order : spline order 0, 1 or 3 (in plane on the separate-z path).
    order_z : spline order 0, 1 or 3 along the separate axis.
    force_separate_z : None (decide from the spacings), True or False.

    Returns
    -------
    Array ``(c, *new_shape)`` with the dtype of `data`, each resize clipped to the range of
    its input (channel, or slice on the separate-z path); `data` itself when the shape does
    not change.
    """
    data, new_shape, cs, ns, order, order_z, force = check_resample_args(
        "data", data, FLOAT_DTYPES, new_shape, current_spacing, new_spacing, order, order_z, force_separate_z)
    if tuple(data.shape[1:]) == new_shape:
        return data
    return _call(_DATA_FNS, data, list(new_shape), list(cs), list(ns), order, order_z, force)


def resample_seg(seg: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                 new_spacing: Sequence[float], order: int = 1, order_z: int = 0,
                 force_separate_z: bool | None = None) -> np.ndarray:
    """Resamples a label map ``(c, x, y, z)`` or ``(c, x, y)`` to ``new_shape`` (nnU-Net semantics).

    Parameters
    ----------
    seg : int8, int16, int32, uint8 or uint16 labels (-1 allowed), channel first.
    new_shape, current_spacing, new_spacing, force_separate_z : as in :func:`resample_data`.
    order : 0 (nearest) or 1 / 3: each voxel takes the label whose interpolated indicator is
        largest; an exact tie goes to the nearest-neighbour label when it is among the best,
        else to the smallest tied label. Order 1 runs in one pass over the output.
    order_z : order along the separate axis; 0 is nearest, 1 / 3 write each label (ascending)
        where its interpolated indicator exceeds 0.5 and leave other voxels 0 (nnU-Net's rule).

    Returns
    -------
    Array ``(c, *new_shape)`` with the dtype of `seg`; `seg` itself when the shape does not
    change.
    """
    seg, new_shape, cs, ns, order, order_z, force = check_resample_args(
        "seg", seg, LABEL_DTYPES, new_shape, current_spacing, new_spacing, order, order_z, force_separate_z)
    if tuple(seg.shape[1:]) == new_shape:
        return seg
    return _call(_SEG_FNS, seg, list(new_shape), list(cs), list(ns), order, order_z, force)
