"""Label bookkeeping at the end of the pipeline: masking, -1 removal, cascade one-hot, regions,
deep-supervision targets (batchgeneratorsv2's utility transforms as nnU-Net uses them)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._base import Batch, Transform


class MaskImage(Transform):
    """MaskImageTransform: set ``channels`` to ``value`` where seg channel 0 is negative (outside the
    nonzero mask the data was normalised with)."""

    def __init__(self, channels: Sequence[int], value: float = 0.0):
        self.channels, self.value = tuple(channels), value

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        outside = batch.require_seg("MaskImage")[:, 0] < 0
        for c in self.channels:
            batch.data[:, c].masked_fill_(outside, self.value)
        return batch


class RemoveLabel(Transform):
    """RemoveLabelTransform: ``label`` → ``set_to`` in every seg channel."""

    def __init__(self, label: int = -1, set_to: int = 0):
        self.label, self.set_to = label, set_to

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        seg = batch.seg_tensor()
        if seg is not None:
            seg.masked_fill_(seg == self.label, self.set_to)
        return batch


class SegToOneHotData(Transform):
    """MoveSegAsOneHotToDataTransform: the previous stage's seg (channel ``source``) becomes one-hot
    data channels (one per label of ``labels``, in that order) and leaves the seg."""

    def __init__(self, labels: Sequence[int], source: int = 1):
        self.labels, self.source = tuple(int(v) for v in labels), source

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        seg = batch.require_seg("SegToOneHotData")
        prev = seg[:, self.source]
        onehot = torch.stack([prev == v for v in self.labels], 1).to(batch.data.dtype)
        batch.data = torch.cat([batch.data, onehot], 1)
        keep = [i for i in range(seg.shape[1]) if i != self.source]
        batch.seg = seg[:, keep]
        return batch


class SegToRegions(Transform):
    """ConvertSegmentationToRegionsTransform: one boolean channel per region (a label or a tuple of
    labels), read from seg channel ``channel``."""

    def __init__(self, regions: Sequence[int | Sequence[int]], channel: int = 0):
        self.regions = [tuple(r) if isinstance(r, Sequence) else (int(r),) for r in regions]
        self.channel = channel

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        seg = batch.require_seg("SegToRegions")[:, self.channel]
        out = torch.empty((seg.shape[0], len(self.regions), *seg.shape[1:]), dtype=torch.bool, device=seg.device)
        for i, labels in enumerate(self.regions):
            if len(labels) == 1:
                torch.eq(seg, labels[0], out=out[:, i])
            else:
                out[:, i] = torch.isin(seg, torch.tensor(labels, dtype=seg.dtype, device=seg.device))
        batch.seg = out
        return batch


def downsample_seg(seg: torch.Tensor, scales: Sequence[float | Sequence[float]]) -> list[torch.Tensor]:
    """DownsampleSegForDSTransform on ``(B, C, *spatial)``: one target per scale, ``nearest-exact``,
    shape ``round(size * scale)`` per axis; a scale of all ones returns ``seg`` itself."""
    dim = seg.ndim - 2
    results, as_float = [], None
    for scale in scales:
        s = list(scale) if isinstance(scale, Sequence) else [scale] * dim
        if len(s) != dim:
            raise ValueError(f"deep supervision scale {s} does not match a {dim}D segmentation")
        if all(i == 1 for i in s):
            results.append(seg)
            continue
        shape = [round(i * j) for i, j in zip(seg.shape[2:], s)]
        if as_float is None:
            as_float = seg.float()
        results.append(F.interpolate(as_float, shape, mode="nearest-exact").to(seg.dtype))
    return results


class DownsampleSegForDS(Transform):
    def __init__(self, scales: Sequence[float | Sequence[float]]):
        self.scales = [tuple(s) if isinstance(s, (tuple, list)) else s for s in scales]

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        seg = batch.seg_tensor()
        if seg is not None:
            batch.seg = downsample_seg(seg, self.scales)
        return batch
