"""Per-label linear resampling of a label map, identical to batchgeneratorsv2's SpatialTransform
(``mode_seg='bilinear'``, ``bg_style_seg_sampling=False``, ``seg_tiebreak='nearest'``, constant
padding with the padding label): each label's indicator × 1000 is interpolated linearly and
rounded to float16, the arg-max wins (the second of exactly two labels above 500), and exact ties
go to the nearest neighbour's label. With the grid reaching outside the image, the padding label's
indicator counts outside as 1.

Cheaper than evaluating every label everywhere, with the same result: a point whose 2^dim
interpolation neighbours hold one label gets that label whatever the weights, so scores are only
computed at the other ("mixed") points. On large patches whole 8^dim output tiles whose source box
holds one label are settled at once. At mixed points, 3D scores on the CPU come from the eight
corner labels and weights computed with ATen's grid_sampler_3d arithmetic (checked bit for bit
against grid_sample once per process; otherwise grid_sample runs at just those points).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SCORE_SCALE = 1000.0  # batchgeneratorsv2's scale_factor: float16 scores at this scale collapse near-ties


def may_reach_outside(grid: torch.Tensor, in_shape: Sequence[int]) -> bool:
    """False guarantees that no linear kernel reads outside the image (batchgeneratorsv2's test)."""
    return _reach_from_extremes(_grid_extremes(grid), in_shape)


def _grid_extremes(grid: torch.Tensor) -> list[tuple[float, float]]:
    """(min, max) of each grid column (x, y[, z] order)."""
    out = []
    for c in range(grid.shape[-1]):
        lo, hi = torch.aminmax(grid[..., c])
        out.append((float(lo), float(hi)))
    return out


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
        assert bmin is not None and bmax is not None  # 2 ** dim >= 1 corners
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
    best: torch.Tensor | None = None
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
    assert best is not None, "no labels to score"
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
