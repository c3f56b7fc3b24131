"""NumPy/SciPy twins of :mod:`oxunet.kernels.sliding_window` (same signatures, same checks).

The importance map is built the way nnU-Net builds it (a delta blurred by
``scipy.ndimage.gaussian_filter``); the aggregator is a plain full-volume numpy accumulation,
also in streaming mode (same slabs, same order, but without the memory bound).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from ...constants import GAUSSIAN_SIGMA_SCALE, GAUSSIAN_VALUE_SCALING_FACTOR, SLIDING_WINDOW_STEP_SIZE
from .._validate import (
    check_aggregator_args,
    check_gaussian_args,
    check_starts_args,
    check_window,
    labels_dtype,
    prediction_array,
)
from ..errors import KernelValueError

__all__ = ["Aggregator", "gaussian_importance_map", "sliding_window_starts"]


def sliding_window_starts(image_size: Sequence[int], patch_size: Sequence[int], step_size: float = SLIDING_WINDOW_STEP_SIZE) -> list[list[int]]:
    """Window start positions per axis (nnU-Net's ``compute_steps_for_sliding_window``)."""
    image_size, patch_size, step = check_starts_args(image_size, patch_size, step_size)
    out = []
    for size, patch in zip(image_size, patch_size):
        target = patch * step
        n = int(np.ceil((size - patch) / target)) + 1
        actual = (size - patch) / (n - 1) if n > 1 else 0.0
        out.append([int(np.round(actual * i)) for i in range(n)])
    return out


def gaussian_importance_map(
    patch_size: Sequence[int], sigma_scale: float = GAUSSIAN_SIGMA_SCALE, value_scaling_factor: float = GAUSSIAN_VALUE_SCALING_FACTOR, dtype=np.float32
) -> np.ndarray:
    """nnU-Net's Gaussian importance map of shape `patch_size` (see the Rust-backed twin)."""
    patch_size, sigma_scale, vsf, dt = check_gaussian_args(patch_size, sigma_scale, value_scaling_factor, dtype)
    delta = np.zeros(patch_size)
    delta[tuple(p // 2 for p in patch_size)] = 1
    g = gaussian_filter(delta, [p * sigma_scale for p in patch_size], 0, mode="constant", cval=0)
    g /= np.max(g) / vsf
    # like torch's float64 -> float16 cast: through float32
    g = g.astype(np.float32).astype(dt)
    zero = g == 0
    if zero.any() and not zero.all():
        g[zero] = g[~zero].min()
    return g


def _to_float32(arr: np.ndarray, kind: str) -> np.ndarray:
    if kind == "bf16":
        return (arr.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32, copy=False)


class Aggregator:
    """Plain numpy accumulation with the API of :class:`oxunet.kernels.Aggregator`."""

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
        self._acc_dtype = np.dtype(cfg["dtype"])
        if cfg["weighting"] == "gaussian":
            g = gaussian_importance_map(cfg["patch_size"], cfg["sigma_scale"], cfg["value_scaling_factor"], self._acc_dtype)
            self._weights = g.astype(np.float32)
        else:
            self._weights = np.ones(cfg["patch_size"], np.float32)
        self._acc = np.zeros((cfg["num_channels"], *cfg["shape"]), self._acc_dtype)
        self._w = np.zeros(cfg["shape"], self._acc_dtype)
        self._lock = threading.Lock()
        self._last_start: int | None = None
        self._lo = 0
        self._flushed = False
        self._ready: list[tuple[int, int, np.ndarray]] = []

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
        return labels_dtype(self._cfg["num_channels"])

    @property
    def importance_map(self) -> np.ndarray:
        return self._weights.copy()

    def add(self, prediction, start: Sequence[int]) -> None:
        arr, kind = prediction_array(prediction)
        c = self._cfg
        start = check_window(arr, start, c["num_channels"], c["shape"], c["patch_size"])
        pred = _to_float32(arr, kind)
        vol = tuple(slice(max(s, 0), min(s + p, n)) for s, p, n in zip(start, c["patch_size"], c["shape"]))
        win = tuple(slice(v.start - s, v.stop - s) for v, s in zip(vol, start))
        with self._lock:
            if c["streaming"]:
                if self._flushed:
                    raise KernelValueError(
                        "start: flush() was already called on this streaming aggregator; no window can be added after it"
                    )
                if self._last_start is not None and start[0] < self._last_start:
                    raise KernelValueError(
                        "start: streaming windows must be added in non-decreasing order of their first-axis start: "
                        f"got {start[0]} after {self._last_start}"
                    )
                ready_to = min(max(start[0], 0), c["shape"][0])
                if ready_to > self._lo:
                    lo, self._lo = self._lo, ready_to
                    self._emit(lo, ready_to)
                self._last_start = start[0]
            w = self._weights[win]
            p = pred[(slice(None),) + win]
            sl = (slice(None),) + vol
            if self._acc_dtype == np.float32:
                self._acc[sl] += p * w if c["weighting"] == "gaussian" else p
                self._w[vol] += w
            else:
                contrib = p * w if c["weighting"] == "gaussian" else p
                with np.errstate(over="ignore"):  # an overflow to inf is reported by finalize()
                    self._acc[sl] = (self._acc[sl].astype(np.float32) + contrib).astype(np.float16)
                    self._w[vol] = (self._w[vol].astype(np.float32) + w).astype(np.float16)

    def _normalized(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(logits, uncovered mask) of planes [a, b) along the first axis, after the checks."""
        acc = self._acc[:, a:b].astype(np.float32)
        w = self._w[a:b].astype(np.float32)
        if self._acc_dtype == np.float16 and np.isinf(acc).any():
            raise KernelValueError(
                "dtype: the float16 accumulator overflowed (inf): use dtype='float32' (nnU-Net raises here too)"
            )
        uncovered = w == 0
        if uncovered.any() and self._cfg["uncovered"] == "error":
            first = np.argwhere(uncovered)[0]
            first[0] += a
            raise KernelValueError(
                f"uncovered: {int(uncovered.sum())} voxel(s) were never covered by an added window (first at "
                f"{[int(v) for v in first]}); add windows covering the whole shape {list(self._cfg['shape'])}, or pass "
                "uncovered='zero' to give them logits 0 and label 0"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(uncovered, np.float32(0), acc / w).astype(np.float32)
        return out, uncovered

    def _labels(self, a: int, b: int) -> np.ndarray:
        logits, uncovered = self._normalized(a, b)
        labels = logits.argmax(0).astype(self.labels_dtype)
        labels[uncovered] = 0
        return labels

    def _emit(self, a: int, b: int) -> None:
        data = self._normalized(a, b)[0] if self._cfg["output"] == "logits" else self._labels(a, b)
        self._ready.append((a, b, data))

    def _whole_only(self, what: str) -> None:
        if self._cfg["streaming"]:
            raise KernelValueError(
                f"streaming: {what}() needs the whole volume; a streaming aggregator hands back slabs through "
                "pop_ready()/flush()"
            )

    def finalize(self) -> np.ndarray:
        self._whole_only("finalize")
        with self._lock:
            return self._normalized(0, self._cfg["shape"][0])[0]

    def argmax(self) -> np.ndarray:
        self._whole_only("argmax")
        with self._lock:
            return self._labels(0, self._cfg["shape"][0])

    def pop_ready(self) -> list[tuple[int, int, np.ndarray]]:
        if not self._cfg["streaming"]:
            raise KernelValueError("streaming: pop_ready() is for streaming aggregators; use finalize() or argmax()")
        with self._lock:
            out, self._ready = self._ready, []
        return out

    def flush(self) -> list[tuple[int, int, np.ndarray]]:
        if not self._cfg["streaming"]:
            raise KernelValueError("streaming: flush() is for streaming aggregators; use finalize() or argmax()")
        with self._lock:
            if not self._flushed:
                lo, self._lo = self._lo, self._cfg["shape"][0]
                self._flushed = True
                self._emit(lo, self._cfg["shape"][0])
        return self.pop_ready()
