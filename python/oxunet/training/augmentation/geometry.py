"""Axis-aligned geometry: mirroring, 90° rotations, axis transposition and the dummy-2D fold."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _rng
from ._base import Batch, Transform


def _per_sample(batch: Batch, ops: list, fn) -> Batch:
    """Apply ``fn(tensor, op)`` to data and seg of each sample whose ``op`` is not None."""
    single = batch.size == 1
    for b, op in enumerate(ops):
        if op is None:
            continue
        if single:
            batch.data = fn(batch.data[0], op)[None]
            if isinstance(batch.seg, torch.Tensor):
                batch.seg = fn(batch.seg[0], op)[None]
        else:
            batch.data[b] = fn(batch.data[b], op)
            if isinstance(batch.seg, torch.Tensor):
                batch.seg[b] = fn(batch.seg[b], op)
    return batch


class Mirror(Transform):
    """MirrorTransform: flip each allowed spatial axis with probability 0.5, independently."""

    def __init__(self, axes: Sequence[int]):
        self.axes = tuple(int(a) for a in axes)

    def sample(self, gen: torch.Generator, n: int) -> list[tuple[int, ...] | None]:
        flips = (_rng.rand(gen, n, len(self.axes)) < 0.5).tolist()
        out = []
        for row in flips:
            axes = tuple(a + 1 for a, f in zip(self.axes, row) if f)
            out.append(axes or None)
        return out

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        if not self.axes:
            return batch
        return self.apply(batch, self.sample(gen, batch.size))

    def apply(self, batch: Batch, flips: list[tuple[int, ...] | None]) -> Batch:
        """Flip sample ``b`` over tensor dims ``flips[b]`` (spatial axis + 1), or not at all (None)."""
        return _per_sample(batch, flips, lambda t, axes: torch.flip(t, axes))


class Rot90(Transform):
    """Rot90Transform (one axis pair): rotate by k × 90° in a plane of two axes drawn from ``allowed_axes``."""

    def __init__(self, allowed_axes: Sequence[int], num_rotations: Sequence[int] = (1, 2, 3)):
        self.allowed_axes = tuple(sorted(int(a) for a in allowed_axes))
        self.num_rotations = tuple(int(k) for k in num_rotations)

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        ops = []
        for _ in range(batch.size):
            k = self.num_rotations[int(_rng.randint(gen, 0, len(self.num_rotations), 1))]
            pair = torch.randperm(len(self.allowed_axes), generator=gen)[:2].tolist()
            dims = tuple(sorted(self.allowed_axes[i] + 1 for i in pair))
            ops.append((k, dims) if k % 4 else None)
        return _per_sample(batch, ops, lambda t, op: torch.rot90(t, op[0], op[1]).contiguous())


class Transpose(Transform):
    """TransposeAxesTransform: randomly permute the (equal-sized) ``allowed_axes``."""

    def __init__(self, allowed_axes: Sequence[int]):
        self.allowed_axes = tuple(sorted(int(a) for a in allowed_axes))

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        ndim = batch.data.ndim - 1
        ops = []
        for _ in range(batch.size):
            shuffled = [self.allowed_axes[i] for i in torch.randperm(len(self.allowed_axes), generator=gen)]
            order = list(range(ndim))
            for src, dst in zip(self.allowed_axes, shuffled):
                order[src + 1] = dst + 1
            ops.append(tuple(order) if order != list(range(ndim)) else None)
        return _per_sample(batch, ops, lambda t, order: t.permute(order).contiguous())


def equal_size_axes(patch_size: Sequence[int]) -> tuple[int, ...]:
    """DA5's axes for rot90/transpose: those whose size is shared by the most axes; () if all differ."""
    matching = [sum(i == j for j in patch_size) for i in patch_size]
    if max(matching) <= 1:
        return ()
    return tuple(a for a, m in enumerate(matching) if m == max(matching))


class FoldToSlices(Transform):
    """Dummy 2D: ``(B, C, X, Y, Z)`` → ``(B, C·X, Y, Z)`` so the spatial step works slice-wise."""

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        b, c = batch.data.shape[:2]
        seg = batch.seg_tensor()
        cs = seg.shape[1] if seg is not None else 0
        batch.folded = (c, cs)
        batch.data = batch.data.reshape(b, c * batch.data.shape[2], *batch.data.shape[3:])
        if seg is not None:
            batch.seg = seg.reshape(b, cs * seg.shape[2], *seg.shape[3:])
        return batch


class UnfoldSlices(Transform):
    """Undo :class:`FoldToSlices`."""

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        if batch.folded is None:
            raise ValueError("UnfoldSlices: the batch was not folded (FoldToSlices must come first)")
        c, cs = batch.folded
        b = batch.data.shape[0]
        batch.data = batch.data.reshape(b, c, batch.data.shape[1] // c, *batch.data.shape[2:])
        seg = batch.seg_tensor()
        if seg is not None:
            batch.seg = seg.reshape(b, cs, seg.shape[1] // cs, *seg.shape[2:])
        batch.folded = None
        return batch
