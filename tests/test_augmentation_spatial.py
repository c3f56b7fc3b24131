"""Spatial transform vs batchgeneratorsv2's SpatialTransform as nnU-Net configures it.

Given the same grid the resampled image and segmentation are identical bit for bit (the per-label
arg-max with nearest-neighbour tie-break only evaluated where a point's neighbourhood is mixed);
given the same affine/deformation our grid agrees with theirs to float32 rounding.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oxunet.training.augmentation._base import Batch
from oxunet.training.augmentation import seg_resample
from oxunet.training.augmentation.seg_resample import resample_seg
from oxunet.training.augmentation.spatial import SpatialParams, SpatialTransform, affine_matrix, center_crop
from peers import require


def blobs(shape, n_labels, seed, cell=8, pad_rows=0):
    """Piecewise-constant labels 0..n_labels-1 with smooth boundaries; optional -1 rows (loader padding)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((1, 1, *[max(2, s // cell) for s in shape]), generator=g)
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    up = F.interpolate(low, shape, mode=mode)[0, 0]
    seg = (up * n_labels).floor().clamp(max=n_labels - 1).to(torch.int16)
    if pad_rows:
        seg[:pad_rows] = -1
    return seg


def _theirs(patch, dim, p_elastic=0.0, rotation=None):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform as BGSpatial

    rot = rotation or ((-np.pi, np.pi) if dim == 2 else (-0.52, 0.52))
    return BGSpatial(patch, patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=p_elastic,
                     p_rotation=1, rotation=rot, p_scaling=1, scaling=(0.7, 1.4), p_synchronize_scaling_across_axes=1,
                     bg_style_seg_sampling=False, border_mode_seg="constant", padding_value_seg=-1)


CASES = [
    # patch, input, labels per channel, -1 rows
    ((20, 24, 18), (33, 36, 30), (2, 3), 0),
    ((20, 24, 18), (33, 36, 30), (4, 2), 3),
    ((16, 20, 16), (14, 22, 16), (3, 2), 0),  # input smaller than the footprint: reaches outside
    ((48, 40), (64, 60), (2, 5), 4),
    ((40, 40), (36, 50), (3, 1), 0),
]


@pytest.mark.parametrize("patch,inp,labels,pad_rows", CASES)
@pytest.mark.parametrize("seed", range(3))
def test_resampling_identical_given_their_grid(monkeypatch, patch, inp, labels, pad_rows, seed):
    monkeypatch.setattr(seg_resample._TileBounds, "MIN_POINTS", 0)  # exercise the tile shortcut on small patches
    np.random.seed(seed)
    torch.manual_seed(seed)
    theirs = _theirs(patch, len(patch), p_elastic=float(seed == 2))
    img = torch.randn(2, *inp)
    seg = torch.stack([blobs(inp, n, seed * 10 + i, pad_rows=pad_rows) for i, n in enumerate(labels)])
    params = theirs.get_parameters(image=img)
    ref = theirs.apply({"image": img.clone(), "segmentation": seg.clone()}, **params)
    grid = params["grid"]
    ours_img = F.grid_sample(img[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    assert torch.equal(ours_img, ref["image"])
    assert torch.equal(resample_seg(seg, grid, "bilinear", -1), ref["segmentation"])
    if params["elastic_offsets"] is None:  # whole-tile shortcut for affine grids
        assert torch.equal(resample_seg(seg, grid, "bilinear", -1, affine=True), ref["segmentation"])
    assert torch.equal(resample_seg(seg, grid, "nearest", -1), theirs_nearest(patch, seg, grid))


@pytest.mark.parametrize("patch,inp,labels,pad_rows", CASES[:3])
def test_grid_sample_scorer_fallback_is_identical(monkeypatch, patch, inp, labels, pad_rows):
    """Where the trilinear re-implementation is not bit-identical (other CPUs/builds), scoring falls
    back to grid_sample at the mixed points; both give their result."""
    np.random.seed(7)
    theirs = _theirs(patch, 3)
    seg = torch.stack([blobs(inp, n, 70 + i, pad_rows=pad_rows) for i, n in enumerate(labels)])
    params = theirs.get_parameters(image=torch.zeros(1, *inp))
    ref = theirs._apply_to_segmentation(seg.clone(), **params)
    monkeypatch.setitem(seg_resample._TRILINEAR_OK, "cpu", False)
    monkeypatch.setattr(seg_resample._TileBounds, "MIN_POINTS", 0)
    assert torch.equal(resample_seg(seg, params["grid"], "bilinear", -1, affine=True), ref)


def theirs_nearest(patch, seg, grid):
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform as BGSpatial

    t = BGSpatial(patch, 0, False, mode_seg="nearest", border_mode_seg="constant", padding_value_seg=-1)
    return t._apply_to_segmentation(seg, grid=grid)


@pytest.mark.parametrize("patch,inp,labels,pad_rows", CASES)
def test_full_transform_matches_given_same_parameters(patch, inp, labels, pad_rows):
    for seed in range(3):
        np.random.seed(seed)
        torch.manual_seed(seed)
        theirs = _theirs(patch, len(patch), p_elastic=float(seed == 1))
        img = torch.randn(1, *inp)
        seg = torch.stack([blobs(inp, n, seed * 7 + i, pad_rows=pad_rows) for i, n in enumerate(labels)])
        params = theirs.get_parameters(image=img)
        ref = theirs.apply({"image": img.clone(), "segmentation": seg.clone()}, **params)
        ours = SpatialTransform(patch, p_elastic=1.0)
        ours_grid = ours.grid(SpatialParams(params["affine"], params["elastic_offsets"]), inp, torch.device("cpu"))
        torch.testing.assert_close(ours_grid, params["grid"], rtol=0, atol=1e-6)
        out = ours.apply(Batch(img[None], seg[None]), [SpatialParams(params["affine"], params["elastic_offsets"])])
        # grids agree to 1e-6; interpolating values of ~1 off a one-ulp grid difference moves them ~1e-5
        # (torch 2.15's grid_sample reaches 1.1e-5 here)
        torch.testing.assert_close(out.data[0], ref["image"], rtol=0, atol=3e-5)
        # a one-ulp grid difference may settle an exact tie differently; anything more is a bug
        assert (out.seg[0] != ref["segmentation"]).float().mean() < 1e-3


def test_label_below_padding_label_uses_the_direct_path():
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform as BGSpatial

    inp, patch = (30, 30, 30), (18, 18, 18)
    seg = blobs(inp, 3, 1)[None] - 1
    seg[0, :2] = -2  # a value below the padding label -1
    np.random.seed(0)
    theirs = _theirs(patch, 3)
    params = theirs.get_parameters(image=torch.zeros(1, *inp))
    assert isinstance(theirs, BGSpatial)
    ref = theirs._apply_to_segmentation(seg.clone(), **params)
    assert torch.equal(resample_seg(seg, params["grid"], "bilinear", -1), ref)


@pytest.mark.parametrize("inp", [(30, 34, 28), (15, 34, 20), (33, 40)])
def test_identity_is_their_center_crop(inp):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.utils.cropping import crop_tensor

    patch = (20, 24, 22)[: len(inp)]
    img = torch.randn(2, *inp)
    seg = blobs(inp, 3, 0)[None]
    out = SpatialTransform(patch).apply(Batch(img[None], seg[None]), [SpatialParams()])
    centre = [s // 2 for s in inp]
    assert torch.equal(out.data[0], crop_tensor(img, centre, patch, "constant", {"value": 0}))
    assert torch.equal(out.seg[0], crop_tensor(seg, centre, patch, "constant", {"value": -1}))
    assert torch.equal(center_crop(seg, patch, -1), out.seg[0])


@pytest.mark.parametrize("dim", [2, 3])
def test_no_new_labels_and_rotation_by_90_degrees_is_exact(dim):
    inp = (36,) * dim
    patch = (24,) * dim
    seg = blobs(inp, 4, 3)[None]
    t = SpatialTransform(patch, (0.0, 0.0))
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        angles = [float(a) for a in torch.rand(3 if dim == 3 else 1, generator=gen) * 6 - 3]
        scales = [float(s) for s in torch.rand(dim, generator=gen) * 0.7 + 0.7]
        out = t.apply(Batch(torch.zeros(1, 1, *inp), seg[None]), [SpatialParams(affine_matrix(angles, scales))])
        assert set(out.seg.unique().tolist()) <= set(seg.unique().tolist()) | {-1}
    # a quarter turn of an even-sized patch is a pure index permutation: labels move, no interpolation
    # (the angle about the last axis turns the first two spatial axes)
    quarter = affine_matrix([0.0, 0.0, np.pi / 2] if dim == 3 else [np.pi / 2], [1.0] * dim)
    out = t.apply(Batch(torch.zeros(1, 1, *inp), seg[None]), [SpatialParams(quarter)])
    crop = center_crop(seg, patch, -1)
    assert torch.equal(out.seg[0], torch.rot90(crop, -1, dims=(1, 2)))


def test_sampling_is_deterministic_and_respects_probabilities():
    t = SpatialTransform((8, 8, 8), (-0.5, 0.5), p_rotation=0.2, p_scaling=0.2, p_synchronize_scaling=1.0)
    draws = [t.sample(torch.Generator().manual_seed(s)) for s in range(400)]
    again = [t.sample(torch.Generator().manual_seed(s)) for s in range(400)]
    assert all((a.affine is None and b.affine is None) or np.array_equal(a.affine, b.affine)
               for a, b in zip(draws, again))
    warped = sum(d.affine is not None for d in draws) / len(draws)
    assert 0.28 < warped < 0.44  # 1 - 0.8 * 0.8 = 0.36
    never = SpatialTransform((8, 8, 8), (-0.5, 0.5))
    assert all(never.sample(torch.Generator().manual_seed(s)).identity for s in range(50))


def test_batched_apply_equals_per_sample_apply():
    inp, patch = (30, 32, 28), (20, 20, 20)
    gen = torch.Generator().manual_seed(5)
    img = torch.randn(3, 2, *inp, generator=gen)
    seg = torch.stack([blobs(inp, 3, s)[None] for s in range(3)])
    t = SpatialTransform(patch)
    params = [SpatialParams(affine_matrix([0.3, 0.1, -0.2], [1.1] * 3)), SpatialParams(),
              SpatialParams(affine_matrix([0.0, 0.4, 0.0], [0.8, 0.9, 1.0]))]
    batched = t.apply(Batch(img.clone(), seg.clone()), params)
    for i, p in enumerate(params):
        single = t.apply(Batch(img[i:i + 1].clone(), seg[i:i + 1].clone()), [p])
        assert torch.equal(batched.data[i], single.data[0])
        assert torch.equal(batched.seg[i], single.seg[0])
