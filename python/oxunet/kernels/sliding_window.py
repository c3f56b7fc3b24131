"""Sliding-window inference bookkeeping (nnU-Net v2 §14), implemented in Rust.

* :func:`sliding_window_starts` -- window start positions per axis, nnU-Net's rule.
* :func:`gaussian_importance_map` -- nnU-Net's Gaussian window weight.
* :class:`Aggregator` -- accumulates weighted window predictions of any model over a volume,
  then normalises (:meth:`Aggregator.finalize`) or labels (:meth:`Aggregator.argmax`) it;
  a streaming mode hands finished slabs back so memory stays bounded.

The argument checks (:mod:`oxunet.kernels._validate`) are shared with the NumPy twins in
:mod:`oxunet.kernels.reference.sliding_window`, so both reject bad input identically.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from ..constants import GAUSSIAN_SIGMA_SCALE, GAUSSIAN_VALUE_SCALING_FACTOR, SLIDING_WINDOW_STEP_SIZE
from ._guarded import core as _core
from ._validate import (
    check_aggregator_args,
    check_gaussian_args,
    check_starts_args,
    check_window,
    labels_dtype,
    prediction_array,
)

__all__ = ["Aggregator", "gaussian_importance_map", "sliding_window_starts"]

# ---------------------------------------------------------------------------------------------
# public API


def sliding_window_starts(image_size: Sequence[int], patch_size: Sequence[int], step_size: float = SLIDING_WINDOW_STEP_SIZE) -> list[list[int]]:
    """Window start positions per axis, exactly nnU-Net's
    ``compute_steps_for_sliding_window``.

    Per axis the target step is ``patch × step_size``; ``n = ceil((size − patch) / target) + 1``
    windows are spread evenly (starts rounded half-to-even) from 0 to ``size − patch``.

    Parameters
    ----------
    image_size : sequence of int
        Spatial size of the (padded) image; every axis must be at least the patch size
        (nnU-Net pads smaller images before tiling).
    patch_size : sequence of int
        Window size, one value per axis.
    step_size : float
        Fraction of the patch between window starts, in (0, 1]; default 0.5.

    Returns
    -------
    list of list of int
        The starts along every axis, e.g. size 110, patch 64 -> ``[[0, 23, 46]]``.
    """
    image_size, patch_size, step = check_starts_args(image_size, patch_size, step_size)
    return [list(s) for s in _core.sliding_window_starts(list(image_size), list(patch_size), step)]


def gaussian_importance_map(
    patch_size: Sequence[int], sigma_scale: float = GAUSSIAN_SIGMA_SCALE, value_scaling_factor: float = GAUSSIAN_VALUE_SCALING_FACTOR, dtype=np.float32
) -> np.ndarray:
    """nnU-Net's Gaussian importance map (``compute_gaussian``) of shape `patch_size`.

    A delta at ``p // 2`` blurred with σ = ``p × sigma_scale`` per axis (scipy
    ``gaussian_filter`` semantics: mode constant, truncate 4), scaled so its maximum is
    `value_scaling_factor`, cast to `dtype`, with every zero replaced by the smallest non-zero
    value. Computed separably, as the outer product of 1-D profiles.

    Parameters
    ----------
    patch_size : sequence of int
    sigma_scale : float
        σ as a fraction of the patch size (default 1/8).
    value_scaling_factor : float
        Value of the maximum (default 10, what nnU-Net's predictor uses).
    dtype : float32 or float16

    Returns
    -------
    np.ndarray of `dtype`, shape `patch_size`
    """
    patch_size, sigma_scale, vsf, dt = check_gaussian_args(patch_size, sigma_scale, value_scaling_factor, dtype)
    fn = _core.gaussian_importance_map_f32 if dt == np.float32 else _core.gaussian_importance_map_f16
    return fn(list(patch_size), sigma_scale, vsf)


class Aggregator:
    """Accumulates window predictions over a volume, nnU-Net style, for any model.

    Every window prediction is weighted (Gaussian importance map or constant 1) and summed
    into a ``(C, *shape)`` accumulator of `dtype`, the weights into a ``(*shape)`` map; the
    result is ``sums / weights``. Work is parallel over the window's first axis in Rust, with
    the GIL released.

    Parameters
    ----------
    num_channels : int
        C, the channels of every prediction (1 ... 65536).
    shape : sequence of int
        Spatial shape of the volume, 2 or 3 axes.
    patch_size : sequence of int
        Window shape (same number of axes).
    weighting : {'gaussian', 'constant'}
        'gaussian': :func:`gaussian_importance_map` (`sigma_scale`, `value_scaling_factor`);
        'constant': every voxel weighs 1.
    dtype : {'float32', 'float16'}
        Accumulator type. 'float16' halves memory and rounds every sum to float16 like
        nnU-Net's predictor; an overflow (inf) makes finalisation fail, as in nnU-Net.
    streaming : bool
        Bounded-memory mode, see below.
    output : {'logits', 'labels'}
        What streaming slabs hold: normalised float32 logits ``(C, depth, ...)`` or argmax
        labels ``(depth, ...)``.
    uncovered : {'error', 'zero'}
        Voxels no window covered: 'error' makes finalize()/argmax() (or, streaming, the call
        that finishes them) raise KernelValueError; 'zero' gives them logits 0 and label 0.
    sigma_scale, value_scaling_factor : float
        Gaussian parameters (nnU-Net: 1/8 and 10).

    Methods
    -------
    add(prediction, start)
        `prediction` ``(C, *patch_size)``: float32/float16 numpy array, or a float32/float16/
        bfloat16 torch CPU tensor (read in place, never copied). `start`: position of the
        window's first voxel; it may be negative or reach past the end (only the part inside the
        volume counts) but must overlap the volume.
    finalize() -> ndarray float32 (C, *shape)
        The normalised logits.
    argmax() -> ndarray uint8 (C <= 256) or uint16 (*shape)
        Labels straight from the sums (no normalised copy); equal to
        ``finalize().argmax(0)``, ties to the lowest channel.

    nnU-Net's 2D configuration on a 3D volume (every slice tiled separately): use the 3D
    `shape`, ``patch_size=(1, py, pz)`` and predictions ``(C, 1, py, pz)``.

    Streaming (``streaming=True``)
    ------------------------------
    Add windows in non-decreasing order of their first-axis start (``itertools.product`` of
    :func:`sliding_window_starts` does that; a decreasing start raises KernelValueError naming
    `start`). Only ``min(patch_size[0], shape[0])`` planes of the first axis are held; when a
    window with a larger first-axis start ``s`` arrives, every plane below ``s`` is final and
    becomes a slab. ``pop_ready()`` returns the queued slabs as ``[(x_start, x_stop, array)]``
    in order, `array` being float32 logits ``(C, x_stop - x_start, ...)`` or labels
    ``(x_stop - x_start, ...)`` per `output`. ``flush()`` finishes the remaining planes and
    returns every slab not yet popped; no add is accepted afterwards. finalize()/argmax() are
    not available. Peak memory: O(C × patch depth × plane) plus the slabs you have not popped.

    Threads
    -------
    ``add`` may be called from several Python threads at once. Without streaming, each plane
    of the first axis has its own lock, so concurrent adds only wait for each other on the
    planes they share (the float sums may then be added in a different order: results can differ
    from sequential adds in the last bits). Streaming calls are serialised.
    """

    def __init__(
        self,
        num_channels: int,
        shape: Sequence[int],
        patch_size: Sequence[int],
        weighting: str = "gaussian",
        dtype="float32",
        streaming: bool = False,
        output: str = "logits",
        uncovered: str = "error",
        sigma_scale: float = GAUSSIAN_SIGMA_SCALE,
        value_scaling_factor: float = GAUSSIAN_VALUE_SCALING_FACTOR,
    ) -> None:
        cfg = check_aggregator_args(
            num_channels, shape, patch_size, weighting, dtype, streaming, output, uncovered, sigma_scale,
            value_scaling_factor,
        )
        self._cfg = cfg
        self._core = _core.Aggregator(
            cfg["num_channels"], list(cfg["shape"]), list(cfg["patch_size"]), cfg["weighting"], cfg["dtype"],
            cfg["streaming"], cfg["output"], cfg["uncovered"], cfg["sigma_scale"], cfg["value_scaling_factor"],
        )
        self._lock = threading.Lock()  # serialises streaming calls

    # -- properties -------------------------------------------------------------------------
    num_channels = property(lambda self: self._cfg["num_channels"])
    shape = property(lambda self: self._cfg["shape"])
    patch_size = property(lambda self: self._cfg["patch_size"])
    weighting = property(lambda self: self._cfg["weighting"])
    dtype = property(lambda self: self._cfg["dtype"])
    streaming = property(lambda self: self._cfg["streaming"])
    output = property(lambda self: self._cfg["output"])
    uncovered = property(lambda self: self._cfg["uncovered"])

    @property
    def labels_dtype(self) -> type:
        """uint8 while num_channels - 1 <= 255, else uint16."""
        return labels_dtype(self._cfg["num_channels"])

    @property
    def importance_map(self) -> np.ndarray:
        """The float32 weight of one window, shape `patch_size` (float16 values in float16 mode)."""
        return self._core.importance_map()

    def __repr__(self) -> str:
        c = self._cfg
        return (
            f"Aggregator(num_channels={c['num_channels']}, shape={c['shape']}, patch_size={c['patch_size']}, "
            f"weighting={c['weighting']!r}, dtype={c['dtype']!r}, streaming={c['streaming']}, output={c['output']!r})"
        )

    # -- accumulation -----------------------------------------------------------------------
    def add(self, prediction, start: Sequence[int]) -> None:
        """Adds one window prediction ``(C, *patch_size)`` whose first voxel is at `start`."""
        arr, kind = prediction_array(prediction)
        c = self._cfg
        start = check_window(arr, start, c["num_channels"], c["shape"], c["patch_size"])
        fn: Callable[..., None] = getattr(self._core, f"add_{kind}")  # add_f32 / add_f16 / add_bf16
        if c["streaming"]:
            with self._lock:
                fn(arr, list(start))
        else:
            fn(arr, list(start))

    def finalize(self) -> np.ndarray:
        """Normalised float32 logits ``(C, *shape)`` (sums / weights). Not in streaming mode."""
        return self._core.finalize()

    def argmax(self) -> np.ndarray:
        """Labels ``(*shape)`` (uint8, or uint16 above 256 channels), equal to
        ``finalize().argmax(0)`` but computed from the sums without a normalised copy."""
        return self._core.argmax()

    # -- streaming --------------------------------------------------------------------------
    def pop_ready(self) -> list[tuple[int, int, np.ndarray]]:
        """Streaming: the finished slabs ``(x_start, x_stop, array)`` queued so far, in order."""
        return self._core.pop_ready()

    def flush(self) -> list[tuple[int, int, np.ndarray]]:
        """Streaming: finishes every remaining plane; returns all slabs not popped yet."""
        with self._lock:
            self._core.flush()
        return self._core.pop_ready()
