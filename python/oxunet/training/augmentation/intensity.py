"""Intensity transforms, vectorised over (sample, channel) rows with per-row random parameters.

Each follows the batchgeneratorsv2 transform nnU-Net uses (named in the class docstring); the
arithmetic is the same sequence of float32 operations, so given the same parameters results agree
to rounding (reductions such as a channel mean may sum in a different order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _rng
from ._base import Batch, Transform, channel_rows

EPS = 1e-7


def _channel_mask(gen: torch.Generator, batch: Batch, p_per_channel: float) -> torch.Tensor:
    """``(B*C,)`` bool: which sample channels the transform touches."""
    n = batch.data.shape[0] * batch.data.shape[1]
    if p_per_channel >= 1:
        return torch.ones(n, dtype=torch.bool)
    return _rng.rand(gen, n) < p_per_channel


def _rows_apply(data: torch.Tensor, mask: torch.Tensor, fn) -> None:
    """Run ``fn(rows, row_ids)`` in place on the selected ``(n, N)`` rows of ``data``."""
    rows = channel_rows(data)
    if bool(mask.all()):
        fn(rows, None)
        return
    idx = mask.nonzero()[:, 0]
    if idx.numel() == 0:
        return
    dev_idx = idx.to(data.device)
    sub = rows[dev_idx]
    fn(sub, idx)
    rows[dev_idx] = sub


def _col(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-row parameters as an ``(n, 1)`` column on the data's device and dtype."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1)


class RowTransform(Transform):
    """A transform drawn per (sample, channel) row: ``sample`` returns the row mask and per-row
    parameters (all rows, on the CPU), ``apply`` uses them; ``__call__`` does both."""

    image_only = True

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        return self.apply(batch, self.sample(gen, batch))

    def sample(self, gen: torch.Generator, batch: Batch) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, batch: Batch, params: dict) -> Batch:
        _rows_apply(batch.data, params["rows"], lambda rows, ids: self.apply_rows(rows, _pick(params, ids), batch))
        return batch

    def apply_rows(self, rows: torch.Tensor, params: dict, batch: Batch) -> None:  # pragma: no cover
        raise NotImplementedError


def _pick(params: dict, ids: torch.Tensor | None) -> dict:
    """Per-row parameters restricted to the selected rows (``ids`` None: all rows)."""
    if ids is None:
        return params
    return {k: (v[ids] if isinstance(v, torch.Tensor) and k != "rows" else v) for k, v in params.items()}


class GaussianNoise(RowTransform):
    """GaussianNoiseTransform: add N(0, σ²) noise, σ uniform in ``sigma`` (per sample if
    ``synchronize_channels``, else per channel)."""

    def __init__(self, sigma=(0.0, 0.1), p_per_channel: float = 1.0, synchronize_channels: bool = False):
        self.sigma, self.p_per_channel, self.synchronize_channels = tuple(sigma), p_per_channel, synchronize_channels

    def sample(self, gen, batch):
        b, c = batch.data.shape[:2]
        if self.synchronize_channels:
            sigma = _rng.uniform(gen, *self.sigma, b).repeat_interleave(c)
        else:
            sigma = _rng.uniform(gen, *self.sigma, b * c)
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        return {"rows": _channel_mask(gen, batch, self.p_per_channel), "sigma": sigma, "seed": seed}

    def apply_rows(self, rows, params, batch):
        noise_gen = torch.Generator(device=rows.device).manual_seed(params["seed"])
        noise = torch.randn(tuple(rows.shape), generator=noise_gen, device=rows.device, dtype=rows.dtype)
        rows.addcmul_(noise, _col(params["sigma"], rows))


def _round_to_nearest_odd(n: float) -> int:
    rounded = round(n)
    if rounded % 2 == 1:
        return rounded
    return rounded + 1 if n - rounded >= 0 else rounded - 1


def gaussian_kernel_size(sigma: float, truncate: float = 6.0) -> int:
    """batchgeneratorsv2's blur kernel length: nearest odd integer to ``sigma * truncate + 0.5``."""
    return _round_to_nearest_odd(sigma * truncate + 0.5)


def gaussian_kernels(sigmas: torch.Tensor, truncate: float = 6.0) -> torch.Tensor:
    """``(n, k_max)`` float32 normalised Gaussians, each centred and zero-padded to the longest."""
    sizes = [gaussian_kernel_size(float(s), truncate) for s in sigmas]
    k_max = max(sizes)
    out = torch.zeros((len(sizes), k_max))
    for i, (s, k) in enumerate(zip(sigmas.tolist(), sizes)):
        half = (k - 1) * 0.5
        x = torch.linspace(-half, half, steps=k)
        pdf = torch.exp(-0.5 * (x / s).pow(2))
        start = (k_max - k) // 2
        out[i, start:start + k] = pdf / pdf.sum()
    return out


def blur_axis(rows: torch.Tensor, kernels: torch.Tensor, axis: int) -> torch.Tensor:
    """Correlate each row volume ``(n, *spatial)`` along spatial ``axis`` with its own 1D kernel
    (``(n, k)``), reflect-padded. Shifted multiply-adds: far cheaper on the CPU than a depthwise conv."""
    k = kernels.shape[1]
    half = k // 2
    n, spatial = rows.shape[0], rows.shape[1:]
    dim = len(spatial)
    pad = [0, 0] * dim
    pad[2 * (dim - 1 - axis)] = pad[2 * (dim - 1 - axis) + 1] = half
    padded = F.pad(rows[:, None], pad, mode="reflect")[:, 0] if half else rows
    weights = kernels.to(device=rows.device, dtype=rows.dtype)
    wshape = (n,) + (1,) * dim
    length = spatial[axis]
    out = padded.narrow(axis + 1, 0, length) * weights[:, 0].view(wshape)
    for t in range(1, k):
        out.addcmul_(padded.narrow(axis + 1, t, length), weights[:, t].view(wshape))
    return out


class GaussianBlur(RowTransform):
    """GaussianBlurTransform: separable Gaussian (truncate 6, reflect padding) on each selected
    channel; σ uniform in ``sigma`` per channel, per axis unless ``synchronize_axes``."""

    def __init__(self, sigma=(0.5, 1.0), synchronize_axes: bool = False, p_per_channel: float = 1.0):
        self.sigma, self.synchronize_axes, self.p_per_channel = tuple(sigma), synchronize_axes, p_per_channel

    def sample(self, gen, batch):
        dim = batch.data.ndim - 2
        rows = _channel_mask(gen, batch, self.p_per_channel)
        n = rows.numel()
        if self.synchronize_axes:
            sigma = _rng.uniform(gen, *self.sigma, n, 1).expand(n, dim)
        else:
            sigma = _rng.uniform(gen, *self.sigma, n, dim)
        return {"rows": rows, "sigma": sigma}

    def apply_rows(self, rows, params, batch):
        spatial = batch.data.shape[2:]
        vol = rows.view(rows.shape[0], *spatial)
        for axis in range(len(spatial)):
            vol = blur_axis(vol, gaussian_kernels(params["sigma"][:, axis]), axis)
        rows.copy_(vol.reshape(rows.shape))


class MultiplicativeBrightness(RowTransform):
    """MultiplicativeBrightnessTransform with BGContrast sampling of ``multiplier`` per channel."""

    def __init__(self, multiplier=(0.75, 1.25), p_per_channel: float = 1.0):
        self.multiplier, self.p_per_channel = tuple(multiplier), p_per_channel

    def sample(self, gen, batch):
        rows = _channel_mask(gen, batch, self.p_per_channel)
        return {"rows": rows, "factor": _rng.bg_contrast(gen, *self.multiplier, rows.numel())}

    def apply_rows(self, rows, params, batch):
        rows.mul_(_col(params["factor"], rows))


class AdditiveBrightness(RowTransform):
    """BrightnessAdditiveTransform: add N(mu, sigma²) per channel (``synchronize_channels=False``)."""

    def __init__(self, mu: float = 0.0, sigma: float = 0.1, p_per_channel: float = 1.0):
        self.mu, self.sigma, self.p_per_channel = mu, sigma, p_per_channel

    def sample(self, gen, batch):
        rows = _channel_mask(gen, batch, self.p_per_channel)
        shift = self.mu + self.sigma * torch.randn(rows.numel(), generator=gen, dtype=torch.float64)
        return {"rows": rows, "shift": shift}

    def apply_rows(self, rows, params, batch):
        rows.add_(_col(params["shift"], rows))


class Contrast(RowTransform):
    """ContrastTransform: ``(x - mean) * f + mean`` per channel, f by BGContrast sampling of
    ``factor``; ``preserve_range`` clips to the channel's original [min, max]."""

    def __init__(self, factor=(0.75, 1.25), preserve_range: bool = True, p_per_channel: float = 1.0):
        self.factor, self.preserve_range, self.p_per_channel = tuple(factor), preserve_range, p_per_channel

    def sample(self, gen, batch):
        rows = _channel_mask(gen, batch, self.p_per_channel)
        return {"rows": rows, "factor": _rng.bg_contrast(gen, *self.factor, rows.numel())}

    def apply_rows(self, rows, params, batch):
        mean = rows.mean(dim=1, keepdim=True)
        if self.preserve_range:
            lo, hi = rows.aminmax(dim=1, keepdim=True)
        rows.sub_(mean).mul_(_col(params["factor"], rows)).add_(mean)
        if self.preserve_range:
            torch.clamp(rows, lo, hi, out=rows)


class Gamma(RowTransform):
    """GammaTransform: on min-max normalised values ``x ** gamma`` (BGContrast sampling per channel),
    optionally on the negated image (``p_invert_image``) and restoring mean/std (``p_retain_stats``)."""

    def __init__(self, gamma=(0.7, 1.5), p_invert_image: float = 0.0, p_retain_stats: float = 1.0,
                 p_per_channel: float = 1.0):
        self.gamma, self.p_invert_image, self.p_retain_stats = tuple(gamma), p_invert_image, p_retain_stats
        self.p_per_channel = p_per_channel

    def sample(self, gen, batch):
        rows = _channel_mask(gen, batch, self.p_per_channel)
        n = rows.numel()
        return {
            "rows": rows,
            "retain": _rng.rand(gen, n) < self.p_retain_stats,
            "invert": _rng.rand(gen, n) < self.p_invert_image,
            "gamma": _rng.bg_contrast(gen, *self.gamma, n),
        }

    def apply_rows(self, rows, params, batch):
        apply_gamma(rows, _col(params["gamma"], rows), params["invert"], params["retain"])


def apply_gamma(rows: torch.Tensor, gamma: torch.Tensor, invert: torch.Tensor, retain: torch.Tensor) -> None:
    """In place on ``(n, N)`` rows; ``gamma`` is an ``(n, 1)`` column, ``invert``/``retain`` ``(n,)`` bool."""
    any_invert, any_retain = bool(invert.any()), bool(retain.any())
    if any_invert:
        sign = _col(1.0 - 2.0 * invert.double(), rows)
        rows.mul_(sign)
    if any_retain:
        mean = rows.mean(dim=1, keepdim=True)
        std = rows.std(dim=1, keepdim=True)
    lo, hi = rows.aminmax(dim=1, keepdim=True)
    rng = hi - lo
    rows.sub_(lo).div_(torch.clamp(rng, min=EPS)).pow_(gamma).mul_(rng).add_(lo)
    if any_retain:
        mean_here = rows.mean(dim=1, keepdim=True)
        std_here = rows.std(dim=1, keepdim=True)
        restored = (rows - mean_here).mul_(std / torch.clamp(std_here, min=EPS)).add_(mean)
        if bool(retain.all()):
            rows.copy_(restored)
        else:
            torch.where(_col(retain.double(), rows).bool(), restored, rows, out=rows)
    if any_invert:
        rows.mul_(sign)


class SimulateLowResolution(RowTransform):
    """SimulateLowResolutionTransform: per selected channel, downsample by a zoom uniform in
    ``zoom`` (same for all axes; ``ignore_axes`` keep their size) with nearest-exact, upsample
    back (bi/tri)linearly."""

    def __init__(self, zoom=(0.5, 1.0), p_per_channel: float = 1.0, ignore_axes: tuple[int, ...] | None = None):
        self.zoom, self.p_per_channel = tuple(zoom), p_per_channel
        self.ignore_axes = tuple(ignore_axes) if ignore_axes else ()

    def sample(self, gen, batch):
        rows = _channel_mask(gen, batch, self.p_per_channel)
        # batchgeneratorsv2 keeps the zoom in float32 before multiplying the sizes
        return {"rows": rows, "zoom": _rng.uniform(gen, *self.zoom, rows.numel()).float()}

    def apply(self, batch, params):
        rows = channel_rows(batch.data)
        spatial = batch.data.shape[2:]
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
        for r in params["rows"].nonzero()[:, 0].tolist():
            z = float(params["zoom"][r])
            small = [s if a in self.ignore_axes else round(s * z) for a, s in enumerate(spatial)]
            down = F.interpolate(rows[r].view(1, 1, *spatial), small, mode="nearest-exact")
            rows[r] = F.interpolate(down, spatial, mode=mode).reshape(-1)
        return batch


__all__ = [
    "AdditiveBrightness",
    "Contrast",
    "Gamma",
    "GaussianBlur",
    "GaussianNoise",
    "MultiplicativeBrightness",
    "SimulateLowResolution",
    "apply_gamma",
    "blur_axis",
    "gaussian_kernels",
]
