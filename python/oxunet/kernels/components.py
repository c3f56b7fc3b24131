"""Connected components: labelling and nnU-Net's postprocessing filters, implemented in Rust."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._guarded import core as _core
from . import _validate
from .cropping import _label_value, _native
from .errors import KernelTypeError, KernelValueError

__all__ = ["label_components", "remove_all_but_largest_component", "remove_small_components"]

MASK_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
_CONNECTIVITIES = {2: (4, 8), 3: (6, 18, 26)}

LabelsOrRegions = int | tuple[int, ...] | Sequence[int | tuple[int, ...]]


def check_mask(mask) -> np.ndarray:
    """A 2D/3D bool or integer array (nonzero = foreground)."""
    return _native(_validate.array("mask", mask, MASK_DTYPES, ndim=(2, 3)))


def check_connectivity(connectivity, ndim: int) -> int:
    """Neighbour count: None (full: 8 in 2D, 26 in 3D), 4/8 in 2D, 6/18/26 in 3D."""
    allowed = _CONNECTIVITIES[ndim]
    if connectivity is None:
        return allowed[-1]
    if isinstance(connectivity, (bool, np.bool_)) or not isinstance(connectivity, (int, np.integer)):
        raise KernelTypeError(f"connectivity: expected None or an integer, got {connectivity!r}")
    if int(connectivity) not in allowed:
        want = " or ".join(map(str, allowed))
        raise KernelValueError(f"connectivity: must be {want} for a {ndim}D mask, got {int(connectivity)}")
    return int(connectivity)


def check_seg(seg) -> np.ndarray:
    """A 2D/3D label map of one of the label dtypes."""
    return _native(_validate.array("seg", seg, _validate.LABEL_DTYPES, ndim=(2, 3)))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_labels(labels_or_regions, dtype) -> list[int]:
    """The label values whose union forms the mask, as nnU-Net reads `labels_or_regions`: an
    int, a tuple of ints (a region), or a list of ints and tuples. Values that do not fit
    `dtype` match nothing (like numpy's ``==``) and are dropped."""
    items = labels_or_regions if isinstance(labels_or_regions, list) else [labels_or_regions]
    values: list[int] = []
    for item in items:
        group = item if isinstance(item, tuple) else (item,)
        for v in group:
            if not _is_int(v):
                raise KernelTypeError(
                    "labels_or_regions: expected an int, a tuple of ints or a list of ints and tuples, "
                    f"got {labels_or_regions!r}"
                )
            values.append(int(v))
    info = np.iinfo(dtype)
    return sorted({v for v in values if info.min <= v <= info.max})


def check_min_size(min_size) -> int:
    if not _is_int(min_size):
        raise KernelTypeError(f"min_size: expected an integer, got {min_size!r}")
    if int(min_size) < 0:
        raise KernelValueError(f"min_size: must be >= 0, got {int(min_size)}")
    return int(min_size)


def label_components(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Labels the connected components of a 2D/3D mask.

    Parameters
    ----------
    mask : ndarray, bool or any integer dtype (nonzero = foreground), 2D or 3D
    connectivity : int, optional
        Neighbours that touch: 4 or 8 in 2D, 6, 18 or 26 in 3D; default full (8 / 26).

    Returns
    -------
    labels : ndarray of uint32, same shape
        0 for background, components numbered ``1..n`` in raster (C) order of their first
        voxel: identical to ``scipy.ndimage.label`` with the matching structure.
    n : int
        Number of components.
    """
    mask = check_mask(mask)
    connectivity = check_connectivity(connectivity, mask.ndim)
    labels, n = _core.label_components(mask, connectivity)
    return labels, int(n)


def remove_all_but_largest_component(
    seg: np.ndarray, labels_or_regions: LabelsOrRegions, background_label: int = 0
) -> np.ndarray:
    """nnU-Net's ``remove_all_but_largest_component_from_segmentation``.

    The mask is the union of all labels named in `labels_or_regions` (an int, a tuple = region,
    or a list of both). Its components (full connectivity) of maximal size are kept, every
    one of them on a tie; the voxels of the others become `background_label`.

    Parameters
    ----------
    seg : ndarray, int8/int16/int32/uint8/uint16, 2D or 3D
    labels_or_regions : int, tuple of int, or list of int / tuple of int
    background_label : int
        Must fit the seg dtype.

    Returns
    -------
    ndarray
        A new C-contiguous array of seg's dtype; `seg` is not modified.
    """
    seg = check_seg(seg)
    labels = check_labels(labels_or_regions, seg.dtype)
    background_label = _label_value("background_label", background_label, seg.dtype)
    return _core.filter_components(seg, labels, None, background_label)


def remove_small_components(
    seg: np.ndarray, labels_or_regions: LabelsOrRegions, min_size: int, replace_with: int = 0
) -> np.ndarray:
    """Sets the components (full connectivity) of the mask ``seg in labels_or_regions`` that
    have fewer than `min_size` voxels to `replace_with`.

    Parameters
    ----------
    seg : ndarray, int8/int16/int32/uint8/uint16, 2D or 3D
    labels_or_regions : int, tuple of int, or list of int / tuple of int
        Read as in :func:`remove_all_but_largest_component`.
    min_size : int >= 0
        Components with at least this many voxels are kept.
    replace_with : int
        Must fit the seg dtype.

    Returns
    -------
    ndarray
        A new C-contiguous array of seg's dtype; `seg` is not modified.
    """
    seg = check_seg(seg)
    labels = check_labels(labels_or_regions, seg.dtype)
    min_size = check_min_size(min_size)
    replace_with = _label_value("replace_with", replace_with, seg.dtype)
    return _core.filter_components(seg, labels, min_size, replace_with)
