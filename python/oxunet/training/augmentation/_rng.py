"""Parameter sampling from an explicit ``torch.Generator`` (never the global RNGs).

Small parameters are drawn on the CPU in float64; bulk random fields (noise) come from a generator
on the data's device seeded from the CPU one, so a seed fixes the result on any given device.
"""

from __future__ import annotations

import torch


def rand(gen: torch.Generator, *size: int) -> torch.Tensor:
    return torch.rand(size, generator=gen, dtype=torch.float64)


def uniform(gen: torch.Generator, lo: float, hi: float, *size: int) -> torch.Tensor:
    """Uniform in [lo, hi); ``lo == hi`` gives the constant (as batchgeneratorsv2's sample_scalar)."""
    return lo + (hi - lo) * rand(gen, *size)


def bg_contrast(gen: torch.Generator, lo: float, hi: float, *size: int) -> torch.Tensor:
    """batchgeneratorsv2's BGContrast: half the time below 1 (uniform in [lo, 1)), else in [max(lo, 1), hi)."""
    below = rand(gen, *size) < 0.5
    low = uniform(gen, lo, 1.0, *size)
    high = uniform(gen, max(lo, 1.0), hi, *size)
    return torch.where(below & torch.tensor(lo < 1), low, high)


def randint(gen: torch.Generator, lo: int, hi: int, *size: int) -> torch.Tensor:
    """Integers in [lo, hi)."""
    return torch.randint(lo, hi, size, generator=gen)
