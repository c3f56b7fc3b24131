"""nnU-Net's data resampling on a torch device, equal to :func:`oxunet.kernels.resample_data`.

Resizing a volume with B-splines on a product grid is separable: per axis it is one linear map
``W`` (``m × n``: spline prefilter, then the interpolation weights of every output position).
So instead of re-implementing scipy's spline code on the GPU, ``W`` is computed once per
``(n, m, order)`` with scipy on the CPU (the same ``zoom(mode='nearest', grid_mode=True)`` the
NumPy twin of the Rust kernel is written on, applied to an identity matrix) and the volume is
resized by three matrix products on the device. What is not linear is kept as nnU-Net has it:
the result of an in-plane (separate-z) or whole-volume resize is clipped to the range of what was
resized; the separate axis is not clipped.

Products run in float32 with TF32 off, so results equal the float64 CPU kernel to about 1e-6
relative: the exported labels agree voxel for voxel except at exact ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..kernels.resampling import separate_z_axis

__all__ = ["axis_matrix", "resample_data_torch"]


@lru_cache(maxsize=64)
def _axis_matrix_np(n_in: int, n_out: int, order: int) -> np.ndarray:
    from scipy import ndimage

    if n_in == n_out:
        return np.eye(n_in)
    w = ndimage.zoom(np.eye(n_in), (n_out / n_in, 1.0), order=order, mode="nearest", grid_mode=True)
    if w.shape != (n_out, n_in):  # scipy rounds the output size; never expected to differ
        raise RuntimeError(f"resampling matrix for {n_in} -> {n_out}: scipy gave shape {w.shape}")
    return w


def axis_matrix(n_in: int, n_out: int, order: int, device, dtype=None):
    """The ``(n_out, n_in)`` map of a 1-D resize (nnU-Net's resize semantics) as a torch tensor."""
    import torch

    return torch.from_numpy(_axis_matrix_np(int(n_in), int(n_out), int(order))).to(
        device=device, dtype=dtype or torch.float32)


def _apply_axis(x, axis: int, w):
    """Multiplies `x` along `axis` by ``w`` (``(m, n)``): the axis keeps its place."""
    import torch

    moved = torch.movedim(x, axis, -1)
    out = torch.matmul(moved, w.t())
    return torch.movedim(out, -1, axis)


def _resize(x, shape: Sequence[int], order: int, first_axis: int = 0):
    """Resizes the trailing axes of `x` from ``first_axis`` on to `shape` (identity axes skipped)."""
    for i, m in enumerate(shape):
        axis = first_axis + i
        n = x.shape[axis]
        if n != m:
            x = _apply_axis(x, axis, axis_matrix(n, m, order, x.device, x.dtype))
    return x


def _clip_to(x, lo, hi):
    import torch

    return torch.minimum(torch.maximum(x, lo), hi)


def resample_data_torch(data, new_shape: Sequence[int], current_spacing: Sequence[float],
                        new_spacing: Sequence[float], order: int = 3, order_z: int = 0,
                        force_separate_z: bool | None = None):
    """:func:`oxunet.kernels.resample_data` for a float torch tensor ``(c, x, y, z)`` on any device;
    returns float32 ``(c, *new_shape)`` on the same device (`data` itself when nothing changes)."""
    import torch

    new_shape = [int(s) for s in new_shape]
    if list(data.shape[1:]) == new_shape:
        return data
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 products in full precision
    try:
        x = data.float()
        axis = separate_z_axis(current_spacing, new_spacing, force_separate_z)
        nsp = x.ndim - 1
        if axis is None:
            out = _resize(x, new_shape, order, 1)
            if order > 1:  # order <= 1 never leaves the input range
                lo = x.amin(dim=tuple(range(1, x.ndim)), keepdim=True)
                hi = x.amax(dim=tuple(range(1, x.ndim)), keepdim=True)
                out = _clip_to(out, lo, hi)
            return out
        # separate z: every slice orthogonal to `axis` resized in plane (clipped per slice), then `axis` alone
        plane = [m for i, m in enumerate(new_shape) if i != axis]
        sl = torch.movedim(x, axis + 1, 1)  # (c, z, *plane)
        out = _resize(sl, plane, order, 2)
        if order > 1:
            dims = tuple(range(2, sl.ndim))
            out = _clip_to(out, sl.amin(dim=dims, keepdim=True), sl.amax(dim=dims, keepdim=True))
        if out.shape[1] != new_shape[axis]:
            out = _apply_axis(out, 1, axis_matrix(out.shape[1], new_shape[axis], order_z, out.device, out.dtype))
        out = torch.movedim(out, 1, axis + 1)
        assert list(out.shape[1:]) == new_shape and out.ndim == nsp + 1
        return out.contiguous()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
