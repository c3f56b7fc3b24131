"""NumPy/SciPy twin of :mod:`oxunet.kernels.resampling` (nnU-Net's default resampling).

Semantics are those of nnU-Net v2.8.1 ``resample_data_or_seg_to_shape`` with scikit-image's
``resize(mode='edge', anti_aliasing=False)`` and batchgenerators 0.25.5 ``resize_segmentation``,
written directly on ``scipy.ndimage.zoom(mode='nearest', grid_mode=True)``:

* every resize maps output voxel ``k`` to input coordinate ``(k + 0.5) * n / m - 0.5`` (pixel
  areas aligned), uses B-splines of the given order (order 3 with scipy's prefilter on an
  edge-padded copy) and repeats the edge voxel beyond the border;
* data: the result of a resize is clipped to the [min, max] of what was resized (one channel,
  or one slice on the separate-z path);
* segmentations: every label's indicator is resized and each voxel takes the label with the
  largest score; an exact tie goes to the nearest-neighbour label when it is among the best,
  else to the smallest tied label;
* separate-z (anisotropic) path: slices orthogonal to the low-resolution axis are resized in
  plane at ``order``, then that axis alone at ``order_z`` (no clipping there). For
  segmentations with ``order_z > 0`` each label is written, in ascending order, where its
  interpolated indicator exceeds 0.5 (voxels no label reaches stay 0), as nnU-Net does.

The argument checks are :mod:`oxunet.kernels._validate`'s, shared with the Rust-backed wrappers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ...constants import ANISO_THRESHOLD
from .._validate import (
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

__all__ = ["ANISO_THRESHOLD", "band_dependencies", "resample_data", "resample_data_band", "resample_seg",
           "separate_z_axis"]


def _lowres_axes(sp: Sequence[float]) -> list[int]:
    m = max(sp)
    return [i for i, s in enumerate(sp) if m / s == 1]


def separate_z_axis(current_spacing: Sequence[float], new_spacing: Sequence[float],
                    force_separate_z: bool | None = None, threshold: float = ANISO_THRESHOLD) -> int | None:
    """The axis resampled separately (nnU-Net's ``determine_do_sep_z_and_axis``), or None.

    With ``force_separate_z=None`` the current spacing decides if ``max/min > threshold``, else the
    new spacing; the axis is the one with the largest spacing, and a tie for the largest spacing
    (two or three axes) disables the separate path. ``True`` forces the current spacing's largest
    axis (still subject to the tie rule), ``False`` disables it."""
    if force_separate_z is not None:
        if not force_separate_z:
            return None
        axes = _lowres_axes(current_spacing)
    elif max(current_spacing) / min(current_spacing) > threshold:
        axes = _lowres_axes(current_spacing)
    elif max(new_spacing) / min(new_spacing) > threshold:
        axes = _lowres_axes(new_spacing)
    else:
        return None
    return axes[0] if len(axes) == 1 else None


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------

def _zoom(x: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """skimage-style resize without clipping: scipy zoom, half-pixel grid, edge extension."""
    if tuple(x.shape) == tuple(shape):
        return x.copy()  # scipy returns the input unchanged for unit zoom factors
    factors = [m / n for n, m in zip(x.shape, shape)]
    out = ndimage.zoom(x, factors, order=order, mode="nearest", grid_mode=True)
    assert out.shape == tuple(shape)
    return out


def _resize(x: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """skimage.transform.resize(x, shape, order, mode='edge', anti_aliasing=False) for float64 x."""
    out = _zoom(x, shape, order)
    lo, hi = np.min(x), np.max(x)
    if np.isnan(lo):
        lo, hi = np.nanmin(x), np.nanmax(x)
    np.clip(out, lo, hi, out=out)
    return out


def _resize_seg(x: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """batchgenerators 0.25.5 resize_segmentation(x, shape, order) (seg_tiebreak='nearest')."""
    if order == 0 or tuple(x.shape) == tuple(shape):
        return _zoom(x, shape, 0)
    labels = np.unique(x)
    if len(labels) == 1:
        return np.full(shape, labels[0], dtype=x.dtype)
    nearest = _zoom(x, shape, 0)
    best = np.full(shape, -np.inf)
    winner = np.zeros(shape, dtype=np.intp)       # index of the first label reaching the best score
    nearest_score = np.zeros(shape)               # score of the nearest-neighbour label
    for i, label in enumerate(labels):
        score = _zoom((x == label).astype(np.float64), shape, order)
        np.clip(score, 0.0, 1.0, out=score)       # the indicator's own range (it has 0s and 1s)
        better = score > best
        winner[better] = i
        np.maximum(best, score, out=best)
        is_nn = nearest == label
        nearest_score[is_nn] = score[is_nn]
    out = labels[winner]
    use_nearest = (nearest_score == best) & (best > 0)
    out[use_nearest] = nearest[use_nearest]
    return out


def _slices(ndim: int, axis: int, n: int):
    for s in range(n):
        yield (slice(None),) * axis + (s,)


# ----------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------

def resample_data(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                  new_spacing: Sequence[float], order: int = 3, order_z: int = 0,
                  force_separate_z: bool | None = None) -> np.ndarray:
    """Resamples image data ``(c, x, y, z)`` or ``(c, x, y)`` to ``new_shape`` (nnU-Net semantics).

    Parameters
    ----------
    data : float16, float32 or float64 array, channel first.
    new_shape : target spatial shape (one entry per spatial axis, each >= 1).
    current_spacing, new_spacing : voxel spacings (positive), used only to decide the
        separate-z (anisotropic) path.
    order : spline order 0, 1 or 3 (in plane on the separate-z path).
    order_z : spline order 0, 1 or 3 along the separate axis.
    force_separate_z : None (decide from the spacings), True or False.

    Returns
    -------
    Array of ``(c, *new_shape)`` with the dtype of `data`; `data` itself when the shape does
    not change.
    """
    data, new_shape, current_spacing, new_spacing, order, order_z, force = check_resample_args(
        "data", data, FLOAT_DTYPES, new_shape, current_spacing, new_spacing, order, order_z, force_separate_z)
    if tuple(data.shape[1:]) == new_shape:
        return data
    axis = separate_z_axis(current_spacing, new_spacing, force)
    out = np.empty((data.shape[0], *new_shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        x = data[c].astype(np.float64)
        if axis is None:
            out[c] = _resize(x, new_shape, order)
            continue
        plane_shape = [m for i, m in enumerate(new_shape) if i != axis]
        tmp_shape = list(new_shape)
        tmp_shape[axis] = x.shape[axis]
        tmp = np.empty(tmp_shape)
        for idx in _slices(x.ndim, axis, x.shape[axis]):
            tmp[idx] = _resize(x[idx], plane_shape, order)
        out[c] = _zoom(tmp, new_shape, order_z)  # along the separate axis only, no clipping
    return out


def resample_seg(seg: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                 new_spacing: Sequence[float], order: int = 1, order_z: int = 0,
                 force_separate_z: bool | None = None) -> np.ndarray:
    """Resamples a label map ``(c, x, y, z)`` or ``(c, x, y)`` to ``new_shape`` (nnU-Net semantics).

    Parameters
    ----------
    seg : int8, int16, int32, uint8 or uint16 labels (-1 allowed), channel first.
    new_shape, current_spacing, new_spacing, force_separate_z : as in :func:`resample_data`.
    order : 0 (nearest) or 1 / 3 (argmax of the interpolated label indicators, exact ties
        settled by the nearest-neighbour label).
    order_z : order along the separate axis; 0 is nearest, 1 / 3 write each label (ascending)
        where its interpolated indicator exceeds 0.5, other voxels 0 (nnU-Net's rule).

    Returns
    -------
    Array of ``(c, *new_shape)`` with the dtype of `seg`; `seg` itself when the shape does not
    change.
    """
    seg, new_shape, current_spacing, new_spacing, order, order_z, force = check_resample_args(
        "seg", seg, LABEL_DTYPES, new_shape, current_spacing, new_spacing, order, order_z, force_separate_z)
    if tuple(seg.shape[1:]) == new_shape:
        return seg
    axis = separate_z_axis(current_spacing, new_spacing, force)
    out = np.empty((seg.shape[0], *new_shape), dtype=seg.dtype)
    for c in range(seg.shape[0]):
        x = seg[c]
        if axis is None:
            out[c] = _resize_seg(x, new_shape, order)
            continue
        plane_shape = [m for i, m in enumerate(new_shape) if i != axis]
        tmp_shape = list(new_shape)
        tmp_shape[axis] = x.shape[axis]
        tmp = np.empty(tmp_shape, dtype=seg.dtype)
        for idx in _slices(x.ndim, axis, x.shape[axis]):
            tmp[idx] = _resize_seg(x[idx], plane_shape, order)
        if tmp.shape[axis] == new_shape[axis] or order_z == 0:
            out[c] = _zoom(tmp, new_shape, 0)
        else:
            res = np.zeros(new_shape, dtype=seg.dtype)
            for label in np.unique(tmp):
                score = _zoom((tmp == label).astype(np.float64), new_shape, order_z)
                res[score > 0.5] = label  # nnU-Net: np.round(score) > 0.5, later labels overwrite
            out[c] = res
    return out


def _taps_span(n: int, m: int, order: int) -> np.ndarray:
    """First and last input sample each output sample of an n -> m resize reads (orders 0, 1)."""
    cc = (np.arange(m, dtype=np.float64) + 0.5) * (n / m) - 0.5
    if order == 0:
        j = np.clip(np.floor(cc + 0.5), 0, n - 1).astype(np.int64)
        return np.stack([j, j], axis=1)
    s = np.floor(cc).astype(np.int64)
    a, b = np.clip(s, 0, n - 1), np.clip(s + 1, 0, n - 1)
    return np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)


def band_dependencies(in_shape: Sequence[int], new_shape: Sequence[int], current_spacing: Sequence[float],
                      new_spacing: Sequence[float], order: int = 3, order_z: int = 0,
                      force_separate_z: bool | None = None) -> tuple[np.ndarray | None, str]:
    """Twin of :func:`oxunet.kernels.resampling.band_dependencies`."""
    in_shape = int_tuple("in_shape", in_shape, length=3, minimum=1)
    new_shape = int_tuple("new_shape", new_shape, length=3, minimum=1)
    cs = spacing("current_spacing", current_spacing, 3)
    ns = spacing("new_spacing", new_spacing, 3)
    order, order_z = check_order("order", order), check_order("order_z", order_z)
    sep = separate_z_axis(cs, ns, check_force(force_separate_z))
    changes = [a != b for a, b in zip(in_shape, new_shape)]
    if sep is None and order == 3 and any(changes):
        return None, ("order 3 is clipped to each channel's range over the whole volume (and its B-spline "
                      "prefilter spans every plane along axis 0)")
    if sep == 0 and order_z == 3 and changes[0]:
        return None, "order_z 3 along axis 0: its B-spline prefilter spans every plane"
    if sep is not None and sep != 0 and order == 3 and any(c for i, c in enumerate(changes) if i != sep):
        return None, (f"order 3 in plane is clipped per slice along axis {sep}, and those slices span every "
                      f"plane of axis 0")
    n0, m0 = in_shape[0], new_shape[0]
    if n0 == m0:
        o = np.arange(m0, dtype=np.int64)
        return np.stack([o, o], axis=1), ""
    return _taps_span(n0, m0, order_z if sep == 0 else order), ""


def resample_data_band(band: np.ndarray, first_plane: int, depth: int, planes: Sequence[int],
                       new_shape: Sequence[int], current_spacing: Sequence[float], new_spacing: Sequence[float],
                       order: int = 3, order_z: int = 0, force_separate_z: bool | None = None) -> np.ndarray:
    """Twin of :func:`oxunet.kernels.resampling.resample_data_band`: the band, edge-padded to the
    full depth (the padding is never read by the planes asked for), resampled whole, sliced."""
    band, first_plane, depth, span, new_shape, cs, ns, order, order_z, force = check_band_args(
        band, first_plane, depth, planes, new_shape, current_spacing, new_spacing, order, order_z,
        force_separate_z)
    deps, why = band_dependencies((depth, *band.shape[2:]), new_shape, cs, ns, order, order_z, force)
    check_band_covers(deps, why, band.shape[1], first_plane, span)
    after = depth - first_plane - band.shape[1]
    full = np.pad(band, ((0, 0), (first_plane, after), (0, 0), (0, 0)), mode="edge")
    out = resample_data(full, new_shape, cs, ns, order, order_z, force)
    return np.ascontiguousarray(out[:, span[0]:span[1]])
