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
from ._validate import (
    FLOAT_DTYPES,
    LABEL_DTYPES,
    check_band_args,
    check_band_covers,
    check_force,
    check_order,
    check_resample_args,
    int_tuple,
    spacing,
)
from .reference.resampling import separate_z_axis

__all__ = ["band_dependencies", "resample_data", "resample_data_band", "resample_seg", "separate_z_axis"]

_DATA_FNS = {
    np.dtype(np.float16): _core.resample_data_f16,
    np.dtype(np.float32): _core.resample_data_f32,
    np.dtype(np.float64): _core.resample_data_f64,
}
_BAND_FNS = {
    np.dtype(np.float16): _core.resample_data_band_f16,
    np.dtype(np.float32): _core.resample_data_band_f32,
    np.dtype(np.float64): _core.resample_data_band_f64,
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


def band_dependencies(in_shape: Sequence[int], new_shape: Sequence[int], current_spacing: Sequence[float],
                      new_spacing: Sequence[float], order: int = 3, order_z: int = 0,
                      force_separate_z: bool | None = None) -> tuple[np.ndarray | None, str]:
    """Whether :func:`resample_data` of 3-d data of spatial shape `in_shape` can be computed band
    by band along axis 0 (:func:`resample_data_band`), bit for bit.

    Returns ``(deps, "")`` with `deps` an int64 array ``(new_shape[0], 2)``: the first and last
    input plane each output plane reads; or ``(None, why)``. Bands are exact where every pass
    across axis 0 is local (order 0 or 1) and every clip is per slice along axis 0 or a no-op
    (order 3's clip to a channel's range and its B-spline prefilter span the whole volume).
    """
    in_shape = int_tuple("in_shape", in_shape, length=3, minimum=1)
    new_shape = int_tuple("new_shape", new_shape, length=3, minimum=1)
    cs = spacing("current_spacing", current_spacing, 3)
    ns = spacing("new_spacing", new_spacing, 3)
    deps, why = _core.band_dependencies(list(in_shape), list(new_shape), list(cs), list(ns),
                                        check_order("order", order), check_order("order_z", order_z),
                                        check_force(force_separate_z))
    if deps is None:
        return None, why
    return np.asarray(deps, dtype=np.int64).reshape(-1, 2), ""


def resample_data_band(band: np.ndarray, first_plane: int, depth: int, planes: Sequence[int],
                       new_shape: Sequence[int], current_spacing: Sequence[float], new_spacing: Sequence[float],
                       order: int = 3, order_z: int = 0, force_separate_z: bool | None = None) -> np.ndarray:
    """Output planes ``planes = (o0, o1)`` along axis 0 of ``resample_data(full, new_shape, ...)``
    from `band`, input planes ``[first_plane, first_plane + band.shape[1])`` of a 4-d `full`
    with `depth` planes: bit for bit the whole volume's planes (same passes in the same order,
    same intermediate precision). The band must hold every plane those outputs read
    (:func:`band_dependencies`); geometries without exact bands raise KernelValueError.

    This is what lets an export resample a volume slab by slab with bounded memory.
    """
    band, first_plane, depth, span, new_shape, cs, ns, order, order_z, force = check_band_args(
        band, first_plane, depth, planes, new_shape, current_spacing, new_spacing, order, order_z,
        force_separate_z)
    deps, why = band_dependencies((depth, *band.shape[2:]), new_shape, cs, ns, order, order_z, force)
    check_band_covers(deps, why, band.shape[1], first_plane, span)
    return _call(_BAND_FNS, band, first_plane, depth, span, list(new_shape), list(cs), list(ns), order,
                 order_z, force)
