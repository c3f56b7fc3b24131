"""sample_class_locations: counts exactly as nnU-Net's DefaultPreprocessor._sample_foreground_locations,
membership, uniqueness, determinism and uniformity; Rust vs the NumPy twin."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from peers import require

import oxunet.kernels as K
import oxunet.kernels.reference as R
from oxunet.kernels.errors import KernelShapeError, KernelTypeError, KernelValueError
from oxunet.kernels.sampling import num_class_samples

LABEL_DTYPES = [np.int8, np.int16, np.int32, np.uint8, np.uint16]
IMPLS = [K.sample_class_locations, R.sample_class_locations]


def nnunet_sampler():
    require("nnunetv2")
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    return DefaultPreprocessor._sample_foreground_locations


def labels_of(key) -> tuple[int, ...]:
    return key if isinstance(key, tuple) else (key,)


def check_locations(seg: np.ndarray, classes, out: dict, mns=10000, mpc=0.01) -> None:
    """Every invariant that does not depend on which voxels were drawn."""
    keys = [tuple(int(x) for x in c) if isinstance(c, (tuple, list)) else int(c) for c in classes]
    assert set(out) == set(keys)
    for key in keys:
        locs = out[key]
        assert isinstance(locs, np.ndarray) and locs.dtype == np.int64
        assert locs.ndim == 2 and locs.shape[1] == seg.ndim
        n = int(np.isin(seg, np.array(labels_of(key), dtype=np.int64)).sum()) if labels_of(key) else 0
        assert locs.shape[0] == num_class_samples(n, mns, mpc)
        if locs.shape[0]:
            assert np.isin(seg[tuple(locs.T)], labels_of(key)).all(), f"{key}: a location outside its class"
            flat = np.ravel_multi_index(tuple(locs.T), seg.shape)
            assert np.all(np.diff(flat) > 0), f"{key}: rows not unique / not in raster order"


@st.composite
def seg_and_classes(draw):
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(LABEL_DTYPES))
    signed = np.dtype(dtype).kind == "i"
    n_labels = draw(st.integers(1, 5))
    pool = list(range(-1 if signed else 0, n_labels + 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mode = draw(st.sampled_from(["random", "random", "empty", "full", "blocky"]))
    if mode == "empty":
        seg = np.zeros(shape, dtype)
    elif mode == "full":
        seg = np.full(shape, n_labels, dtype)
    elif mode == "blocky":
        seg = np.zeros(shape, dtype)
        seg[tuple(slice(0, max(1, s // 2)) for s in shape)] = 1
    else:
        seg = rng.choice(np.array(pool), size=shape).astype(dtype)
    classes = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            classes.append(draw(st.sampled_from(pool + [n_labels + 3])))
        else:
            classes.append(tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))))
    if draw(st.booleans()):  # nnU-Net's ignore-label "annotated" key
        classes.append(tuple([-1] + list(range(0, n_labels + 1))))
    mns = draw(st.sampled_from([10000, 10000, 0, 1, 5, 30]))
    mpc = draw(st.sampled_from([0.01, 0.01, 0.0, 0.1, 0.5, 1.0]))
    return seg, classes, mns, mpc, draw(st.integers(0, 2**63))


@given(seg_and_classes())
def test_counts_match_nnunet_and_invariants_hold(case):
    seg, classes, mns, mpc, seed = case
    nn = nnunet_sampler()(seg, classes, seed=1234, min_num_samples=mns, min_percent_coverage=mpc)
    for impl in IMPLS:
        out = impl(seg, classes, seed, min_num_samples=mns, min_percent_coverage=mpc)
        check_locations(seg, classes, out, mns, mpc)
        assert {k: len(v) for k, v in out.items()} == {k: len(v) for k, v in nn.items()}


@given(seg_and_classes())
def test_deterministic_per_seed(case):
    seg, classes, mns, mpc, seed = case
    a = K.sample_class_locations(seg, classes, seed, min_num_samples=mns, min_percent_coverage=mpc)
    b = K.sample_class_locations(seg, classes, seed, min_num_samples=mns, min_percent_coverage=mpc)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def blob_seg(shape, dtype=np.int16, seed=0) -> np.ndarray:
    """Two overlapping ellipsoid 'organs' (labels 1, 2) and a thin label 3 structure."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    seg = np.zeros(shape, dtype)
    for lab in (1, 2):
        c = [rng.uniform(0.3, 0.7) * n for n in shape]
        r = [rng.uniform(0.2, 0.4) * n for n in shape]
        seg[sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r)) < 1] = lab
    seg[tuple([slice(None)] * (len(shape) - 1) + [slice(1, 2)])] = 3
    return seg


def test_subsampled_class_over_10000_voxels():
    seg = blob_seg((30, 40, 50))[None]
    classes = [1, 2, 3, (1, 2), (-1, 0, 1, 2, 3)]
    nn = nnunet_sampler()(seg, classes, seed=1234)
    assert len(nn[(-1, 0, 1, 2, 3)]) == 10000 < seg.size  # really subsampled
    for impl in IMPLS:
        out = impl(seg, classes)
        check_locations(seg, classes, out)
        assert {k: len(v) for k, v in out.items()} == {k: len(v) for k, v in nn.items()}
        assert (out[1][:, 0] == 0).all()  # channel index kept as nnU-Net stores it


@pytest.mark.slow
def test_class_over_a_million_voxels():
    seg = np.zeros((1, 110, 128, 128), np.int16)
    seg[0, :100] = 1  # 1,638,400 voxels -> k = ceil(16384.0) = 16384
    seg[0, 100:, :, :7] = 2  # 8,960 voxels -> all of them
    classes = [1, 2, (1, 2), (-1, 0, 1, 2)]
    nn = nnunet_sampler()(seg, classes, seed=1234)
    assert len(nn[1]) == 16384
    for impl in IMPLS:
        out = impl(seg, classes, seed=5)
        check_locations(seg, classes, out)
        assert {k: len(v) for k, v in out.items()} == {k: len(v) for k, v in nn.items()}


@pytest.mark.parametrize("n", [999_999, 1_000_000, 1_000_001, 1_234_567, 2_000_050, 10**9 + 7])
def test_count_rule_float_arithmetic(n):
    assert num_class_samples(n) == max(min(10000, n), int(np.ceil(n * 0.01)))
    assert num_class_samples(n) == max(min(10000, n), math.ceil(n * 0.01))


def test_different_seeds_differ_and_both_impls_agree_on_counts():
    seg = blob_seg((20, 30, 40), np.uint8, seed=3)
    classes = [1, (1, 2)]
    outs = [K.sample_class_locations(seg, classes, s, min_num_samples=100) for s in (1, 2)]
    for k in classes:
        key = tuple(k) if isinstance(k, tuple) else k
        assert len(outs[0][key]) == len(outs[1][key]) > 0
        assert not np.array_equal(outs[0][key], outs[1][key])
    ref = R.sample_class_locations(seg, classes, 1, min_num_samples=100)
    assert {k: v.shape for k, v in ref.items()} == {k: v.shape for k, v in outs[0].items()}


def test_channel_axis_only_prepends_a_zero_column():
    seg = blob_seg((12, 17, 9), np.int16, seed=1)
    with_c = K.sample_class_locations(seg[None], [1, 2, (2, 3)], 9, min_num_samples=50)
    without = K.sample_class_locations(seg, [1, 2, (2, 3)], 9, min_num_samples=50)
    for k in with_c:
        assert (with_c[k][:, 0] == 0).all()
        np.testing.assert_array_equal(with_c[k][:, 1:], without[k])


def test_non_contiguous_read_only_and_memmapped_inputs(tmp_path):
    seg = blob_seg((16, 18, 20), np.int16, seed=2)
    want = K.sample_class_locations(np.ascontiguousarray(seg.transpose(2, 0, 1)), [1, 2, 3], 4, min_num_samples=30)
    got = K.sample_class_locations(seg.transpose(2, 0, 1), [1, 2, 3], 4, min_num_samples=30)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    path = tmp_path / "seg.npy"
    np.save(path, seg[None])
    mm = np.load(path, mmap_mode="r")
    assert not mm.flags.writeable
    a = K.sample_class_locations(mm, [1, 2, 3], 4)
    b = K.sample_class_locations(np.array(mm), [1, 2, 3], 4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    sliced = seg[::2, 1:, ::-1]
    check_locations(sliced, [1, 2, 3], K.sample_class_locations(sliced, [1, 2, 3], 0, min_num_samples=10), 10)


def test_int32_labels_far_apart_and_negative():
    seg = np.full((6, 7), -5, np.int32)
    seg[2, 3] = 2_000_000_000
    seg[4, :] = -2_000_000_000
    classes = [2_000_000_000, (-5, -2_000_000_000), -1, (7, 2_000_000_000)]
    for impl in IMPLS:
        out = impl(seg, classes)
        check_locations(seg, classes, out)
        np.testing.assert_array_equal(out[2_000_000_000], [[2, 3]])
        assert out[-1].shape == (0, 2)


def test_labels_outside_the_dtype_range_never_match():
    seg = np.array([[0, 1], [255, 3]], np.uint8)
    for impl in IMPLS:
        out = impl(seg, [-1, 256, (255, -1), (1, 70000)])
        assert out[-1].shape == (0, 2) and out[256].shape == (0, 2)
        np.testing.assert_array_equal(out[(255, -1)], [[1, 0]])
        np.testing.assert_array_equal(out[(1, 70000)], [[0, 1]])


def test_keys_follow_nnunet_normalisation():
    seg = np.array([[0, 1], [2, 3]], np.int8)
    for impl in IMPLS:
        out = impl(seg, [np.int64(1), [2, 3], (np.int16(1), 2), ()])
        assert list(out) == [1, (2, 3), (1, 2), ()]
        assert type(list(out)[0]) is int
        assert out[()].shape == (0, 2)
        assert out[(2, 3)].shape == (2, 2)


def test_empty_seg_and_empty_class_list():
    for impl in IMPLS:
        out = impl(np.zeros((1, 0, 5), np.int16), [0, 1, (0, 1)])
        assert {k: v.shape for k, v in out.items()} == {0: (0, 3), 1: (0, 3), (0, 1): (0, 3)}
        assert impl(np.zeros((3, 5), np.int16), []) == {}


def test_many_classes_and_a_wide_label_range():
    rng = np.random.default_rng(8)
    seg = rng.integers(0, 300, (20, 30, 40)).astype(np.int16)  # > 256 values: slot lookup path
    seg[seg % 7 == 0] = 1000
    classes = list(range(0, 300, 3)) + [(1000, 5), (-1, 0, 1000)]
    for impl in IMPLS:
        out = impl(seg, classes, 3, min_num_samples=40)
        check_locations(seg, classes, out, 40)


def test_duplicate_labels_in_a_region_count_each_voxel_once():
    seg = np.array([[1, 1], [2, 0]], np.int16)
    for impl in IMPLS:
        out = impl(seg, [(1, 1, 2)])
        assert out[(1, 1, 2)].shape == (3, 2)


def test_uniform_over_voxels():
    """Each of n voxels must be drawn with probability k / n."""
    seg = np.ones((4, 25), np.uint8)
    n, k, runs = 100, 10, 600
    counts = np.zeros(seg.shape, np.int64)
    for seed in range(runs):
        locs = K.sample_class_locations(seg, [1], seed, min_num_samples=k)[1]
        assert len(locs) == k
        np.add.at(counts, tuple(locs.T), 1)
    expected = runs * k / n  # 60
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 160, chi2  # 99 degrees of freedom: p < 1e-4 above ~160
    assert counts.min() > 25 and counts.max() < 105


def test_seed_none_draws_fresh_entropy():
    seg = np.ones((50, 50), np.int16)
    a = K.sample_class_locations(seg, [1], None, min_num_samples=20)[1]
    b = K.sample_class_locations(seg, [1], None, min_num_samples=20)[1]
    assert len(a) == len(b) == 25
    assert not np.array_equal(a, b)


BAD_INPUTS = [
    (dict(seg=[[0, 1]], classes=[1]), KernelTypeError, "seg"),
    (dict(seg=np.zeros((3, 3), np.float32), classes=[1]), KernelTypeError, "seg"),
    (dict(seg=np.zeros((3, 3), np.int64), classes=[1]), KernelTypeError, "seg"),
    (dict(seg=np.zeros((3, 3), bool), classes=[1]), KernelTypeError, "seg"),
    (dict(seg=np.array(1, np.int16), classes=[1]), KernelShapeError, "seg"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=1), KernelTypeError, "classes"),
    (dict(seg=np.zeros((3, 3), np.int16), classes="12"), KernelTypeError, "classes"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[1.0]), KernelTypeError, "classes"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[True]), KernelTypeError, "classes"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[(1, 2.5)]), KernelTypeError, "classes"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[2**70]), KernelValueError, "classes"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[1], seed=-1), KernelValueError, "seed"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[1], seed=1.5), KernelTypeError, "seed"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[1], min_num_samples=-1), KernelValueError, "min_num_samples"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[1], min_percent_coverage=1.5), KernelValueError, "min_percent_coverage"),
    (dict(seg=np.zeros((3, 3), np.int16), classes=[1], min_percent_coverage="x"), KernelTypeError, "min_percent_coverage"),
]


@pytest.mark.parametrize("impl", IMPLS, ids=["rust", "reference"])
@pytest.mark.parametrize("kwargs,exc,name", BAD_INPUTS)
def test_bad_inputs(impl, kwargs, exc, name):
    with pytest.raises(exc) as info:
        impl(**kwargs)
    assert type(info.value) is exc
    assert str(info.value).startswith(f"{name}:"), str(info.value)
