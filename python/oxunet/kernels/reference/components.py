"""NumPy/SciPy twin of :mod:`oxunet.kernels.components` (same signatures, checks and results)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .._validate import LabelsOrRegions, check_connectivity, check_labels, check_mask, check_min_size, check_seg, label_value

__all__ = ["label_components", "remove_all_but_largest_component", "remove_small_components"]

_RANK = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}


def label_components(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Reference for :func:`oxunet.kernels.label_components` (``scipy.ndimage.label``)."""
    mask = check_mask(mask)
    connectivity = check_connectivity(connectivity, mask.ndim)
    structure = ndimage.generate_binary_structure(mask.ndim, _RANK[connectivity])
    labels, n = ndimage.label(mask != 0, structure=structure)
    return labels.astype(np.uint32), int(n)


def _components(seg: np.ndarray, labels: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mask ``seg in labels``, its full-connectivity labels and the size of each label."""
    mask = seg == labels[0] if len(labels) == 1 else np.isin(seg, labels)
    lab, n = ndimage.label(mask, structure=np.ones((3,) * seg.ndim, dtype=bool))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    return mask, lab, sizes


def remove_all_but_largest_component(
    seg: np.ndarray, labels_or_regions: LabelsOrRegions, background_label: int = 0
) -> np.ndarray:
    """Reference for :func:`oxunet.kernels.remove_all_but_largest_component`."""
    seg = check_seg(seg)
    labels = check_labels(labels_or_regions, seg.dtype)
    background_label = label_value("background_label", background_label, seg.dtype)
    out = np.array(seg, order="C", copy=True)
    if not labels:
        return out
    mask, lab, sizes = _components(seg, labels)
    if sizes.size > 2:  # more than one component
        keep = np.flatnonzero(sizes == sizes.max())  # every largest one (ties)
        out[mask & ~np.isin(lab, keep)] = background_label
    return out


def remove_small_components(
    seg: np.ndarray, labels_or_regions: LabelsOrRegions, min_size: int, replace_with: int = 0
) -> np.ndarray:
    """Reference for :func:`oxunet.kernels.remove_small_components`."""
    seg = check_seg(seg)
    labels = check_labels(labels_or_regions, seg.dtype)
    min_size = check_min_size(min_size)
    replace_with = label_value("replace_with", replace_with, seg.dtype)
    out = np.array(seg, order="C", copy=True)
    if not labels:
        return out
    mask, lab, sizes = _components(seg, labels)
    small = np.flatnonzero(sizes[1:] < min_size) + 1
    if small.size:
        out[np.isin(lab, small)] = replace_with
    return out
