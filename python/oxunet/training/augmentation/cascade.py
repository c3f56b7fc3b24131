"""Cascade-only corruption of the previous stage's one-hot input, so the full-resolution stage
learns to fix (not copy) it: random binary morphology and removal of a random connected component
(batchgeneratorsv2's ApplyRandomBinaryOperatorTransform and
RemoveRandomConnectedComponentFromOneHotEncodingTransform)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import _rng
from ._base import Batch, Transform


def ball_footprint(radius: float, ndim: int) -> np.ndarray:
    """scikit-image's ``ball(radius)`` / ``disk(radius)`` (``strict_radius``) for a possibly
    fractional radius: the grids it builds then have ``floor(2r + 1)`` stretched points (ball) or
    ``arange(-r, r + 1)`` (disk, not symmetric for fractional r)."""
    if ndim == 3:
        n = int(2 * radius + 1)
        axis = np.linspace(-radius, radius, n)
        z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
        return (x**2 + y**2 + z**2) <= radius * radius
    axis = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(axis, axis)
    return (xx**2 + yy**2) <= radius**2


def correlate_same(mask: torch.Tensor, footprint: torch.Tensor) -> torch.Tensor:
    """Count of footprint hits per voxel (zero padding, 'same' alignment: floor((k-1)/2) before),
    computed with FFTs; exact after rounding."""
    dim = mask.ndim
    k = footprint.shape
    pad = []
    for size in reversed(k):
        pad += [(size - 1) // 2, size - 1 - (size - 1) // 2]
    sig = F.pad(mask.float()[None, None], pad)[0, 0]
    shape = sig.shape
    axes = tuple(range(dim))
    spec = torch.fft.rfftn(sig, s=shape, dim=axes)
    kspec = torch.fft.rfftn(footprint.float().to(mask.device), s=shape, dim=axes)
    full = torch.fft.irfftn(spec * kspec.conj(), s=shape, dim=axes)
    crop = tuple(slice(0, n) for n in mask.shape)
    return torch.round(full[crop])


def dilate(mask: torch.Tensor, footprint: torch.Tensor) -> torch.Tensor:
    return correlate_same(mask, footprint) > 0


def erode(mask: torch.Tensor, footprint: torch.Tensor) -> torch.Tensor:
    # outside the image counts as foreground, as in batchgeneratorsv2 (dilation of the complement)
    return ~dilate(~mask, footprint)


def opening(mask, footprint):
    return dilate(erode(mask, footprint), footprint)


def closing(mask, footprint):
    return erode(dilate(mask, footprint), footprint)


BINARY_OPERATORS = (dilate, erode, closing, opening)


class RandomBinaryOperator(Transform):
    """Per label channel (random order, probability ``p_per_label``): dilate/erode/close/open with a
    ball of radius uniform in ``radius``; voxels a channel gains are removed from the others."""

    image_only = True

    def __init__(self, channels: Sequence[int], radius=(1.0, 8.0), p_per_label: float = 1.0):
        self.channels, self.radius, self.p_per_label = tuple(channels), tuple(radius), p_per_label

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        for b in range(batch.size):
            img = batch.data[b]
            order = [self.channels[i] for i in torch.randperm(len(self.channels), generator=gen)]
            chosen = [c for c, hit in zip(order, (_rng.rand(gen, len(order)) < self.p_per_label).tolist()) if hit]
            for c in chosen:
                op = BINARY_OPERATORS[int(_rng.randint(gen, 0, len(BINARY_OPERATORS), 1))]
                radius = float(_rng.uniform(gen, *self.radius, 1))
                footprint = torch.from_numpy(ball_footprint(radius, img.ndim - 1))
                before = img[c].to(torch.bool)
                after = op(before, footprint)
                gained = after & ~before
                for other in self.channels:
                    if other != c:
                        img[other][gained] = 0
                img[c] = after.to(img.dtype)
        return batch


class RemoveRandomComponent(Transform):
    """Per label channel (random order, probability ``p_per_label``): delete one connected component
    (full connectivity) chosen uniformly among those covering less than ``max_fraction`` of the patch."""

    image_only = True

    def __init__(self, channels: Sequence[int], max_fraction: float = 0.15, p_per_label: float = 1.0):
        self.channels, self.max_fraction, self.p_per_label = tuple(channels), max_fraction, p_per_label

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        from ...kernels import label_components  # Rust connected components

        for b in range(batch.size):
            img = batch.data[b]
            order = [self.channels[i] for i in torch.randperm(len(self.channels), generator=gen)]
            chosen = [c for c, hit in zip(order, (_rng.rand(gen, len(order)) < self.p_per_label).tolist()) if hit]
            for c in chosen:
                mask = img[c].to(torch.bool).cpu().numpy()
                if not mask.any():
                    continue
                labelled, n = label_components(mask)
                sizes = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
                valid = np.flatnonzero(sizes < mask.size * self.max_fraction) + 1
                if valid.size == 0:
                    continue
                pick = int(valid[int(_rng.randint(gen, 0, valid.size, 1))])
                remove = torch.from_numpy(labelled == pick).to(img.device)
                img[c][remove] = 0
        return batch
