"""NumPy/SciPy twin of :mod:`oxunet.kernels.cropping` (same signature, checks and results)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .._validate import check_crop_to_nonzero_args

__all__ = ["crop_to_nonzero"]


def _bbox(mask: np.ndarray) -> list[list[int]]:
    """Half-open bounding box of `mask`; the full extent on an empty mask (as acvl_utils)."""
    out = []
    for ax, n in enumerate(mask.shape):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        out.append([int(hits[0]), int(hits[-1]) + 1] if hits.size else [0, int(n)])
    if not mask.any():
        out = [[0, int(n)] for n in mask.shape]
    return out


def crop_to_nonzero(
    data: np.ndarray, seg: np.ndarray | None = None, nonzero_label: int = -1
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Reference for :func:`oxunet.kernels.crop_to_nonzero` (nnU-Net's algorithm, with copies)."""
    data, seg, nonzero_label = check_crop_to_nonzero_args(data, seg, nonzero_label)
    mask = data[0] != 0
    for c in range(1, data.shape[0]):
        mask |= data[c] != 0
    mask = ndimage.binary_fill_holes(mask)
    bbox = _bbox(mask)
    spatial = tuple(slice(a, b) for a, b in bbox)
    inside = mask[spatial][None]
    data_out = np.array(data[(slice(None),) + spatial], order="C", copy=True)
    if seg is not None:
        seg_out = np.array(seg[(slice(None),) + spatial], order="C", copy=True)
        seg_out[(seg_out == 0) & ~inside] = nonzero_label
    else:
        seg_out = np.where(inside, np.int8(0), np.int8(nonzero_label))
    return data_out, seg_out, bbox
