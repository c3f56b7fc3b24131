"""Spatial transform: rotation, scaling and elastic deformation around the centre of the enlarged
crop, cutting the final patch — batchgeneratorsv2's ``SpatialTransform`` as nnU-Net configures it
(``patch_center_dist_from_border=0``, ``random_crop=False``).

Images are resampled with (bi/tri)linear ``grid_sample`` and zero padding; segmentations per label
(:mod:`.seg_resample`), out-of-image counting as the padding label -1. The grid is computed with
the same operations as batchgeneratorsv2's, so given the same parameters the result is identical.

Without rotation, scaling or deformation a sample is a plain centre crop (no interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import _rng
from ._base import Batch, Transform, pair
from .seg_resample import resample_seg


# ---------------------------------------------------------------------------------------------
# parameters


def affine_matrix(angles: Sequence[float], scales: Sequence[float]) -> np.ndarray:
    """Rz @ Ry @ Rx @ S in 3D, R @ S in 2D (``angles`` then holds the single in-plane angle)."""
    if len(scales) == 2:
        a = angles[-1]
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return rot @ np.diag(scales)
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx @ np.diag(scales)


def centered_identity_grid(patch_size: Sequence[int]) -> torch.Tensor:
    """Pixel offsets from the patch centre, ``(*patch, dim)`` float32."""
    space = [torch.linspace((1 - s) / 2, (s - 1) / 2, s) for s in patch_size]
    return torch.stack(torch.meshgrid(space, indexing="ij"), -1)


def smooth_offsets(noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing in the Fourier domain (scipy.ndimage.fourier_gaussian on the full FFT)."""
    spectrum = torch.fft.fftn(noise.double())
    for axis, n in enumerate(noise.shape):
        freq = torch.fft.fftfreq(n, dtype=torch.float64, device=noise.device)
        shape = [1] * noise.ndim
        shape[axis] = n
        spectrum = spectrum * torch.exp(-2 * math.pi**2 * sigma**2 * freq**2).view(shape)
    return torch.fft.ifftn(spectrum).real.to(noise.dtype)


class SpatialParams:
    """One sample's draw: affine (numpy float64, or None) and elastic offsets (``(*patch, dim)`` or None)."""

    __slots__ = ("affine", "offsets")

    def __init__(self, affine: np.ndarray | None = None, offsets: torch.Tensor | None = None):
        self.affine, self.offsets = affine, offsets

    @property
    def identity(self) -> bool:
        return self.affine is None and self.offsets is None


class SpatialTransform(Transform):
    """Cut ``patch_size`` from the centre of the input, rotated/scaled/deformed at random.

    ``rotation``: angle range in radians (each axis drawn independently in 3D, with probability
    ``p_rotation_per_axis``); ``scaling``: factor range (> 1 shows a larger field of view); with
    probability ``p_synchronize_scaling`` one factor for all axes. ``elastic_magnitude`` is a range
    in pixels, or ``"relative"``: uniform in [1/8, 1/2] of the deformation's sigma per axis (nnU-Net
    v1's ``augment_spatial_2``).
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        rotation: tuple[float, float] = (0.0, 0.0),
        *,
        p_rotation: float = 0.0,
        p_rotation_per_axis: float = 1.0,
        p_scaling: float = 0.0,
        scaling: tuple[float, float] = (0.7, 1.3),
        p_synchronize_scaling: float = 0.0,
        p_elastic: float = 0.0,
        elastic_scale: tuple[float, float] = (0.0, 0.2),
        elastic_magnitude: tuple[float, float] | str = (0.0, 0.2),
        p_synchronize_elastic_scale: float = 0.0,
        image_mode: str = "bilinear",
        seg_mode: str = "bilinear",
        pad_label: int = -1,
    ):
        if seg_mode not in ("bilinear", "nearest"):
            raise ValueError(f"seg_mode: expected 'bilinear' (per-label) or 'nearest', got {seg_mode!r}")
        if image_mode not in ("bilinear", "nearest"):
            raise ValueError(f"image_mode: expected 'bilinear' or 'nearest', got {image_mode!r}")
        self.patch_size = tuple(int(p) for p in patch_size)
        if isinstance(elastic_magnitude, str) and elastic_magnitude != "relative":
            raise ValueError(f"elastic_magnitude: expected a (low, high) range or 'relative', got {elastic_magnitude!r}")
        lo, hi = rotation
        self.rotation = (float(lo), float(hi))
        self.p_rotation, self.p_rotation_per_axis = p_rotation, p_rotation_per_axis
        self.p_scaling, self.scaling, self.p_synchronize_scaling = p_scaling, pair(scaling), p_synchronize_scaling
        self.p_elastic, self.elastic_scale = p_elastic, pair(elastic_scale)
        self.elastic_magnitude = elastic_magnitude if isinstance(elastic_magnitude, str) else pair(elastic_magnitude)
        self.p_synchronize_elastic_scale = p_synchronize_elastic_scale
        self.image_mode, self.seg_mode, self.pad_label = image_mode, seg_mode, pad_label
        self._base_grids: dict = {}

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, gen: torch.Generator) -> SpatialParams:
        dim = len(self.patch_size)
        do_rot, do_scale, do_deform = (_rng.rand(gen, 3) < torch.tensor(
            [self.p_rotation, self.p_scaling, self.p_elastic], dtype=torch.float64)).tolist()
        n_angles = 3 if dim == 3 else 1
        angles = [0.0] * n_angles
        if do_rot:
            angles = _rng.uniform(gen, *self.rotation, n_angles).tolist()
            if self.p_rotation_per_axis < 1:
                keep = (_rng.rand(gen, n_angles) <= self.p_rotation_per_axis).tolist()
                angles = [a if k else 0.0 for a, k in zip(angles, keep)]
        scales = [1.0] * dim
        if do_scale:
            if float(_rng.rand(gen, 1)) <= self.p_synchronize_scaling:
                scales = [float(_rng.uniform(gen, *self.scaling, 1))] * dim
            else:
                scales = _rng.uniform(gen, *self.scaling, dim).tolist()
        affine = affine_matrix(angles, scales) if (do_rot or do_scale) else None
        offsets = self._sample_offsets(gen) if do_deform else None
        return SpatialParams(affine, offsets)

    def _sample_offsets(self, gen: torch.Generator) -> torch.Tensor:
        dim = len(self.patch_size)
        if float(_rng.rand(gen, 1)) <= self.p_synchronize_elastic_scale:
            def_scales = [float(_rng.uniform(gen, *self.elastic_scale, 1))] * dim
        else:
            def_scales = _rng.uniform(gen, *self.elastic_scale, dim).tolist()
        sigmas = [s * p for s, p in zip(def_scales, self.patch_size)]
        if isinstance(self.elastic_magnitude, str):  # "relative"
            magnitudes = [float(_rng.uniform(gen, s / 8, s / 2, 1)) for s in sigmas]
        else:
            magnitudes = _rng.uniform(gen, *self.elastic_magnitude, dim).tolist()
        offsets = torch.randn((dim, *self.patch_size), generator=gen)
        for d in range(dim):
            offsets[d] = smooth_offsets(offsets[d], sigmas[d])
            peak = torch.max(torch.abs(offsets[d]))
            offsets[d] /= peak / max(magnitudes[d], 1e-8)
        return offsets.permute(*range(1, dim + 1), 0)

    # -- grid ---------------------------------------------------------------------------------

    def grid(self, params: SpatialParams, in_shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """grid_sample grid ``(*patch, dim)`` for one sample (last axis in x-first, i.e. reversed, order).

        Pixel offsets from the patch centre, mapped by the affine, normalised by half the input
        size: batchgeneratorsv2's grid. Without deformation the affine part is summed per axis
        from broadcast 1D terms (the order a (N, 3) x (3, 3) product adds them) instead of a
        matrix product over every voxel.
        """
        dim = len(self.patch_size)
        if params.offsets is not None:
            key = (self.patch_size, str(device))
            base = self._base_grids.get(key)
            if base is None:
                base = self._base_grids[key] = centered_identity_grid(self.patch_size).to(device)
            grid = base + params.offsets.to(device)
            if params.affine is not None:
                grid = torch.matmul(grid, torch.from_numpy(params.affine.T).float().to(device))
            grid -= grid.mean(dim=tuple(range(dim)))
            grid /= torch.tensor([s / 2 for s in in_shape], dtype=torch.float32, device=device)
            return grid.flip(-1)
        assert params.affine is not None  # identity samples are cropped, never gridded
        axes = [torch.linspace((1 - s) / 2, (s - 1) / 2, s).to(device) for s in self.patch_size]
        weights = torch.from_numpy(params.affine.T).float().to(device)
        grid = torch.empty((*self.patch_size, dim), dtype=torch.float32, device=device)

        def term(e: int, d: int) -> torch.Tensor:
            shape = [1] * dim
            shape[e] = self.patch_size[e]
            return (axes[e] * weights[e, d]).view(shape)

        for d in range(dim):
            acc = term(0, d)
            for e in range(1, dim):
                acc = acc + term(e, d)
            grid[..., dim - 1 - d] = acc / (in_shape[d] / 2)
        return grid

    # -- application -------------------------------------------------------------------------

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        params = [self.sample(gen) for _ in range(batch.size)]
        return self.apply(batch, params)

    def apply(self, batch: Batch, params: list[SpatialParams]) -> Batch:
        data, seg = batch.data, batch.seg_tensor()
        in_shape = tuple(data.shape[2:])
        if len(in_shape) != len(self.patch_size):
            raise ValueError(f"spatial transform: patch {self.patch_size} but data has spatial shape {in_shape}")
        device = data.device
        out = torch.empty((data.shape[0], data.shape[1], *self.patch_size), dtype=data.dtype, device=device)
        seg_out = None
        if seg is not None:
            seg_out = torch.empty((seg.shape[0], seg.shape[1], *self.patch_size), dtype=seg.dtype, device=device)
        warped = [i for i, p in enumerate(params) if not p.identity]
        for i, p in enumerate(params):
            if p.identity:
                out[i] = center_crop(data[i], self.patch_size, 0)
                if seg is not None and seg_out is not None:
                    seg_out[i] = center_crop(seg[i], self.patch_size, self.pad_label)
        if warped:
            grid_list = [self.grid(params[i], in_shape, device) for i in warped]
            grids = grid_list[0][None] if len(grid_list) == 1 else torch.stack(grid_list)
            if len(warped) == len(params):
                out = F.grid_sample(data, grids, mode=self.image_mode, padding_mode="zeros", align_corners=False)
            else:
                idx = torch.tensor(warped, device=device)
                out[idx] = F.grid_sample(
                    data[idx], grids, mode=self.image_mode, padding_mode="zeros", align_corners=False
                )
            if seg is not None and seg_out is not None:
                for j, i in enumerate(warped):
                    seg_out[i] = resample_seg(seg[i], grids[j], self.seg_mode, self.pad_label,
                                              affine=params[i].offsets is None)
        return Batch(out, seg_out, batch.folded)


def center_crop(x: torch.Tensor, patch_size: Sequence[int], pad_value: float) -> torch.Tensor:
    """``(C, *in)`` → ``(C, *patch)`` around ``floor(in / 2)``, padding with ``pad_value``
    (batchgeneratorsv2's crop_tensor). A view when nothing needs padding."""
    in_shape = x.shape[1:]
    starts = [s // 2 - p // 2 for s, p in zip(in_shape, patch_size)]
    src = tuple(slice(max(0, st), min(s, st + p)) for st, s, p in zip(starts, in_shape, patch_size))
    if all(st >= 0 and st + p <= s for st, s, p in zip(starts, in_shape, patch_size)):
        return x[(slice(None),) + src]
    out = torch.full((x.shape[0], *patch_size), pad_value, dtype=x.dtype, device=x.device)
    dst = tuple(slice(sl.start - st, sl.stop - st) for sl, st in zip(src, starts))
    out[(slice(None),) + dst] = x[(slice(None),) + src]
    return out
