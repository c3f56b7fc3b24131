"""Connected components: labelling and nnU-Net's postprocessing filters, implemented in Rust."""

from __future__ import annotations

import numpy as np

from ._guarded import core as _core
from ._validate import LabelsOrRegions, check_connectivity, check_labels, check_mask, check_min_size, check_seg, label_value

__all__ = ["label_components", "remove_all_but_largest_component", "remove_small_components"]


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
    background_label = label_value("background_label", background_label, seg.dtype)
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
    replace_with = label_value("replace_with", replace_with, seg.dtype)
    return _core.filter_components(seg, labels, min_size, replace_with)
