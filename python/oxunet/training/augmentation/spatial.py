"""Spatial transform: rotation, scaling and elastic deformation around the centre of the enlarged
crop, cutting the final patch — batchgeneratorsv2's ``SpatialTransform`` as nnU-Net configures it
(``patch_center_dist_from_border=0``, ``random_crop=False``).

Images are resampled with (bi/tri)linear ``grid_sample`` and zero padding. Segmentations are
resampled per label: each label's indicator is interpolated linearly (out-of-image counts as the
padding label -1), the arg-max wins and exact ties go to the nearest neighbour's label
(batchgeneratorsv2 0.3.6, ``bg_style_seg_sampling=False``, ``seg_tiebreak='nearest'``). The grid and
the scores are computed with the same operations, so given the same parameters the result is
identical to batchgeneratorsv2's. It is faster because the arg-max is only evaluated where the
2×2(×2) neighbourhood a sample point interpolates from holds more than one label: everywhere else
the answer is that one label, whatever the weights (on large patches whole 8^dim output tiles are
settled at once from their corners). Where it is evaluated, 3D scores on the CPU come from the
eight corner labels and weights computed as ATen's grid_sampler_3d computes them (checked bit for
bit against grid_sample once per process; otherwise grid_sample runs at just those points).

Without rotation, scaling or deformation a sample is a plain centre crop (no interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import _rng
from ._base import Batch, Transform

SCORE_SCALE = 1000.0  # batchgeneratorsv2's scale_factor: float16 scores at this scale collapse near-ties


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
        self.rotation = tuple(float(r) for r in rotation)
        self.p_rotation, self.p_rotation_per_axis = p_rotation, p_rotation_per_axis
        self.p_scaling, self.scaling, self.p_synchronize_scaling = p_scaling, tuple(scaling), p_synchronize_scaling
        self.p_elastic, self.elastic_scale = p_elastic, tuple(elastic_scale)
        self.elastic_magnitude = elastic_magnitude
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
        if self.elastic_magnitude == "relative":
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
        axes = [torch.linspace((1 - s) / 2, (s - 1) / 2, s).to(device) for s in self.patch_size]
        weights = torch.from_numpy(params.affine.T).float().to(device)
        grid = torch.empty((*self.patch_size, dim), dtype=torch.float32, device=device)
        for d in range(dim):
            acc = None
            for e in range(dim):
                shape = [1] * dim
                shape[e] = self.patch_size[e]
                term = (axes[e] * weights[e, d]).view(shape)
                acc = term if acc is None else acc + term
            grid[..., dim - 1 - d] = acc / (in_shape[d] / 2)
        return grid

    # -- application -------------------------------------------------------------------------

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        params = [self.sample(gen) for _ in range(batch.size)]
        return self.apply(batch, params)

    def apply(self, batch: Batch, params: list[SpatialParams]) -> Batch:
        data, seg = batch.data, batch.seg
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
                if seg is not None:
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
            if seg is not None:
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
        return x[(slice(None), *src)]
    out = torch.full((x.shape[0], *patch_size), pad_value, dtype=x.dtype, device=x.device)
    dst = tuple(slice(sl.start - st, sl.stop - st) for sl, st in zip(src, starts))
    out[(slice(None), *dst)] = x[(slice(None), *src)]
    return out


# ---------------------------------------------------------------------------------------------
# segmentation resampling


def may_reach_outside(grid: torch.Tensor, in_shape: Sequence[int]) -> bool:
    """False guarantees that no linear kernel reads outside the image (batchgeneratorsv2's test)."""
    return _reach_from_extremes(_grid_extremes(grid), in_shape)


def _grid_extremes(grid: torch.Tensor) -> list[tuple[float, float]]:
    """(min, max) of each grid column (x, y[, z] order)."""
    return [tuple(float(v) for v in torch.aminmax(grid[..., c])) for c in range(grid.shape[-1])]


def _reach_from_extremes(extremes, in_shape) -> bool:
    size = np.array(in_shape[::-1], dtype=float)
    bound = (1 - 1 / size).min()
    gmin = min(lo for lo, _ in extremes)
    gmax = max(hi for _, hi in extremes)
    return not (-gmin <= bound and gmax <= bound)


def present_labels(seg: torch.Tensor) -> list[int]:
    """Sorted distinct values of an integer tensor (min/max, then a presence test per inner value)."""
    lo, hi = (int(v) for v in torch.aminmax(seg))
    inner = [v for v in range(lo + 1, hi) if bool((seg == v).any())] if hi - lo > 1 else []
    return [lo, *inner, hi] if hi > lo else [lo]


def resample_seg(seg: torch.Tensor, grid: torch.Tensor, mode: str, pad_label: int,
                 affine: bool = False) -> torch.Tensor:
    """``(C, *in)`` label map → ``(C, *patch)`` at ``grid`` (one sample).

    ``affine=True`` promises the grid is an affine function of the output index (no elastic
    deformation), which lets whole output tiles be settled from their corners.
    """
    shift = float(pad_label)
    if mode == "nearest":
        return (F.grid_sample(seg[None].float() - shift, grid[None], mode="nearest", padding_mode="zeros",
                              align_corners=False)[0] + shift).to(seg.dtype)
    in_shape = tuple(seg.shape[1:])
    dim = len(in_shape)
    extremes = _grid_extremes(grid)
    reach = _reach_from_extremes(extremes, in_shape)
    window = _footprint(extremes, in_shape)
    flat_grid = grid.reshape(-1, dim)
    out = torch.empty((seg.shape[0], *grid.shape[:-1]), dtype=seg.dtype, device=seg.device)
    # tiles pay off on large patches only (their bookkeeping costs more than it saves below ~80^3)
    use_tiles = affine and flat_grid.shape[0] >= _TileBounds.MIN_POINTS
    tiles = _TileBounds(grid, in_shape, window) if use_tiles else None
    scratch: list[torch.Tensor] = []
    for c in range(seg.shape[0]):
        labels = present_labels(seg[c])
        if reach and pad_label not in labels:
            labels = sorted([*labels, pad_label])
        if len(labels) == 1:
            out[c] = labels[0]
            continue
        if labels[0] < pad_label:  # the block codes assume nothing below the padding label
            scorer = _scorer(seg[c], flat_grid, window, scratch)
            out[c].view(-1).copy_(_argmax_labels(scorer, labels, reach, pad_label))
            continue
        part = _crop(seg[c], window, pad_label)
        same = _all_block_edges(part)
        flat_out = out[c].view(-1)
        if tiles is not None:
            settled, todo = tiles.fill(part, same)
            out[c] = settled
            todo = todo.reshape(-1).nonzero()[:, 0]
            if todo.numel() == 0:
                continue
            codes = _lookup_codes(part, same, flat_grid[todo], seg[c].shape, window, pad_label)
        else:
            todo = None
            codes = _lookup_codes(part, same, flat_grid, seg[c].shape, window, pad_label)
        mixed = torch.isnan(codes)
        # code k >= 1 is label k + pad - 1; 0 (every neighbour outside the image) is the padding label
        decoded = (codes.nan_to_num_(1.0) + (pad_label - 1)).clamp_(min=pad_label).to(seg.dtype)
        if todo is None:
            flat_out.copy_(decoded)
            points = mixed.nonzero()[:, 0]
        else:
            flat_out[todo] = decoded
            points = todo[mixed]
        if points.numel():
            scorer = _scorer(seg[c], flat_grid[points], window, scratch)
            flat_out[points] = _argmax_labels(scorer, labels, reach, pad_label)
    return out


def _footprint(extremes, in_shape: Sequence[int]) -> list[tuple[int, int]]:
    """Per spatial axis, the index range ``[lo, hi)`` (may extend one voxel past the image) that
    holds every voxel a linear kernel at any grid point reads, with a voxel of margin."""
    dim = len(in_shape)
    window = []
    for axis, size in enumerate(in_shape):
        gmin, gmax = extremes[dim - 1 - axis]
        lo = math.floor(((gmin + 1) * size - 1) / 2) - 1
        hi = math.floor(((gmax + 1) * size - 1) / 2) + 3
        window.append((max(lo, -1), min(hi, size + 1)))
    return window


def _crop(x: torch.Tensor, window: Sequence[tuple[int, int]], pad_value) -> torch.Tensor:
    """``x[lo:hi]`` per axis, where the window may extend past ``x`` (filled with ``pad_value``)."""
    inner = tuple(slice(max(lo, 0), min(hi, s)) for (lo, hi), s in zip(window, x.shape))
    pads = []
    for (lo, hi), s in reversed(list(zip(window, x.shape))):
        pads += [max(0, -lo), max(0, hi - s)]
    part = x[inner]
    return F.pad(part, pads, value=pad_value) if any(pads) else part


def _all_block_edges(p: torch.Tensor) -> torch.Tensor:
    """True where the 2^dim block whose low corner is at this index holds a single value."""
    if p.ndim == 2:
        ey = p[:, :-1] == p[:, 1:]
        same = ey[:-1] & ey[1:]
        same &= p[:-1, :-1] == p[1:, :-1]
        return same
    ez = p[..., :-1] == p[..., 1:]
    eyz = ez[:, :-1] & ez[:, 1:]
    eyz &= p[:, :-1, :-1] == p[:, 1:, :-1]
    same = eyz[:-1] & eyz[1:]
    same &= p[:-1, :-1, :-1] == p[1:, :-1, :-1]
    return same


def _lookup_codes(part: torch.Tensor, same: torch.Tensor, points: torch.Tensor, in_shape, window,
                  pad_label: int) -> torch.Tensor:
    """Per point (``(M, dim)`` grid coordinates), float: label - pad + 1 where the 2^dim voxels it
    interpolates from agree, 0 where they all lie outside the image, NaN where they differ.

    ``part`` is the input cropped to ``window`` and ``same`` its block-uniformity map. The block
    with low corner ``floor(source index)`` is looked up with a nearest-neighbour sample at
    ``source index - 1/2``; where that lands exactly on a half (an integer source index) the block
    may be the one below, which still holds every voxel with nonzero weight.
    """
    dim = part.ndim
    corner = part[tuple(slice(0, s - 1) for s in part.shape)]
    codes = (corner - (pad_label - 1)).to(torch.float32).masked_fill_(~same, float("nan"))
    # source index ix = ((g + 1) * size - 1) / 2 → block index ix - 1/2 - lo in a grid of n blocks
    scale, offset = [], []
    for axis in reversed(range(dim)):
        size, (lo, _), n = in_shape[axis], window[axis], codes.shape[axis]
        scale.append(size / n)
        offset.append((size - 1 - 2 * lo) / n - 1)
    dev = part.device
    lookup = torch.addcmul(torch.tensor(offset, device=dev), points, torch.tensor(scale, device=dev))
    lookup = lookup.reshape((1,) * dim + (-1, dim))
    return F.grid_sample(codes[None, None], lookup, mode="nearest", padding_mode="zeros",
                         align_corners=False).reshape(-1)


class _TileBounds:
    """Settles whole output tiles at once. For an affine grid the source coordinates over a tile of
    T^dim output voxels are bounded by those of its corners; if every 2^dim block in that source
    box holds a single value, the blocks (which overlap) all hold the same one, and it is the
    answer for every voxel of the tile, whatever the weights. The box test is a sum over a
    coarse map of mixed blocks (cells of C^dim blocks, conservative)."""

    T = 8  # output tile edge
    MIN_POINTS = 1 << 19
    C = 4  # coarse cell edge, in blocks

    def __init__(self, grid: torch.Tensor, in_shape, window):
        dim = grid.shape[-1]
        patch = grid.shape[:-1]
        self.patch, self.dim = tuple(patch), dim
        self.n_tiles = [-(-p // self.T) for p in patch]
        # corner indices of each tile per axis: first and last voxel
        lo_idx = [torch.arange(n, device=grid.device) * self.T for n in self.n_tiles]
        hi_idx = [torch.clamp(i + self.T - 1, max=p - 1) for i, p in zip(lo_idx, patch)]
        bmin = bmax = None
        for corner in range(2 ** dim):
            sel = [hi_idx[a] if corner >> a & 1 else lo_idx[a] for a in range(dim)]
            vals = grid[torch.meshgrid(*sel, indexing="ij")]  # (*n_tiles, dim)
            bmin = vals if bmin is None else torch.minimum(bmin, vals)
            bmax = vals if bmax is None else torch.maximum(bmax, vals)
        # block ranges per spatial axis, one block of margin against rounding
        self.block_lo, self.block_hi = [], []
        for axis in range(dim):
            col = dim - 1 - axis
            size, lo = in_shape[axis], window[axis][0]
            src_lo = ((bmin[..., col].double() + 1) * size - 1) / 2
            src_hi = ((bmax[..., col].double() + 1) * size - 1) / 2
            self.block_lo.append(torch.floor(src_lo).long() - lo - 1)
            self.block_hi.append(torch.floor(src_hi).long() - lo + 1)

    def fill(self, part: torch.Tensor, same: torch.Tensor):
        """(labels for the settled voxels, mask of voxels left to do), both ``(*patch)``."""
        dim, C = self.dim, self.C
        n_blocks = same.shape
        coarse = ~same
        for axis in range(dim):  # OR over cells of C blocks, one axis at a time
            n = coarse.shape[axis]
            cells = -(-n // C)
            if cells * C != n:
                pad = [0, 0] * dim
                pad[2 * (dim - 1 - axis) + 1] = cells * C - n
                coarse = F.pad(coarse, pad)
            split = coarse.unflatten(axis, (cells, C))
            acc = split.select(axis + 1, 0)
            for k in range(1, C):
                acc = acc | split.select(axis + 1, k)
            coarse = acc
        coarse = coarse.to(torch.int32)
        prefix = F.pad(coarse, [1, 0] * dim)
        for axis in range(dim):
            prefix = prefix.cumsum(axis)
        ok = torch.ones(self.n_tiles, dtype=torch.bool, device=part.device)
        c_lo, c_hi = [], []
        for axis in range(dim):
            b_lo, b_hi = self.block_lo[axis], self.block_hi[axis]
            ok &= (b_lo >= 0) & (b_hi < n_blocks[axis])
            c_lo.append(torch.clamp(b_lo, 0, n_blocks[axis] - 1) // C)
            c_hi.append(torch.clamp(b_hi, 0, n_blocks[axis] - 1) // C + 1)
        count = torch.zeros(self.n_tiles, dtype=torch.int32, device=part.device)
        for corner in range(2 ** dim):
            idx = tuple(c_hi[a] if corner >> a & 1 else c_lo[a] for a in range(dim))
            sign = -1 if (dim - bin(corner).count("1")) % 2 else 1
            count += sign * prefix[idx]
        ok &= count == 0
        # the tile's label: the voxel at its box's low corner (any voxel of the box would do)
        low = tuple(torch.clamp(self.block_lo[a], 0, n_blocks[a] - 1) for a in range(dim))
        tile_label = part[low]
        full = tile_label
        todo = ~ok
        for axis in range(dim):
            full = full.repeat_interleave(self.T, axis).narrow(axis, 0, self.patch[axis])
            todo = todo.repeat_interleave(self.T, axis).narrow(axis, 0, self.patch[axis])
        return full, todo


def _argmax_labels(scorer, labels: list[int], reach: bool, pad_label: int) -> torch.Tensor:
    """batchgeneratorsv2's per-label arg-max with nearest-neighbour tie-break at the scorer's points.

    Scores are float16 of 1000 × the linearly interpolated indicator; the padding label's indicator
    counts outside the image when the grid reaches there. Two labels: the second wins above 500.
    """
    nearest = scorer.nearest()

    def score(u: int) -> torch.Tensor:
        return scorer.score(u, reach and u == pad_label)

    if len(labels) == 2:
        hi = score(labels[1])
        result = torch.where(hi > 0.5 * SCORE_SCALE, labels[1], labels[0]).to(nearest.dtype)
        return torch.where(hi == 0.5 * SCORE_SCALE, nearest, result)
    best = None
    result = torch.empty_like(nearest)
    nn_score = torch.full(nearest.shape, float("-inf"), dtype=torch.float16, device=nearest.device)
    for u in labels:
        cur = score(u)
        nn_score = torch.where(nearest == u, cur, nn_score)
        if best is None:
            best = cur
            result.fill_(u)
            continue
        result[cur > best] = u
        best = torch.maximum(best, cur)
    return torch.where(nn_score == best, nearest, result)


class _GridSampleScorer:
    """Scores by grid_sample on indicator images, at just the given points (every output point is
    computed on its own, so these are the values a full-grid call gives). The indicators only need
    to be valid inside ``window``; ``scratch`` holds one full-size float buffer for them."""

    def __init__(self, seg_c: torch.Tensor, points: torch.Tensor, window, scratch: list, pad_label: int = -1):
        dim = seg_c.ndim
        self.grid = points.reshape((1,) * dim + (-1, dim))
        if not scratch:
            scratch.append(torch.empty(seg_c.shape, dtype=torch.float32, device=seg_c.device))
        self.full = scratch[0]
        inside = tuple(slice(max(lo, 0), min(hi, s)) for (lo, hi), s in zip(window, seg_c.shape))
        self.src, self.buf = seg_c[inside], self.full[inside]
        self.dtype, self.shift = seg_c.dtype, float(pad_label)

    def _sample(self, mode: str = "bilinear") -> torch.Tensor:
        return F.grid_sample(self.full[None, None], self.grid, mode=mode, padding_mode="zeros",
                             align_corners=False).reshape(-1)

    def nearest(self) -> torch.Tensor:
        # shifted by the padding label so that zeros padding reads as that label
        self.buf.copy_(self.src).sub_(self.shift)
        return (self._sample("nearest") + self.shift).to(self.dtype)

    def score(self, u: int, pad_trick: bool) -> torch.Tensor:
        torch.eq(self.src, u, out=self.buf)
        if pad_trick:
            self.buf.sub_(1).mul_(SCORE_SCALE)
            return (self._sample() + SCORE_SCALE).to(torch.float16)
        self.buf.mul_(SCORE_SCALE)
        return self._sample().to(torch.float16)


class _TrilinearScorer:
    """The same scores without indicator images: the eight corner labels and weights of each
    point, computed with the arithmetic of ATen's CPU grid_sampler_3d (source index
    ``((g + 1) * size - 1) / 2``, weights ``(x * y) * z`` of the per-axis factors, corners added in
    the order tnw, tne, tsw, tse, bnw, bne, bsw, bse, out-of-image corners skipped). Used only after
    :func:`_trilinear_matches_grid_sample` confirmed bit-identical results on this build."""

    def __init__(self, seg_c: torch.Tensor, points: torch.Tensor, pad_label: int):
        d_in, h_in, w_in = seg_c.shape
        flat = seg_c.reshape(-1)
        sizes = torch.tensor([w_in, h_in, d_in])  # grid columns are x, y, z
        src = ((points + 1) * sizes.float() - 1) / 2  # (M, 3)
        low = torch.floor(src)
        factors = torch.stack([(low + 1) - src, src - low])  # (2: low/high corner, M, 3)
        i0 = low.long()
        inside = torch.stack([(i0 >= 0) & (i0 < sizes), (i0 >= -1) & (i0 + 1 < sizes)])  # (2, M, 3)
        fx, fy, fz = factors[..., 0], factors[..., 1], factors[..., 2]  # (2, M) each
        # corner order (dz, dy, dx) = tnw, tne, tsw, tse, bnw, bne, bsw, bse
        self.weights = ((fy[:, None] * fx[None]) [None] * fz[:, None, None]).reshape(8, -1)
        self.inside = (inside[..., 1][:, None] & inside[..., 0][None])[None] & inside[..., 2][:, None, None]
        self.inside = self.inside.reshape(8, -1)
        strides = torch.tensor([1, w_in, h_in * w_in])
        base = (i0 * strides).sum(1)
        offsets = torch.tensor([dz * h_in * w_in + dy * w_in + dx
                                for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])
        idx = (base[None] + offsets[:, None]).clamp_(0, flat.numel() - 1)
        self.labels = torch.take(flat, idx)  # (8, M)
        self.scaled = self.weights * SCORE_SCALE
        near = torch.round(src).long()
        ok = ((near >= 0) & (near < sizes)).all(1)
        nidx = (near * strides).sum(1).clamp_(0, flat.numel() - 1)
        self._nearest = torch.where(ok, torch.take(flat, nidx), torch.tensor(pad_label, dtype=seg_c.dtype))

    def nearest(self) -> torch.Tensor:
        return self._nearest

    def score(self, u: int, pad_trick: bool) -> torch.Tensor:
        # pad trick: the indicator minus one (-1000 where the label differs, 0 on it), plus 1000 after
        if pad_trick:
            terms = -self.scaled * ((self.labels != u) & self.inside)
        else:
            terms = self.scaled * ((self.labels == u) & self.inside)
        out = terms[0]
        for k in range(1, 8):  # grid_sample's accumulation order, one float32 rounding per corner
            out = out + terms[k]
        if pad_trick:
            out = out + SCORE_SCALE
        return out.to(torch.float16)


_TRILINEAR_OK: dict = {}


def _trilinear_matches_grid_sample() -> bool:
    """Once per process: does :class:`_TrilinearScorer` reproduce grid_sample bit for bit here?"""
    if "cpu" not in _TRILINEAR_OK:
        gen = torch.Generator().manual_seed(1234)
        seg = torch.randint(-1, 3, (9, 11, 7), generator=gen, dtype=torch.int16)
        pts = torch.rand(4000, 3, generator=gen) * 2.4 - 1.2
        # include points on voxel centres and exactly half-way between them
        exact = torch.randint(-2, 24, (1000, 3), generator=gen).float() / 2
        for col, size in enumerate((7, 11, 9)):
            exact[:, col] = (2 * exact[:, col] + 1) / size - 1
        pts = torch.cat([pts, exact])
        window = [(-1, 10), (-1, 12), (-1, 8)]
        slow = _GridSampleScorer(seg, pts, window, [])
        fast = _TrilinearScorer(seg, pts, -1)
        same = torch.equal(_nearest_by_grid_sample(seg, pts), fast.nearest())
        for u in (-1, 0, 1, 2):
            for trick in (False, True):
                same = same and torch.equal(slow.score(u, trick), fast.score(u, trick))
        _TRILINEAR_OK["cpu"] = bool(same)
    return _TRILINEAR_OK["cpu"]


def _nearest_by_grid_sample(seg_c: torch.Tensor, points: torch.Tensor, pad_label: int = -1) -> torch.Tensor:
    dim = seg_c.ndim
    grid = points.reshape((1,) * dim + (-1, dim))
    shift = float(pad_label)
    return (F.grid_sample(seg_c[None, None].float() - shift, grid, mode="nearest", padding_mode="zeros",
                          align_corners=False).reshape(-1) + shift).to(seg_c.dtype)


def _scorer(seg_c: torch.Tensor, points: torch.Tensor, window, scratch: list, pad_label: int = -1):
    if seg_c.ndim == 3 and seg_c.device.type == "cpu" and points.dtype == torch.float32 \
            and _trilinear_matches_grid_sample():
        return _TrilinearScorer(seg_c, points, pad_label)
    return _GridSampleScorer(seg_c, points, window, scratch, pad_label)
