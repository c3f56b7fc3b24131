"""oxunet's kernels: the non-network hot paths of nnU-Net, implemented in Rust.

Arrays are channel-first as in nnU-Net: data ``(c, x, y, z)`` (or ``(c, x, y)`` in 2D).
Every function here has a pure NumPy/SciPy twin of the same signature in
:mod:`oxunet.kernels.reference`, which is the parity oracle and the benchmark baseline. Both
call the argument checks of :mod:`oxunet.kernels._validate`, so they reject bad input with the
same exception and message; the twins and the checks import without the Rust extension.

This module never imports torch (the aggregator accepts torch tensors duck-typed).
"""

from ._threads import get_num_threads, set_num_threads
from .components import label_components, remove_all_but_largest_component, remove_small_components
from .cropping import crop_to_nonzero
from .errors import KernelMemoryError, KernelShapeError, KernelTypeError, KernelValueError
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
    "KernelMemoryError",
    "KernelShapeError",
    "KernelTypeError",
    "KernelValueError",
    "crop_and_pad",
    "crop_to_nonzero",
    "foreground_flags",
    "gaussian_importance_map",
    "get_num_threads",
    "label_components",
    "num_class_samples",
    "remove_all_but_largest_component",
    "remove_small_components",
    "resample_data",
    "resample_seg",
    "sample_class_locations",
    "sample_patch_box",
    "sample_patch_boxes",
    "set_num_threads",
    "sliding_window_starts",
]
