"""sample_patch_boxes / sample_patch_box / foreground_flags: nnU-Net's loader rules
(nnUNetDataLoader._oversample_last_XX_percent and get_bbox), Rust-less public functions vs
the reference transcription."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from peers import require

import oxunet.kernels as K
import oxunet.kernels.reference as R
from oxunet.kernels import sampling as S
from oxunet.kernels.reference import sampling as RS
from oxunet.kernels.errors import KernelShapeError, KernelTypeError, KernelValueError

BOX_IMPLS = [K.sample_patch_boxes, R.sample_patch_boxes]
ONE_IMPLS = [S.sample_patch_box, RS.sample_patch_box]


def nnunet_loader():
    require("nnunetv2")
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

    return nnUNetDataLoader


def fake_loader(patch, need_to_pad, batch_size=2, p=0.33, has_ignore=False, all_labels=(0, 1, 2)):
    """The attributes nnUNetDataLoader's sampling methods read, without a dataset."""
    return types.SimpleNamespace(
        patch_size=tuple(patch),
        need_to_pad=np.array(need_to_pad, dtype=int),
        batch_size=batch_size,
        oversample_foreground_percent=p,
        has_ignore=has_ignore,
        annotated_classes_key=tuple([-1] + list(all_labels)),
    )


def bounds(shape, patch, ntp):
    ntp = [p - s if n + s < p else n for s, p, n in zip(shape, patch, ntp)]
    return [-n // 2 for n in ntp], [s + n // 2 + n % 2 - p for s, p, n in zip(shape, patch, ntp)]


@pytest.mark.parametrize("p", [0.0, 0.1, 0.2, 0.33, 0.5, 0.66, 0.9, 1.0])
def test_oversampling_positions_match_nnunet(p):
    loader = nnunet_loader()
    for bs in range(1, 13):
        ns = fake_loader((8, 8), (0, 0), batch_size=bs, p=p)
        want = [loader._oversample_last_XX_percent(ns, j) for j in range(bs)]
        assert S.foreground_flags(bs, p) == want


def test_forced_positions_in_a_batch():
    # One far-away voxel: forced boxes are pinned on it, random ones are not.
    shape, patch = (60, 70), (8, 8)
    locs = {1: np.array([[0, 50, 60]])}
    for impl in BOX_IMPLS:
        for bs in range(1, 13):
            boxes = impl(shape, patch, bs, locs, 0.33, seed=bs)
            pinned = [b == [[46, 54], [56, 64]] for b in boxes]
            forced = S.foreground_flags(bs, 0.33)
            assert all(p for p, f in zip(pinned, forced) if f)
            assert sum(pinned) <= sum(forced) + 1  # a random box may coincide by chance, rarely


@st.composite
def geometry(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 40), min_size=ndim, max_size=ndim)))
    patch = tuple(draw(st.lists(st.integers(1, 48), min_size=ndim, max_size=ndim)))
    ntp = tuple(draw(st.lists(st.integers(0, 20), min_size=ndim, max_size=ndim)))
    voxel = tuple(draw(st.integers(0, s - 1)) for s in shape)
    return shape, patch, ntp, voxel


@given(geometry(), st.booleans())
def test_forced_box_matches_nnunet_get_bbox(geo, with_channel):
    """With one stored voxel the forced box is deterministic: compare with nnU-Net exactly."""
    loader = nnunet_loader()
    shape, patch, ntp, voxel = geo
    row = (0, *voxel) if with_channel else voxel
    locs = {1: np.array([row]), 2: np.zeros((0, len(row)), np.int64), 3: []}
    ns = fake_loader(patch, ntp)
    lbs, ubs = loader.get_bbox(ns, np.array(shape), True, {1: np.array([(0, *voxel)]), 2: []})
    want = [[int(a), int(b)] for a, b in zip(lbs, ubs)]
    for impl in ONE_IMPLS:
        assert impl(shape, patch, locs, True, ntp, rng=0) == want
    for impl in BOX_IMPLS:
        assert impl(shape, patch, 1, locs, 1.0, ntp, seed=0) == [want]
    # the stored voxel lies inside the (possibly overhanging) box
    assert all(lb <= v < ub for (lb, ub), v in zip(want, voxel))


@given(geometry())
def test_ignore_label_centres_unforced_boxes_like_nnunet(geo):
    loader = nnunet_loader()
    shape, patch, ntp, voxel = geo
    annotated = (-1, 0, 1, 2)
    locs = {1: [], 2: [], annotated: np.array([(0, *voxel)])}
    ns = fake_loader(patch, ntp, has_ignore=True)
    for force in (False, True):
        lbs, ubs = loader.get_bbox(ns, np.array(shape), force, locs)
        want = [[int(a), int(b)] for a, b in zip(lbs, ubs)]
        for impl in ONE_IMPLS:
            assert impl(shape, patch, locs, force, ntp, rng=1) == want
            assert impl(shape, patch, locs, force, ntp, rng=1, has_ignore=True) == want


def test_annotated_key_is_dropped_when_a_real_class_is_present():
    loader = nnunet_loader()
    shape, patch = (30, 30, 30), (10, 10, 10)
    annotated = (-1, 0, 1)
    locs = {1: np.array([[0, 25, 25, 25]]), annotated: np.array([[0, 2, 2, 2]])}
    ns = fake_loader(patch, (0, 0, 0), has_ignore=True, all_labels=(0, 1))
    lbs, ubs = loader.get_bbox(ns, np.array(shape), True, locs)
    want = [[int(a), int(b)] for a, b in zip(lbs, ubs)]
    assert want == [[20, 30]] * 3
    for impl in ONE_IMPLS:
        for seed in range(20):
            assert impl(shape, patch, locs, True, rng=seed) == want
    # only the annotated key has voxels: it is used
    locs = {1: [], annotated: np.array([[0, 2, 2, 2]])}
    for impl in ONE_IMPLS:
        assert impl(shape, patch, locs, True, rng=0) == [[0, 10]] * 3


@given(geometry(), st.integers(0, 2**32))
def test_random_corners_stay_in_lb_ub_and_reference_agrees(geo, seed):
    shape, patch, ntp, _ = geo
    lbs, ubs = bounds(shape, patch, ntp)
    got = K.sample_patch_boxes(shape, patch, 12, None, 0.33, ntp, seed)
    assert got == R.sample_patch_boxes(shape, patch, 12, None, 0.33, ntp, seed)
    assert len(got) == 12
    for box in got:
        for (lb, ub), lo, hi, p in zip(box, lbs, ubs, patch):
            assert lo <= lb <= hi and ub - lb == p


def test_random_corners_cover_the_whole_range_uniformly():
    shape, patch, ntp = (20, 9), (16, 12), (5, 0)
    (lo0, lo1), (hi0, hi1) = bounds(shape, patch, ntp)
    assert (lo0, hi0) == (-3, 7) and (lo1, hi1) == (-2, -1)  # need_to_pad rule on axis 1: 12 - 9 = 3
    boxes = K.sample_patch_boxes(shape, patch, 4000, {}, 0.0, ntp, seed=7)
    c0 = np.array([b[0][0] for b in boxes])
    c1 = np.array([b[1][0] for b in boxes])
    assert set(c0) == set(range(-3, 8)) and set(c1) == {-2, -1}
    counts = np.bincount(c0 + 3)
    assert counts.min() > 4000 / 11 * 0.75 and counts.max() < 4000 / 11 * 1.25


def test_need_to_pad_rule_and_no_upper_clamp():
    for impl in BOX_IMPLS:
        # shape smaller than the patch: need_to_pad = patch - shape = 4 -> lb = ub = -2
        assert impl((5,), (9,), 3, None, 0.0, None, seed=0) == [[[-2, 7]]] * 3
        # need_to_pad 3 is not enough for 5 + 3 < 10: becomes 5 -> lb = -3, ub = 5 + 2 + 1 - 10 = -2
        assert {b[0][0] for b in impl((5,), (10,), 200, None, 0.0, (3,), seed=0)} == {-3, -2}
        # forced near the upper border: corner = voxel - patch // 2, not clamped to ub
        assert impl((10,), (8,), 1, {1: [[0, 9]]}, 1.0, None, seed=0) == [[[5, 13]]]
        # forced near the lower border: clamped to lb
        assert impl((10,), (8,), 1, {1: [[0, 1]]}, 1.0, (4,), seed=0) == [[[-2, 6]]]


def test_forced_boxes_contain_a_voxel_of_some_class():
    rng = np.random.default_rng(0)
    seg = np.zeros((1, 30, 40, 50), np.int16)
    seg[0, 3:6, 30:34, 40:48] = 1
    seg[0, 20:28, 2:5, 1:4] = 2
    seg[0, rng.random((30, 40, 50)) < 0.0005] = 3
    locs = K.sample_class_locations(seg, [1, 2, 3, 4])
    assert len(locs[4]) == 0
    for impl in BOX_IMPLS:
        boxes = impl(seg.shape[1:], (16, 16, 16), 300, locs, 1.0, (8, 8, 8), seed=3)
        for box in boxes:
            patch = K.crop_and_pad(seg, box, -1)
            assert np.isin(patch, [1, 2, 3]).any()


def test_no_foreground_falls_back_to_random():
    for locs in (None, {}, {1: [], 2: np.zeros((0, 4), np.int64)}):
        for impl in BOX_IMPLS:
            a = impl((30, 30, 30), (8, 8, 8), 6, locs, 1.0, seed=11)
            b = impl((30, 30, 30), (8, 8, 8), 6, None, 0.0, seed=11)
            assert a == b


def test_no_annotated_voxels_warns_and_crops_randomly():
    locs = {1: [], (-1, 0, 1): []}
    for impl in ONE_IMPLS:
        with pytest.warns(UserWarning, match="no annotated"):
            box = impl((20, 20), (8, 8), locs, False, rng=0)
        assert all(0 <= lb <= 12 for lb, _ in box)


def test_determinism_generators_and_probabilistic_oversampling():
    locs = {1: np.array([[0, 5, 5, 5], [0, 25, 25, 25]])}
    for impl in BOX_IMPLS:
        a = impl((30, 30, 30), (8, 8, 8), 8, locs, seed=42)
        assert a == impl((30, 30, 30), (8, 8, 8), 8, locs, seed=42)
        assert a != impl((30, 30, 30), (8, 8, 8), 8, locs, seed=43)
        assert a == impl((30, 30, 30), (8, 8, 8), 8, locs, seed=np.random.default_rng(42))
        assert len({str(impl((30, 30, 30), (8, 8, 8), 8, locs)) for _ in range(3)}) > 1  # seed None
        none = impl((30, 30, 30), (8, 8, 8), 8, locs, 0.0, seed=1, probabilistic_oversampling=True)
        assert none == impl((30, 30, 30), (8, 8, 8), 8, None, 0.0, seed=1, probabilistic_oversampling=True)
        forced = impl((30, 30, 30), (8, 8, 8), 50, locs, 1.0, seed=1, probabilistic_oversampling=True)
        assert all(b in ([[1, 9]] * 3, [[21, 29]] * 3) for b in forced)
    flags = S.foreground_flags(4000, 0.33, probabilistic=True, rng=0)
    assert abs(np.mean(flags) - 0.33) < 0.03
    assert S.foreground_flags(12, 0.33) == [False] * 8 + [True] * 4


def test_reference_parity_with_ignore_and_channels():
    rng = np.random.default_rng(5)
    locs = {
        1: rng.integers(0, 30, (40, 4)) * np.array([0, 1, 1, 1]),
        (1, 2): rng.integers(0, 30, (10, 3)),
        (-1, 0, 1, 2): rng.integers(0, 30, (100, 4)) * np.array([0, 1, 1, 1]),
        2: [],
    }
    for seed in range(10):
        a = K.sample_patch_boxes((30, 31, 32), (12, 14, 16), 7, locs, 0.4, (4, 5, 6), seed)
        b = R.sample_patch_boxes((30, 31, 32), (12, 14, 16), 7, locs, 0.4, (4, 5, 6), seed)
        assert a == b


BAD_BOXES = [
    (dict(shape=(0, 10)), KernelValueError, "shape"),
    (dict(shape=(10.5, 10)), KernelTypeError, "shape"),
    (dict(shape=()), KernelShapeError, "shape"),
    (dict(patch_size=(8,)), KernelShapeError, "patch_size"),
    (dict(patch_size=(8, 0)), KernelValueError, "patch_size"),
    (dict(batch_size=0), KernelValueError, "batch_size"),
    (dict(batch_size=2.0), KernelValueError, "batch_size"),
    (dict(oversample_foreground_percent=1.5), KernelValueError, "oversample_foreground_percent"),
    (dict(oversample_foreground_percent="a"), KernelTypeError, "oversample_foreground_percent"),
    (dict(need_to_pad=(1, -1)), KernelValueError, "need_to_pad"),
    (dict(need_to_pad=(1, 1, 1)), KernelShapeError, "need_to_pad"),
    (dict(class_locations=[[0, 1, 1]]), KernelTypeError, "class_locations"),
    (dict(class_locations={1: np.zeros((3, 5), np.int64)}), KernelShapeError, "class_locations"),
    (dict(class_locations={1: np.zeros((3, 2), np.float32)}), KernelTypeError, "class_locations"),
    (dict(class_locations={1: 5}), KernelTypeError, "class_locations"),
    (dict(class_locations={1: [[1, 2, 3, 4]]}, oversample_foreground_percent=1.0), KernelShapeError, "class_locations"),
    (dict(seed=-1), KernelValueError, "seed"),
    (dict(seed="x"), KernelTypeError, "seed"),
    (dict(has_ignore=True), KernelValueError, "class_locations"),
    (dict(has_ignore="yes"), KernelTypeError, "has_ignore"),
]


@pytest.mark.parametrize("impl", BOX_IMPLS, ids=["public", "reference"])
@pytest.mark.parametrize("kwargs,exc,name", BAD_BOXES)
def test_bad_inputs_boxes(impl, kwargs, exc, name):
    args = dict(shape=(10, 10), patch_size=(8, 8), batch_size=2, class_locations={1: [[0, 1, 1]]})
    args.update(kwargs)
    with pytest.raises(exc) as info:
        impl(**args)
    assert type(info.value) is exc
    assert str(info.value).startswith(f"{name}:"), str(info.value)


@pytest.mark.parametrize("impl", ONE_IMPLS, ids=["public", "reference"])
def test_bad_inputs_single_box(impl):
    with pytest.raises(KernelTypeError, match="^force_fg:"):
        impl((10, 10), (8, 8), {}, 1)
    with pytest.raises(KernelValueError, match="^rng:"):
        impl((10, 10), (8, 8), {}, True, rng=-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(impl((10, 10), (8, 8), None, True, rng=0)) == 2
