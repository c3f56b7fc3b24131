"""Parity of oxunet.kernels.{label_components, remove_all_but_largest_component,
remove_small_components} with their reference twins, scipy/skimage and nnU-Net."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from peers import require
from scipy import ndimage

import oxunet.kernels as K
import oxunet.kernels.reference as R
from oxunet.kernels.errors import KernelShapeError, KernelTypeError, KernelValueError

MASK_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
LABEL_DTYPES = [np.int8, np.int16, np.int32, np.uint8, np.uint16]
MODES = ["empty", "full", "blobs", "noise", "blobs", "noise"]
RANK = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}


def make_mask(rng: np.random.Generator, shape, mode: str) -> np.ndarray:
    if mode == "empty":
        return np.zeros(shape, bool)
    if mode == "full":
        return np.ones(shape, bool)
    if mode == "noise":
        return rng.random(shape) < rng.uniform(0.05, 0.6)
    f = rng.random(shape)
    for _ in range(int(rng.integers(1, 3))):
        f = ndimage.uniform_filter(f, 3, mode="nearest")
    return f > np.quantile(f, rng.uniform(0.3, 0.8))


def make_seg(rng: np.random.Generator, shape, mode: str, dtype) -> np.ndarray:
    seg = make_mask(rng, shape, mode).astype(np.int64)
    seg += make_mask(rng, shape, "blobs" if mode != "empty" else "empty") * 2  # labels 0..3
    if np.issubdtype(dtype, np.signedinteger):
        seg[rng.random(shape) < 0.05] = -1
    return seg.astype(dtype)


shapes = st.one_of(
    st.tuples(st.integers(1, 14), st.integers(1, 30)),
    st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 40)),
)
seeds = st.integers(0, 2**32 - 1)


@given(shape=shapes, seed=seeds, mode=st.sampled_from(MODES), dtype=st.sampled_from(MASK_DTYPES), data=st.data())
def test_label_components_matches_scipy(shape, seed, mode, dtype, data):
    rng = np.random.default_rng(seed)
    mask = make_mask(rng, shape, mode)
    conn = data.draw(st.sampled_from([None, 4, 8] if len(shape) == 2 else [None, 6, 18, 26]))
    arr = mask.astype(dtype)
    if dtype is not np.bool_:
        arr *= np.array(rng.integers(1, 100), dtype=dtype)  # any nonzero value is foreground
        if np.issubdtype(dtype, np.signedinteger):
            arr[mask & (rng.random(shape) < 0.3)] = -1
    rank = RANK[conn] if conn is not None else len(shape)
    want, wn = ndimage.label(mask, structure=ndimage.generate_binary_structure(len(shape), rank))
    labels, n = K.label_components(arr, conn)
    assert labels.dtype == np.uint32 and labels.shape == mask.shape and labels.flags.c_contiguous
    assert n == wn and isinstance(n, int)
    np.testing.assert_array_equal(labels, want)
    t_labels, tn = R.label_components(arr, conn)
    assert tn == n and t_labels.dtype == np.uint32
    np.testing.assert_array_equal(t_labels, labels)


@given(shape=shapes, seed=seeds, mode=st.sampled_from(MODES))
def test_label_components_matches_skimage(shape, seed, mode):
    measure = require("skimage.measure")
    mask = make_mask(np.random.default_rng(seed), shape, mode)
    for conn, sk_conn in [(None, len(shape)), (4 if len(shape) == 2 else 6, 1)]:
        labels, n = K.label_components(mask, conn)
        want, wn = measure.label(mask, connectivity=sk_conn, return_num=True)
        assert n == wn
        np.testing.assert_array_equal(labels, want)


label_specs = st.sampled_from([1, 2, [1], [1, 2], (1, 2), [(1, 2)], [(1, 3), 2], [3, (1,)], -1, [0], [], (2, -1), [5]])


@given(
    shape=shapes,
    seed=seeds,
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from(LABEL_DTYPES),
    spec=label_specs,
    background=st.sampled_from([0, 0, 3]),
)
def test_remove_all_but_largest_matches_nnunet(shape, seed, mode, dtype, spec, background):
    pp = require("nnunetv2.postprocessing.remove_connected_components")
    seg = make_seg(np.random.default_rng(seed), shape, mode, dtype)
    before = seg.copy()
    want = pp.remove_all_but_largest_component_from_segmentation(seg.copy(), spec, background)
    got = K.remove_all_but_largest_component(seg, spec, background)
    assert got.dtype == seg.dtype and got.flags.c_contiguous and not np.shares_memory(got, seg)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(seg, before)
    np.testing.assert_array_equal(R.remove_all_but_largest_component(seg, spec, background), got)


@given(
    shape=shapes,
    seed=seeds,
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from(LABEL_DTYPES),
    spec=label_specs,
    min_size=st.integers(0, 30),
    replace=st.sampled_from([0, 7]),
)
def test_remove_small_components_matches_acvl(shape, seed, mode, dtype, spec, min_size, replace):
    morph = require("acvl_utils.morphology.morphology_helper")
    seg = make_seg(np.random.default_rng(seed), shape, mode, dtype)
    before = seg.copy()
    values = [v for item in (spec if isinstance(spec, list) else [spec]) for v in (item if isinstance(item, tuple) else (item,))]
    mask = np.isin(seg, [v for v in values if np.iinfo(dtype).min <= v <= np.iinfo(dtype).max])
    keep = morph.remove_components(mask, min_size, "min")
    want = seg.copy()
    want[mask & ~keep.astype(bool)] = replace
    got = K.remove_small_components(seg, spec, min_size, replace)
    assert got.dtype == seg.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(seg, before)
    np.testing.assert_array_equal(R.remove_small_components(seg, spec, min_size, replace), got)


def test_largest_keeps_every_tied_component():
    seg = np.zeros((6, 7, 8), np.uint8)
    seg[0:2, 0:2, 0:2] = 1  # 8 voxels
    seg[4:6, 5:7, 6:8] = 2  # 8 voxels, other label, same region
    seg[3, 3, 3] = 1  # 1 voxel
    seg[0, 6, 0] = 3  # not in the mask
    got = K.remove_all_but_largest_component(seg, (1, 2))
    want = seg.copy()
    want[3, 3, 3] = 0
    np.testing.assert_array_equal(got, want)
    # Per label: label 2 alone has one component, label 1 two of different sizes.
    np.testing.assert_array_equal(K.remove_all_but_largest_component(seg, 2), seg)
    want1 = seg.copy()
    want1[3, 3, 3] = 9
    np.testing.assert_array_equal(K.remove_all_but_largest_component(seg, [1], background_label=9), want1)
    # Corner contact joins components (full connectivity): the diagonal chain is one component
    # of 3 voxels, the lone voxel is removed.
    seg2 = np.zeros((4, 4, 4), np.int16)
    seg2[0, 0, 0] = seg2[1, 1, 1] = seg2[2, 2, 2] = 1
    seg2[0, 3, 3] = 1
    want2 = seg2.copy()
    want2[0, 3, 3] = 0
    np.testing.assert_array_equal(K.remove_all_but_largest_component(seg2, 1), want2)


def test_noncontiguous_and_byteswapped_inputs():
    rng = np.random.default_rng(0)
    seg = make_seg(rng, (9, 10, 31), "blobs", np.int16)
    for view in (seg[::-1, :, ::2], seg.transpose(2, 0, 1), np.asfortranarray(seg), seg.astype(">i2")):
        np.testing.assert_array_equal(
            K.remove_all_but_largest_component(view, [1, 2]),
            K.remove_all_but_largest_component(np.ascontiguousarray(view, dtype=np.int16), [1, 2]),
        )
        mask = view > 0
        np.testing.assert_array_equal(K.label_components(mask[::-1])[0], ndimage.label(mask[::-1], np.ones((3, 3, 3)))[0])


def test_multi_slab_volume_and_thread_counts():
    """Big enough for the parallel slab split; results must not depend on the thread count."""
    rng = np.random.default_rng(1)
    seg = make_seg(rng, (64, 64, 72), "noise", np.uint8)
    mask = seg == 1
    want, wn = ndimage.label(mask, np.ones((3, 3, 3)))
    want_pp = R.remove_all_but_largest_component(seg, [1, 2])
    try:
        for threads in (1, 2, 3):
            K.set_num_threads(threads)
            labels, n = K.label_components(mask)
            assert n == wn
            np.testing.assert_array_equal(labels, want)
            np.testing.assert_array_equal(K.remove_all_but_largest_component(seg, [1, 2]), want_pp)
            np.testing.assert_array_equal(K.label_components(mask, 6)[0], ndimage.label(mask)[0])
    finally:
        K.set_num_threads(0)


def test_empty_arrays():
    labels, n = K.label_components(np.zeros((0, 4, 5), bool))
    assert n == 0 and labels.shape == (0, 4, 5)
    out = K.remove_all_but_largest_component(np.zeros((3, 0), np.uint8), 1)
    assert out.shape == (3, 0)


IMPLS = [pytest.param(K, id="rust"), pytest.param(R, id="reference")]
SEG = np.zeros((4, 5, 6), np.uint8)
BAD = [
    ("label_components", ([[True]],), {}, KernelTypeError, "mask"),
    ("label_components", (np.zeros((3, 3), np.float32),), {}, KernelTypeError, "mask"),
    ("label_components", (np.zeros(5, bool),), {}, KernelShapeError, "mask"),
    ("label_components", (np.zeros((2, 2, 2, 2), bool),), {}, KernelShapeError, "mask"),
    ("label_components", (np.zeros((3, 3), bool), 6), {}, KernelValueError, "connectivity"),
    ("label_components", (np.zeros((3, 3, 3), bool), 8), {}, KernelValueError, "connectivity"),
    ("label_components", (np.zeros((3, 3, 3), bool), 6.0), {}, KernelTypeError, "connectivity"),
    ("label_components", (np.zeros((3, 3, 3), bool), True), {}, KernelTypeError, "connectivity"),
    ("remove_all_but_largest_component", (SEG.astype(np.float32), 1), {}, KernelTypeError, "seg"),
    ("remove_all_but_largest_component", (SEG.astype(np.int64), 1), {}, KernelTypeError, "seg"),
    ("remove_all_but_largest_component", (SEG[0, 0], 1), {}, KernelShapeError, "seg"),
    ("remove_all_but_largest_component", (SEG, 1.5), {}, KernelTypeError, "labels_or_regions"),
    ("remove_all_but_largest_component", (SEG, "1"), {}, KernelTypeError, "labels_or_regions"),
    ("remove_all_but_largest_component", (SEG, [1, [2]]), {}, KernelTypeError, "labels_or_regions"),
    ("remove_all_but_largest_component", (SEG, ((1, 2),)), {}, KernelTypeError, "labels_or_regions"),
    ("remove_all_but_largest_component", (SEG, True), {}, KernelTypeError, "labels_or_regions"),
    ("remove_all_but_largest_component", (SEG, 1, -1), {}, KernelValueError, "background_label"),
    ("remove_all_but_largest_component", (SEG, 1, 256), {}, KernelValueError, "background_label"),
    ("remove_all_but_largest_component", (SEG, 1, 0.0), {}, KernelTypeError, "background_label"),
    ("remove_small_components", ("seg", 1, 3), {}, KernelTypeError, "seg"),
    ("remove_small_components", (SEG, {1}, 3), {}, KernelTypeError, "labels_or_regions"),
    ("remove_small_components", (SEG, 1, -1), {}, KernelValueError, "min_size"),
    ("remove_small_components", (SEG, 1, 2.5), {}, KernelTypeError, "min_size"),
    ("remove_small_components", (SEG, 1, 3, -2), {}, KernelValueError, "replace_with"),
    ("remove_small_components", (SEG, 1, 3, None), {}, KernelTypeError, "replace_with"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fn,args,kwargs,exc,arg", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input(impl, fn, args, kwargs, exc, arg):
    with pytest.raises(exc) as info:
        getattr(impl, fn)(*args, **kwargs)
    assert str(info.value).startswith(f"{arg}:"), str(info.value)
