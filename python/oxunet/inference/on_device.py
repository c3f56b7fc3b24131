"""Prediction that stays on the device (CUDA): windows, Gaussian aggregation and export in torch.

The CPU path moves every window's output to the host and aggregates it in Rust; on a GPU that
costs a transfer and a synchronisation per window and leaves the resampling of many-class logits
to the CPU (nnU-Net issue #2540: 534 s of export against 16 s of network). Here the case goes to
the device once, the windows are cut there, their Gaussian-weighted outputs are summed into
device accumulators (float16 sums as nnU-Net's predictor, or float32), and export resamples the
logits a few channels at a time with :mod:`.torch_resample` and keeps a running argmax, so GPU
memory is bounded by the accumulator plus a few full-resolution channels. Only the label map
(uint8/uint16) comes back to the host, where un-cropping and writing are cheap.

Semantics are those of the CPU path (``kernels.Aggregator`` and ``export.export_logits``): the
same windows, weights and roundings, the same resampling to about 1e-6.
"""

from __future__ import annotations

import time
import numpy as np

from ..constants import SLIDING_WINDOW_STEP_SIZE
from ..kernels import gaussian_importance_map
from .export import ExportPlan, _uncrop, _uncrop_probabilities
from .runtime import StageTimes
from .sliding import window_starts
from .torch_resample import resample_data_torch

__all__ = ["DeviceLogits", "export_on_device", "sliding_window_on_device"]

EXPORT_CHUNK_BYTES = 1 << 30  # full-resolution float32 channels resampled at once


class DeviceLogits:
    """Weighted sums ``(C, *shape)`` and weights ``(*shape)`` on the device; ``logits(c0, c1)``
    normalises channels ``[c0, c1)`` to float32."""

    def __init__(self, sums, weights):
        self.sums, self.weights = sums, weights

    @property
    def num_channels(self) -> int:
        return int(self.sums.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.sums.shape[1:])

    def logits(self, c0: int = 0, c1: int | None = None):
        return self.sums[c0:c1].float() / self.weights.float()

    def nbytes(self) -> int:
        return self.sums.numel() * self.sums.element_size() + self.weights.numel() * self.weights.element_size()


def _event(enabled: bool):
    import torch

    if not enabled:
        return None
    e = torch.cuda.Event(enable_timing=True)
    e.record()
    return e


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def sliding_window_on_device(sliding, data, step_size: float = SLIDING_WINDOW_STEP_SIZE, accumulator_dtype: str = "float16",
                             times: StageTimes | None = None, on_slab=None) -> DeviceLogits | None:
    """Runs `sliding` (a :class:`~oxunet.inference.sliding.SlidingWindow`) over `data`, a
    ``(C, Z, Y, X)`` tensor (moved to the sliding window's device), aggregating on that device.

    With `on_slab`, GPU memory is bounded: the sums cover only the planes of axis 0 that windows
    still reach (twice the patch depth), and every finished slab is handed over as
    ``on_slab(x0, x1, logits (C, x1 - x0, Y, X) float32)`` as soon as the windows pass it (the
    windows come in non-decreasing order of their axis-0 start); returns None then."""
    import torch

    times = StageTimes() if times is None else times
    device = sliding.device
    t0 = time.perf_counter()
    data = torch.as_tensor(data).to(device=device, dtype=torch.float32)
    shape = tuple(int(s) for s in data.shape[1:])
    full = sliding.full_patch
    starts = list(window_starts(shape, sliding.patch_size, step_size))
    # pad once so every window is a view (nnU-Net pads the image to the patch size the same way)
    lo = [max(0, -min(s[a] for s in starts)) for a in range(3)]
    hi = [max(0, max(s[a] + full[a] for s in starts) - shape[a]) for a in range(3)]
    if any(lo) or any(hi):
        pad = [v for a in (2, 1, 0) for v in (lo[a], hi[a])]
        data = torch.nn.functional.pad(data, pad)
    acc_dtype = torch.float16 if accumulator_dtype == "float16" else torch.float32
    gauss = gaussian_importance_map(full, dtype=np.float16 if acc_dtype == torch.float16 else np.float32)
    weight = torch.from_numpy(np.asarray(gauss, dtype=np.float32)).to(device)
    depth = shape[0] if on_slab is None else min(shape[0], 2 * full[0])
    sums = torch.zeros((sliding.num_heads, depth, *shape[1:]), dtype=acc_dtype, device=device)
    weights = torch.zeros((depth, *shape[1:]), dtype=acc_dtype, device=device)
    ring = _Ring(sums, weights, shape[0], on_slab, acc_dtype) if on_slab is not None else None
    two_d = len(sliding.patch_size) == 2
    for net in sliding.networks:
        net.eval()
    cuda = device.type == "cuda"
    # on CUDA no synchronisation per window (the host keeps queueing work); events time the stages
    marks: list = []
    _sync(device)
    times.add("aggregation", time.perf_counter() - t0)
    t_loop = time.perf_counter()
    for start in starts:
        t1 = time.perf_counter()
        e0 = _event(cuda)
        box = tuple(slice(s + l_, s + l_ + p) for s, l_, p in zip(start, lo, full))
        x = data[(slice(None),) + box][None]
        if two_d:
            x = x[:, :, 0]
        if sliding.channels_last:
            x = x.contiguous(memory_format=sliding.memory_format)
        pred = sliding.predict_window(x, to_cpu=False)
        if two_d:
            pred = pred[:, None]
        e1 = _event(cuda)
        t2 = time.perf_counter()
        vol = tuple(slice(max(s, 0), min(s + p, n)) for s, p, n in zip(start, full, shape))
        win = tuple(slice(v.start - s, v.stop - s) for v, s in zip(vol, start))
        if ring is not None:  # finish the planes no later window reaches, then index the ring
            ring.advance(vol[0].start, vol[0].stop)
            vol = (slice(vol[0].start - ring.base, vol[0].stop - ring.base), *vol[1:])
        w = weight[win]
        # float32 products added into the accumulator: one rounding per add in float16 mode, as the
        # Rust aggregator's float16 sums (in-place add computes in float32, then casts)
        sums[(slice(None),) + vol].add_(pred[(slice(None),) + win].float() * w)
        weights[vol].add_(w)
        if cuda:
            marks.append((e0, e1, _event(cuda)))
        else:
            times.add("network", t2 - t1)
            times.add("aggregation", time.perf_counter() - t2)
    if cuda:
        _sync(device)
        loop = time.perf_counter() - t_loop
        net_ms = sum(a.elapsed_time(b) for a, b, _ in marks)
        agg_ms = sum(b.elapsed_time(c) for _, b, c in marks)
        gpu = (net_ms + agg_ms) / 1000
        # GPU time of each stage, scaled to the loop's wall time (host gaps shared pro rata)
        scale = loop / gpu if gpu > 0 else 0.0
        times.add("network", net_ms / 1000 * scale)
        times.add("aggregation", agg_ms / 1000 * scale)
    if ring is not None:
        ring.advance(shape[0], shape[0])
        return None
    _check_overflow(sums)
    return DeviceLogits(sums, weights)


def _check_overflow(sums) -> None:
    import torch

    if sums.dtype == torch.float16 and bool(torch.isinf(sums).any()):
        raise FloatingPointError("the float16 accumulator overflowed (inf): predict with accumulator_dtype='float32' "
                                 "(nnU-Net raises here too)")


class _Ring:
    """The planes ``[base, base + depth)`` of axis 0 in the streaming sums: planes below the next
    window's start are final; they are normalised, handed over, and their rows reused."""

    def __init__(self, sums, weights, total: int, on_slab, acc_dtype):
        self.sums, self.weights, self.total, self.on_slab = sums, weights, total, on_slab
        self.depth = int(sums.shape[1])
        self.base = 0  # global index of row 0
        self.done = 0  # planes below this were handed over

    def advance(self, start: int, stop: int) -> None:
        """A window covers planes [start, stop) next: hand over [done, start), make room up to stop."""
        if start > self.done:
            a, b = self.done - self.base, start - self.base
            _check_overflow(self.sums[:, a:b])
            self.on_slab(self.done, start, self.sums[:, a:b].float() / self.weights[a:b].float())
            self.done = start
        if stop - self.base > self.depth:  # shift the live rows [done, base + depth) to the top
            live = self.base + self.depth - self.done
            shift = self.done - self.base
            if live > 0:
                self.sums[:, :live] = self.sums[:, shift:shift + live].clone()
                self.weights[:live] = self.weights[shift:shift + live].clone()
            self.sums[:, live:].zero_()
            self.weights[live:].zero_()
            self.base = self.done
            if stop - self.base > self.depth:
                raise RuntimeError(f"streaming window of {stop - start} planes does not fit the ring of {self.depth}")


def _running_labels(ep: ExportPlan, shape, device):
    import torch

    dtype = torch.int16 if ep.has_regions or ep.num_heads > 256 else torch.uint8
    return torch.zeros(tuple(shape), dtype=dtype, device=device)


def export_on_device(ep: ExportPlan, logits: DeviceLogits, properties: dict, *, return_probabilities: bool = False,
                     probabilities_dtype=np.float32, chunk_bytes: int = EXPORT_CHUNK_BYTES):
    """:func:`oxunet.inference.export.export_logits` on the device: segmentation (input axis order)
    and, if asked, probabilities ``(C, *input order)`` as numpy arrays."""
    import torch

    target = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
    cs, ns = ep.spacings(properties)
    r = ep.resampling

    def resample(x):
        if r.fn == "no_resampling_hack" or list(x.shape[1:]) == target:
            return x
        return resample_data_torch(x, target, cs, ns, r.order, r.order_z, r.force_separate_z)

    with torch.inference_mode():
        if return_probabilities:
            res = resample(logits.logits())
            probs = torch.sigmoid(res) if ep.has_regions else torch.softmax(res, 0)
            del res
            seg = _labels_from(ep, probs)
            probs_np = probs.cpu().numpy()
            del probs
            return (_uncrop(ep, seg.cpu().numpy().astype(ep.seg_dtype, copy=False), properties),
                    _uncrop_probabilities(ep, probs_np, properties, probabilities_dtype))
        per_channel = int(np.prod(target)) * 4 + int(np.prod(logits.shape)) * 4
        if logits.sums.device.type == "cuda" and chunk_bytes == EXPORT_CHUNK_BYTES:
            free, _ = torch.cuda.mem_get_info(logits.sums.device)
            chunk_bytes = max(chunk_bytes, min(8 << 30, free // 4))  # fewer, larger chunks where memory allows
        step = max(1, chunk_bytes // max(per_channel, 1))
        seg = _running_labels(ep, target, logits.sums.device)
        best = None
        for c0 in range(0, logits.num_channels, step):
            chunk = resample(logits.logits(c0, c0 + step))
            if ep.has_regions:
                for k in range(chunk.shape[0]):
                    seg[torch.sigmoid(chunk[k]) > 0.5] = int(ep.region_order[c0 + k])
                continue
            for k in range(chunk.shape[0]):
                if best is None:
                    best = chunk[k].clone()
                    continue
                better = chunk[k] > best  # first maximum wins, as np.argmax
                seg[better] = c0 + k
                torch.maximum(best, chunk[k], out=best)
            del chunk
        return _uncrop(ep, seg.cpu().numpy().astype(ep.seg_dtype, copy=False), properties), None


def _labels_from(ep: ExportPlan, probs):
    import torch

    if ep.has_regions:
        seg = torch.zeros(probs.shape[1:], dtype=torch.int16, device=probs.device)
        for i, c in enumerate(ep.region_order):
            seg[probs[i] > 0.5] = int(c)
        return seg
    return probs.argmax(0)


def peak_gpu_memory(device) -> int | None:
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    return int(torch.cuda.max_memory_allocated(device))


def reset_peak_gpu_memory(device) -> None:
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def check_on_device_input(data, num_channels: int) -> None:
    if data.ndim != 4:
        raise ValueError(f"preprocessed data must be (C, Z, Y, X), got shape {tuple(data.shape)}")
    if data.shape[0] != num_channels:
        raise ValueError(f"preprocessed data has {data.shape[0]} channels, the network takes {num_channels}")


class DeviceStreamingExport:
    """The labels of a case from its finished slabs (``on_slab`` of :func:`sliding_window_on_device`),
    on the device: each slab's output planes are resampled a few channels at a time with a running
    argmax, exactly as :class:`oxunet.inference.export.StreamingExport` does on the CPU (so only
    where :func:`~oxunet.inference.export.streaming_exact_nearest` holds). Labels only (no probabilities)."""

    def __init__(self, ep: ExportPlan, properties: dict, net_shape, device, chunk_bytes: int = EXPORT_CHUNK_BYTES):
        from .export import _axis0_source, streaming_exact_nearest

        ok, why = streaming_exact_nearest(ep, properties, net_shape)
        if not ok:
            raise ValueError(f"streaming export is not exact for this case: {why}")
        self.ep, self.properties = ep, properties
        self.target = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
        self.cs, self.ns = ep.spacings(properties)
        net_shape = [int(s) for s in net_shape]
        same = self.target[0] == net_shape[0] or ep.resampling.fn == "no_resampling_hack"
        self.source = None if same else _axis0_source(ep, net_shape[0], self.target[0], self.cs, self.ns)
        self.seg = _running_labels(ep, self.target, device)
        self.chunk_bytes = chunk_bytes

    def _resample(self, x, shape):
        r = self.ep.resampling
        if r.fn == "no_resampling_hack" or list(x.shape[1:]) == list(shape):
            return x
        return resample_data_torch(x, shape, self.cs, self.ns, r.order, r.order_z, r.force_separate_z)

    def __call__(self, x0: int, x1: int, logits) -> None:
        import torch

        if self.source is None:
            o0, o1, planes = x0, x1, logits
        else:
            sel = np.nonzero((self.source >= x0) & (self.source < x1))[0]
            if sel.size == 0:
                return
            o0, o1 = int(sel[0]), int(sel[-1]) + 1
            pick = torch.from_numpy(self.source[o0:o1] - x0).to(logits.device)
            planes = logits.index_select(1, pick)
        shape = [o1 - o0, *self.target[1:]]
        out = self.seg[o0:o1]
        step = max(1, self.chunk_bytes // max(1, int(np.prod(shape)) * 4 + int(planes[0].numel()) * 4))
        best = None
        with torch.inference_mode():
            for c0 in range(0, planes.shape[0], step):
                chunk = self._resample(planes[c0:c0 + step], shape)
                for k in range(chunk.shape[0]):
                    if self.ep.has_regions:
                        out[torch.sigmoid(chunk[k]) > 0.5] = int(self.ep.region_order[c0 + k])
                    elif best is None:
                        best = chunk[k].clone()
                    else:
                        better = chunk[k] > best
                        out[better] = c0 + k
                        torch.maximum(best, chunk[k], out=best)

    def result(self) -> np.ndarray:
        return _uncrop(self.ep, self.seg.cpu().numpy().astype(self.ep.seg_dtype, copy=False), self.properties)
