"""The batch that flows through the transforms, and the per-sample random application wrappers.

Every transform takes a batch ``data (B, C, *spatial)`` / ``seg (B, Cs, *spatial)`` and a
``torch.Generator`` and returns the (possibly new) batch. Parameters are drawn per sample, so a
batch of one (a CPU loader worker) and a batch of many (on a GPU) use the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import _rng


@dataclass
class Batch:
    data: torch.Tensor
    seg: torch.Tensor | list[torch.Tensor] | None
    # dummy 2D: channel counts folded into the first spatial axis, to unfold after the spatial step
    folded: tuple[int, int] | None = None

    @property
    def size(self) -> int:
        return self.data.shape[0]

    def seg_tensor(self) -> torch.Tensor | None:
        """The seg as one tensor ``(B, Cs, *spatial)``, or None: what every transform before deep
        supervision's downsampling sees (that step turns it into a list of targets and comes last)."""
        if isinstance(self.seg, list):
            raise TypeError("the seg is already a list of deep-supervision targets: DownsampleSegForDS must come last")
        return self.seg

    def require_seg(self, transform: str) -> torch.Tensor:
        """:meth:`seg_tensor` for a transform that cannot work without a seg."""
        seg = self.seg_tensor()
        if seg is None:
            raise ValueError(f"{transform}: the batch has no seg")
        return seg


def pair(values: Sequence[float]) -> tuple[float, float]:
    """A ``(low, high)`` range as given (exactly two values)."""
    lo, hi = values
    return lo, hi


class Transform:
    """Base: ``image_only`` transforms never read or write ``seg`` (so sub-batching skips it)."""

    image_only = False

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def subset(batch: Batch, idx: torch.Tensor, with_seg: bool) -> Batch:
    return Batch(batch.data[idx], batch.require_seg("subset")[idx] if with_seg else None, batch.folded)


def write_back(batch: Batch, idx: torch.Tensor, part: Batch, with_seg: bool) -> Batch:
    batch.data[idx] = part.data
    if with_seg:
        batch.require_seg("write_back")[idx] = part.require_seg("write_back")
    return batch


def apply_to_samples(inner: Transform, batch: Batch, gen: torch.Generator, mask: torch.Tensor) -> Batch:
    """Run ``inner`` on the samples where ``mask`` holds (in place for the whole batch when all do)."""
    if not bool(mask.any()):
        return batch
    if bool(mask.all()):
        return inner(batch, gen)
    idx = mask.nonzero()[:, 0].to(batch.data.device)
    with_seg = not inner.image_only and isinstance(batch.seg, torch.Tensor)
    return write_back(batch, idx, inner(subset(batch, idx, with_seg), gen), with_seg)


class Maybe(Transform):
    """Apply ``inner`` to each sample with probability ``p``."""

    def __init__(self, inner: Transform, p: float):
        self.inner, self.p = inner, float(p)
        self.image_only = inner.image_only

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        if self.p <= 0:
            return batch
        if self.p >= 1:
            return self.inner(batch, gen)
        return apply_to_samples(self.inner, batch, gen, _rng.rand(gen, batch.size) < self.p)


class OneOf(Transform):
    """Per sample, pick one of ``choices`` uniformly and apply it."""

    def __init__(self, choices: list[Transform]):
        self.choices = list(choices)
        self.image_only = all(c.image_only for c in self.choices)

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        pick = _rng.randint(gen, 0, len(self.choices), batch.size)
        for i, choice in enumerate(self.choices):
            batch = apply_to_samples(choice, batch, gen, pick == i)
        return batch


class Compose(Transform):
    def __init__(self, transforms: list[Transform]):
        self.transforms = list(transforms)

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        for t in self.transforms:
            batch = t(batch, gen)
        return batch


def channel_rows(data: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` as ``(B*C, N)``: one row per sample channel (a view of contiguous data)."""
    return data.view(data.shape[0] * data.shape[1], -1)


def row_param_shape(n: int, ndim: int) -> tuple[int, ...]:
    return (n,) + (1,) * (ndim - 1)
