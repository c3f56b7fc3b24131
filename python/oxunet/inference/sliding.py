"""Sliding-window prediction as nnU-Net's ``predict_sliding_window_return_logits`` (spec §14).

Windows follow nnU-Net's step rule on the image padded (centred, zeros) to at least the patch
size; instead of padding the whole image, each window is cut with ``kernels.crop_and_pad`` and
the Rust :class:`~oxunet.kernels.Aggregator` accumulates over the unpadded volume (window parts
in the padding are dropped, which is what nnU-Net's final un-padding does). Mirroring TTA sums
the network outputs of all non-empty subsets of the mirror axes with the plain one and divides by
their number; several folds are averaged window by window (equal to averaging their logits), so
one accumulator serves any number of folds and the streaming mode stays available.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..constants import SLIDING_WINDOW_STEP_SIZE
from ..kernels import Aggregator, crop_and_pad, sliding_window_starts
from .runtime import StageTimes, autocast

__all__ = ["SlidingWindow", "mirror_combinations", "window_starts"]


def mirror_combinations(axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """All non-empty subsets of the spatial mirror axes, in nnU-Net's order (by size, then lexicographic)."""
    if not axes:
        return []
    axes = list(axes)
    return [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]


def window_starts(shape: Sequence[int], patch_size: Sequence[int], step_size: float) -> Iterator[tuple[int, ...]]:
    """Window starts (3 values) over a 3D volume, in nnU-Net's order, relative to the unpadded
    volume (negative where the image is smaller than the patch and nnU-Net pads it).

    A 2D patch on a 3D volume tiles every slice of axis 0 separately (patch ``(1, *patch)``)."""
    shape = tuple(int(s) for s in shape)
    trailing = shape[len(shape) - len(patch_size):]
    padded = [max(s, p) for s, p in zip(trailing, patch_size)]
    lo = [(ps - s) // 2 for ps, s in zip(padded, trailing)]  # nnU-Net's pad_nd_image: extra voxel at the end
    starts = [[st - l_ for st in axis] for axis, l_ in zip(sliding_window_starts(padded, patch_size, step_size), lo)]
    if len(patch_size) == len(shape):
        yield from itertools.product(*starts)
    else:
        for z in range(shape[0]):
            for rest in itertools.product(*starts):
                yield (z, *rest)


class SlidingWindow:
    """Runs networks (one per fold) over windows of a preprocessed volume and aggregates.

    Parameters
    ----------
    networks : torch modules already on `device`, in eval mode, deep supervision off.
    patch_size : the configuration's patch (2 or 3 values).
    num_heads : output channels of the networks.
    mirror_axes : spatial axes to mirror for TTA (() or None: no TTA).
    device, precision : where the networks run and the autocast mode ('fp32', 'bf16', 'fp16').
    channels_last : run the networks on channels-last tensors (faster bf16 convolutions on CPU).
    tta_batch : how many of a window's mirrored copies go through the network in one call. 1 is
        nnU-Net's one flip at a time; more gives the same members (each copy is its own sample:
        instance norm, no batch statistics) from fewer, larger calls, which CPU convolutions run
        much faster for small patches. None: every copy at once.
    """

    def __init__(self, networks, patch_size: Sequence[int], num_heads: int, mirror_axes, device, precision: str,
                 channels_last: bool = False, tta_batch: int | None = 1):
        if tta_batch is not None and int(tta_batch) < 1:
            raise ValueError(f"tta_batch must be at least 1, got {tta_batch}")
        self.tta_batch = None if tta_batch is None else int(tta_batch)
        self.networks = list(networks)
        self.channels_last = bool(channels_last)
        if self.channels_last:  # oneDNN's bf16 convolutions run ~2x faster on channels-last tensors
            import torch

            fmt = torch.channels_last_3d if len(patch_size) == 3 else torch.channels_last
            self.memory_format = fmt
            self.networks = [n.to(memory_format=fmt) for n in self.networks]
        self.patch_size = tuple(int(p) for p in patch_size)
        self.num_heads = int(num_heads)
        self.combos = mirror_combinations(mirror_axes)
        self.device = device
        self.precision = precision
        self.has_regions = False
        self.disagreement = False  # also aggregate the members' disagreement (--save-uncertainty)
        # ONNX runtimes (backends.RuntimeNetwork) take numpy arrays: their windows never touch torch
        self.numpy_networks = bool(self.networks) and all(hasattr(n, "run_numpy") for n in self.networks)

    @property
    def full_patch(self) -> tuple[int, ...]:
        return self.patch_size if len(self.patch_size) == 3 else (1, *self.patch_size)

    def predict_window(self, x, to_cpu: bool = True):
        """Network output for one input window ``(1, C, *patch)`` on the device: the mean over
        folds of the mirrored-TTA mean, as a tensor ``(heads, *patch)`` (float32, or the
        autocast dtype when there is a single fold and no TTA), on the CPU unless ``to_cpu=False``."""
        import torch

        total = None
        with torch.inference_mode(), autocast(self.precision, self.device):
            for net in self.networks:
                members = self._members(net, x)
                pred = next(members)
                if self.combos:
                    pred = pred.float()
                    for member in members:  # in nnU-Net's order, so the float sums are its sums
                        pred += member
                    pred /= len(self.combos) + 1
                if len(self.networks) == 1:
                    total = pred
                elif total is None:
                    total = pred.float()
                else:
                    total += pred
            assert total is not None, "SlidingWindow has no networks"
            if len(self.networks) > 1:
                total /= len(self.networks)
        out = total[0]
        return out.cpu() if to_cpu and out.device.type != "cpu" else out

    def predict_window_numpy(self, x: np.ndarray) -> np.ndarray:
        """:meth:`predict_window` for runtime networks on a float32 window ``(1, C, *patch)``:
        the same members, sums and divisions in the same order and precision (float32), in numpy."""
        flips = [None] + [tuple(a + 2 for a in axes) for axes in self.combos]
        size = len(flips) if self.tta_batch is None else self.tta_batch
        total = None
        for net in self.networks:
            pred = None
            for i in range(0, len(flips), size):
                chunk = flips[i:i + size]
                inputs = [x if dims is None else np.flip(x, dims) for dims in chunk]
                batch = np.ascontiguousarray(inputs[0] if len(inputs) == 1 else np.concatenate(inputs))
                out = np.asarray(net.run_numpy(batch), dtype=np.float32)
                for j, dims in enumerate(chunk):
                    member = out[j:j + 1] if dims is None else np.flip(out[j:j + 1], dims)
                    if pred is None:
                        pred = np.array(member, dtype=np.float32, copy=True)
                    else:
                        pred += member
            assert pred is not None
            if self.combos:
                pred /= np.float32(len(self.combos) + 1)
            if total is None:
                total = pred
            else:
                total += pred
        assert total is not None, "SlidingWindow has no networks"
        if len(self.networks) > 1:
            total /= np.float32(len(self.networks))
        return total[0]

    def _members(self, net, x):
        """The network's outputs ``(1, heads, *patch)`` on `x` and on each mirrored copy (flipped
        back), in nnU-Net's order, computed `tta_batch` copies per call."""
        import torch

        flips = [None] + [[a + 2 for a in axes] for axes in self.combos]
        size = len(flips) if self.tta_batch is None else self.tta_batch
        for i in range(0, len(flips), size):
            chunk = flips[i:i + size]
            inputs = [x if dims is None else torch.flip(x, dims) for dims in chunk]
            batch = inputs[0] if len(inputs) == 1 else torch.cat(inputs)
            if self.channels_last and len(inputs) > 1:
                batch = batch.contiguous(memory_format=self.memory_format)
            out = net(batch)
            for j, dims in enumerate(chunk):
                member = out[j:j + 1]
                yield member if dims is None else torch.flip(member, dims)

    @property
    def num_members(self) -> int:
        return len(self.networks) * (len(self.combos) + 1)

    def predict_window_members(self, x):
        """As :meth:`predict_window` (fp32 mean, on the CPU), plus the members' disagreement
        ``(1, *patch)`` (:func:`~oxunet.inference.uncertainty.member_disagreement`) as a last channel."""
        import torch

        from .uncertainty import member_disagreement

        members = []
        with torch.inference_mode(), autocast(self.precision, self.device):
            for net in self.networks:
                members.extend(m[0].float() for m in self._members(net, x))
            stacked = torch.stack(members)
            out = torch.cat([stacked.mean(0), member_disagreement(stacked, self.has_regions)[None]])
        return out.cpu()

    def run(self, data: np.ndarray, step_size: float = SLIDING_WINDOW_STEP_SIZE, *, accumulator_dtype: str = "float16",
            streaming: bool = False, on_slabs: Callable[[list], None] | None = None,
            times: StageTimes | None = None, extras: dict | None = None) -> Aggregator:
        """Predicts every window of `data` ``(C, Z, Y, X)`` float32 and returns the aggregator
        (call ``finalize()``/``argmax()``). With `streaming`, finished slabs of normalised
        float32 logits are handed to `on_slabs` as they complete (the last ones after ``flush``).
        With ``self.disagreement`` (and several members), ``extras["disagreement"]`` receives the
        Gaussian-averaged member disagreement ``(Z, Y, X)`` float32 (one channel, aggregated aside)."""
        times = StageTimes() if times is None else times
        if data.ndim != 4:
            raise ValueError(f"data: expected (C, Z, Y, X), got shape {data.shape}")
        shape = tuple(int(s) for s in data.shape[1:])
        full = self.full_patch
        agg = Aggregator(self.num_heads, shape, full, "gaussian", dtype=accumulator_dtype, streaming=streaming,
                         output="logits")
        two_d = len(self.patch_size) == 2
        spread = None
        if self.disagreement and self.num_members > 1:
            spread = Aggregator(1, shape, full, "gaussian", dtype="float32", output="logits")
        for net in self.networks:
            net.eval()
        numpy_path = self.numpy_networks and spread is None
        if not numpy_path:
            import torch
        for start in window_starts(shape, self.patch_size, step_size):
            t0 = time.perf_counter()
            box = [[s, s + p] for s, p in zip(start, full)]
            window = crop_and_pad(data, box, 0.0)
            if numpy_path:
                x_np = window[None, :, 0] if two_d else window[None]
                t1 = time.perf_counter()
                pred = self.predict_window_numpy(x_np)
            else:
                x = torch.from_numpy(window)[None]
                if two_d:
                    x = x[:, :, 0]
                x = x.to(self.device, non_blocking=True)
                if self.channels_last:
                    x = x.contiguous(memory_format=self.memory_format)
                t1 = time.perf_counter()
                pred = self.predict_window(x) if spread is None else self.predict_window_members(x)
            t2 = time.perf_counter()
            if two_d:
                pred = pred[:, None]
            if spread is not None:
                spread.add(pred[-1:], list(start))
                pred = pred[:-1]
            agg.add(pred, list(start))
            ready = agg.pop_ready() if streaming else None
            t3 = time.perf_counter()
            times.add("aggregation", (t1 - t0) + (t3 - t2))
            times.add("network", t2 - t1)
            if ready and on_slabs is not None:
                on_slabs(ready)  # times itself (export)
        if streaming:
            with times.stage("aggregation"):
                rest = agg.flush()
            if on_slabs is not None and rest:
                on_slabs(rest)
        if spread is not None and extras is not None:
            with times.stage("aggregation"):
                extras["disagreement"] = np.asarray(spread.finalize(), np.float32)[0]
        return agg
