"""The extra image corruptions of nnU-Net's DA5 preset: median filter, sharpening, blank
rectangles, additive brightness gradients and local gamma (batchgeneratorsv2 transforms of the
same names)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import _rng
from ._base import Batch, Transform
from .intensity import _channel_mask

# median filter: voxels per chunk of unfolded windows (bounds the k^dim-fold temporary)
_MEDIAN_CHUNK = 1 << 22


def _symmetric_pad(x: torch.Tensor, before: int, after: int, axis: int) -> torch.Tensor:
    """scipy's 'reflect' (edge sample repeated: d c b a | a b c d | d c b a) along ``axis``."""
    n = x.shape[axis]
    idx = list(range(before - 1, -1, -1)) + list(range(n)) + list(range(n - 1, n - 1 - after, -1))
    idx = [min(max(i, 0), n - 1) if n > 0 else 0 for i in idx]
    return x.index_select(axis, torch.tensor(idx, device=x.device))


def median_filter(vol: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage.median_filter(vol, size) (mode 'reflect'): window [i - size//2, i + (size-1)//2]
    per axis; for an even window count the upper of the two middle values."""
    dim = vol.ndim
    before, after = size // 2, (size - 1) // 2
    padded = vol
    for axis in range(dim):
        padded = _symmetric_pad(padded, before, after, axis)
    k = size**dim // 2 + 1  # scipy's rank size**dim // 2, 1-based for kthvalue
    out = torch.empty_like(vol)
    # chunk along axis 0 so the unfolded windows stay bounded
    per_slice = max(1, vol[0].numel()) * size**dim
    step = max(1, _MEDIAN_CHUNK // per_slice)
    for start in range(0, vol.shape[0], step):
        stop = min(vol.shape[0], start + step)
        block = padded[start:stop + size - 1]
        windows = block
        for axis in range(dim):
            windows = windows.unfold(axis, size, 1)
        windows = windows.reshape(*windows.shape[:dim], -1)
        out[start:stop] = windows.kthvalue(k, dim=-1).values
    return out


class _PerRow(Transform):
    """Per selected (sample, channel) row: ``sample`` draws ``{"rows": [row ids], "params": [...]}``,
    ``apply`` transforms each row volume in place."""

    image_only = True
    p_per_channel: float  # set by each subclass

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        return self.apply(batch, self.sample(gen, batch))

    def sample(self, gen: torch.Generator, batch: Batch) -> dict:
        mask = _channel_mask(gen, batch, self.p_per_channel)
        spatial = tuple(batch.data.shape[2:])
        rows = mask.nonzero()[:, 0].tolist()
        return {"rows": rows, "params": [self.sample_row(gen, spatial) for _ in rows]}

    def apply(self, batch: Batch, params: dict) -> Batch:
        vols = batch.data.view(-1, *batch.data.shape[2:])
        for r, p in zip(params["rows"], params["params"]):
            vols[r] = self.apply_row(vols[r], p)
        return batch

    def sample_row(self, gen: torch.Generator, spatial: tuple[int, ...]):  # pragma: no cover - interface
        raise NotImplementedError

    def apply_row(self, vol: torch.Tensor, p) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class MedianFilter(_PerRow):
    """MedianFilterTransform: per selected channel, window size uniform in [size[0], size[1])."""

    def __init__(self, size=(2, 8), p_per_channel: float = 1.0):
        self.size, self.p_per_channel = tuple(size), p_per_channel

    def sample_row(self, gen, spatial):
        return int(_rng.randint(gen, *self.size, 1))

    def apply_row(self, vol, size):
        return median_filter(vol, size)


def laplacian_kernel(dim: int, device=None) -> torch.Tensor:
    """The 3- or 5-point-per-axis discrete Laplacian SharpeningTransform subtracts (centre 2·dim)."""
    kernel = torch.zeros((3,) * dim, device=device)
    center = (1,) * dim
    kernel[center] = 2 * dim
    for axis in range(dim):
        for off in (0, 2):
            idx = list(center)
            idx[axis] = off
            kernel[tuple(idx)] = -1
    return kernel


class Sharpen(_PerRow):
    """SharpeningTransform: ``x + strength * laplacian(x)`` (replicate padding), strength uniform per channel."""

    def __init__(self, strength=(0.1, 1.0), p_per_channel: float = 1.0):
        self.strength, self.p_per_channel = tuple(strength), p_per_channel

    def sample_row(self, gen, spatial):
        return float(_rng.uniform(gen, *self.strength, 1))

    def apply_row(self, vol, strength):
        dim = vol.ndim
        conv = F.conv3d if dim == 3 else F.conv2d
        x = vol[None, None]
        lap = conv(F.pad(x, [1, 1] * dim, mode="replicate"), laplacian_kernel(dim, vol.device)[None, None])
        return lap.mul_(strength).add_(x)[0, 0]


class BlankRectangle(_PerRow):
    """BlankRectangleTransform as DA5 configures it: per selected channel 1-4 boxes (``num_rectangles``
    upper bound exclusive), side per axis in [max(1, p // 10), p // 3) of the patch size, filled with
    the box's mean."""

    def __init__(self, patch_size: Sequence[int], num_rectangles=(1, 5), p_per_channel: float = 1.0):
        self.sizes = [(max(1, p // 10), max(max(1, p // 10) + 1, p // 3)) for p in patch_size]
        self.num_rectangles, self.p_per_channel = tuple(num_rectangles), p_per_channel

    def sample_row(self, gen, spatial):
        boxes = []
        for _ in range(int(_rng.randint(gen, *self.num_rectangles, 1))):
            size = [min(int(_rng.randint(gen, lo, hi, 1)), s) for (lo, hi), s in zip(self.sizes, spatial)]
            lb = [int(_rng.randint(gen, 0, s - z + 1, 1)) for s, z in zip(spatial, size)]
            boxes.append(tuple(slice(a, a + z) for a, z in zip(lb, size)))
        return boxes

    def apply_row(self, vol, boxes):
        for box in boxes:
            region = vol[box]
            region.fill_(float(region.mean()))
        return vol


def gaussian_bump(shape: Sequence[int], centres: Sequence[float], sigmas: Sequence[float],
                  device=None) -> torch.Tensor:
    """LocalTransform._generate_kernel: per axis a normal distribution integrated over each voxel
    (centre and sigma in voxels), outer product over axes, rescaled to [0, 1]. float32."""
    kernel: torch.Tensor | None = None
    for size, centre, sigma in zip(shape, centres, sigmas):
        edges = torch.arange(-0.5, size + 0.5, dtype=torch.float32).double()
        k = torch.diff(torch.special.ndtr((edges - centre) / sigma)).float()
        kernel = k if kernel is None else kernel[..., None] * k
    if kernel is None:
        raise ValueError("gaussian_bump: shape needs at least one axis")
    kernel = kernel - kernel.min()
    peak = kernel.max()
    if peak > 0:
        kernel = kernel / peak
    return kernel.to(device)


def sample_bump(gen: torch.Generator, shape: Sequence[int], loc) -> tuple[list[float], list[float]]:
    """DA5's draw: centre at ``loc`` (uniform) × size, sigma log-uniform in [size // 6, size] (voxels)."""
    centres, sigmas = [], []
    for size in shape:
        centres.append(float(_rng.uniform(gen, *loc, 1)) * size)
        lo = math.log(max(size // 6, 1e-6))
        sigmas.append(math.exp(float(_rng.uniform(gen, lo, math.log(size), 1))))
    return centres, sigmas


class BrightnessGradient(_PerRow):
    """BrightnessGradientAdditiveTransform (DA5): add a smooth bump scaled to a peak of ±``strength``
    (sign 50/50, magnitude uniform) to each selected channel."""

    def __init__(self, loc=(-0.5, 1.5), strength=(1.0, 5.0), p_per_channel: float = 1.0):
        self.loc, self.strength, self.p_per_channel = tuple(loc), tuple(strength), p_per_channel

    def sample_row(self, gen, spatial):
        centres, sigmas = sample_bump(gen, spatial, self.loc)
        sign = -1.0 if float(_rng.rand(gen, 1)) < 0.5 else 1.0
        return centres, sigmas, sign * float(_rng.uniform(gen, *self.strength, 1))

    def apply_row(self, vol, p):
        centres, sigmas, strength = p
        bump = gaussian_bump(vol.shape, centres, sigmas, vol.device)
        peak = bump.abs().max()
        if peak < 1e-8:
            return vol
        return vol.add_((bump / peak * strength).to(vol.dtype))


class LocalGamma(_PerRow):
    """LocalGammaTransform (DA5): blend each selected channel with its gamma-corrected self through
    a smooth bump; gamma uniform in ``gamma_low`` or ``gamma_high`` (50/50)."""

    def __init__(self, loc=(-0.5, 1.5), gamma_low=(0.01, 0.8), gamma_high=(1.5, 4.0), p_per_channel: float = 1.0):
        self.loc, self.gamma_low, self.gamma_high = tuple(loc), tuple(gamma_low), tuple(gamma_high)
        self.p_per_channel = p_per_channel

    def sample_row(self, gen, spatial):
        centres, sigmas = sample_bump(gen, spatial, self.loc)
        rng = self.gamma_low if float(_rng.rand(gen, 1)) < 0.5 else self.gamma_high
        return centres, sigmas, float(_rng.uniform(gen, *rng, 1))

    def apply_row(self, vol, p):
        centres, sigmas, gamma = p
        bump = gaussian_bump(vol.shape, centres, sigmas, vol.device)
        return local_gamma(vol, bump, gamma)


def local_gamma(vol: torch.Tensor, bump: torch.Tensor, gamma: float) -> torch.Tensor:
    """``norm * (1 - bump) + norm ** gamma * bump`` on min-max normalised values, rescaled back."""
    lo, hi = torch.aminmax(vol)
    denom = torch.clamp(hi - lo, min=1e-8)
    norm = (vol - lo) / denom
    blended = (1.0 - bump) * norm + norm.pow(gamma) * bump
    return blended * denom + lo
