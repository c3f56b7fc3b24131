"""Pure NumPy/SciPy twins of :mod:`oxunet.kernels`, same signatures and semantics.

They are the parity oracle for the Rust kernels and the baseline of ``benches/kernels.py``.
Clear over fast, but never wasteful beyond what NumPy/SciPy force.
"""

from .components import label_components, remove_all_but_largest_component, remove_small_components
from .cropping import crop_to_nonzero
from .resampling import resample_data, resample_seg
from .sampling import (
    crop_and_pad,
    foreground_flags,
    num_class_samples,
    sample_class_locations,
    sample_patch_box,
    sample_patch_boxes,
)
from .sliding_window import Aggregator, gaussian_importance_map, sliding_window_starts

__all__ = [
    "Aggregator",
    "crop_and_pad",
    "crop_to_nonzero",
    "foreground_flags",
    "gaussian_importance_map",
    "label_components",
    "num_class_samples",
    "remove_all_but_largest_component",
    "remove_small_components",
    "resample_data",
    "resample_seg",
    "sample_class_locations",
    "sample_patch_box",
    "sample_patch_boxes",
    "sliding_window_starts",
]
