"""Parity of oxunet.kernels.crop_to_nonzero with its reference twin and nnU-Net."""

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

FLOAT_DTYPES = [np.float16, np.float32, np.float64]
SEG_DTYPES = [None, np.int8, np.int16, np.int32, np.uint8, np.uint16]
MODES = ["body", "body", "blobs", "shell", "empty", "full"]


def make_mask(rng: np.random.Generator, shape, mode: str) -> np.ndarray:
    """Foreground of one channel: a body with holes, random blobs, a hollow shell, empty, full."""
    if mode == "empty":
        return np.zeros(shape, bool)
    if mode == "full":
        return np.ones(shape, bool)
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    if mode == "blobs":
        f = rng.random(shape)
        f = ndimage.uniform_filter(f, 3, mode="nearest")
        return f > np.quantile(f, rng.uniform(0.2, 0.9))
    if mode == "shell":  # a closed hollow ellipsoid around the centre
        centre = [(n - 1) / 2 + rng.uniform(-0.1, 0.1) * n for n in shape]
        radii = [rng.uniform(0.35, 0.5) * n + 0.5 for n in shape]
    else:
        centre = [rng.uniform(0, n) for n in shape]
        radii = [rng.uniform(0.3, 0.7) * n + 0.5 for n in shape]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    if mode == "shell":
        m = (r2 < 1) & (r2 > rng.uniform(0.05, 0.3))
        if rng.random() < 0.3:  # a tunnel from the cavity to the outside
            m[tuple(slice(int(c), None) if i == 0 else int(c) for i, c in enumerate(centre))] = False
        return m
    m = r2 < 1
    for _ in range(int(rng.integers(0, 4))):  # internal zero holes
        c = [int(rng.integers(0, n)) for n in shape]
        m[tuple(slice(max(ci - 1, 0), ci + int(rng.integers(1, 3))) for ci in c)] = False
    m &= rng.random(shape) > 0.05  # scattered zero voxels
    return m


def make_data(rng, channels: int, shape, mode: str, dtype) -> np.ndarray:
    data = np.zeros((channels, *shape), dtype)
    for c in range(channels):
        m = make_mask(rng, shape, mode if c == 0 or mode in ("empty", "full") else rng.choice(["body", "blobs", "empty"]))
        vals = rng.normal(0, 100, shape).astype(dtype)
        vals[vals == 0] = 1
        vals[rng.random(shape) < 0.02] = np.nan
        data[c][m] = vals[m]
        data[c][~m & (rng.random(shape) < 0.2)] = -0.0  # negative zero is zero
    return data


def make_seg(rng, shape, dtype) -> np.ndarray:
    values = [0, 0, 0, 1, 2] + ([-1] if np.issubdtype(dtype, np.signedinteger) else [])
    return rng.choice(np.array(values), size=(1, *shape)).astype(dtype)


def pick_label(rng, dtype) -> int:
    if dtype is None:
        return int(rng.choice([-1, -1, 0, 5, 127, -128]))
    if np.issubdtype(dtype, np.signedinteger):
        return int(rng.choice([-1, -1, 0, 4, int(np.iinfo(dtype).min)]))
    return int(rng.choice([0, 9, int(np.iinfo(dtype).max)]))


def same_floats(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality (NaN and -0.0 included)."""
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))


def check_outputs(got, want, data, seg):
    d, s, bbox = got
    wd, ws, wbbox = want
    assert bbox == wbbox
    assert isinstance(bbox, list) and all(isinstance(b, list) and all(type(v) is int for v in b) for b in bbox)
    assert same_floats(d, wd)
    assert s.dtype == ws.dtype and s.shape == ws.shape
    np.testing.assert_array_equal(s, ws)
    for out in (d, s):
        assert out.flags.c_contiguous and out.flags.owndata
        assert not np.shares_memory(out, data) and (seg is None or not np.shares_memory(out, seg))


shapes3 = st.tuples(st.integers(1, 10), st.integers(1, 10), st.integers(1, 40))


@given(
    channels=st.integers(1, 3),
    shape=shapes3,
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seg_dtype=st.sampled_from(SEG_DTYPES),
)
def test_crop_matches_nnunet(channels, shape, seed, mode, dtype, seg_dtype):
    cropping = require("nnunetv2.preprocessing.cropping.cropping")
    rng = np.random.default_rng(seed)
    data = make_data(rng, channels, shape, mode, dtype)
    seg = None if seg_dtype is None else make_seg(rng, shape, seg_dtype)
    label = pick_label(rng, seg_dtype)
    data_before, seg_before = data.copy(), None if seg is None else seg.copy()
    # nnU-Net writes into the caller's seg; give it a copy.
    want = cropping.crop_to_nonzero(data.copy(), None if seg is None else seg.copy(), label)
    got = K.crop_to_nonzero(data, seg, label)
    check_outputs(got, want, data, seg)
    check_outputs(R.crop_to_nonzero(data, seg, label), want, data, seg)
    assert same_floats(data, data_before)
    if seg is not None:
        np.testing.assert_array_equal(seg, seg_before)


@given(
    channels=st.integers(1, 3),
    shape=st.tuples(st.integers(1, 16), st.integers(1, 40)),
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seg_dtype=st.sampled_from(SEG_DTYPES),
)
def test_crop_2d_matches_reference(channels, shape, seed, mode, dtype, seg_dtype):
    """(c, x, y) data (nnU-Net itself only handles 3D arrays): 2D hole filling, 4-connected."""
    rng = np.random.default_rng(seed)
    data = make_data(rng, channels, shape, mode, dtype)
    seg = None if seg_dtype is None else make_seg(rng, shape, seg_dtype)
    label = pick_label(rng, seg_dtype)
    got = K.crop_to_nonzero(data, seg, label)
    want = R.crop_to_nonzero(data, seg, label)
    check_outputs(got, want, data, seg)
    assert len(got[2]) == 2


def test_crop_2d_fills_holes_with_face_connectivity():
    data = np.zeros((1, 7, 7), np.float32)
    data[0, 1:6, 1:6] = 1
    data[0, 2:5, 2:5] = 0  # a cavity: filled
    d, s, bbox = K.crop_to_nonzero(data)
    assert bbox == [[1, 6], [1, 6]]
    assert (s == 0).all()
    data[0, 1, 1] = 0  # a corner notch does not open the cavity under 4-connectivity...
    data[0, 2, 1] = 0  # ...but a face-connected gap to the outside does
    _, s, _ = K.crop_to_nonzero(data)
    assert s[0, 2, 2] == -1 and s[0, 0, 0] == -1 and s[0, 0, 1] == 0


def test_crop_2d_nnunet_layout_never_fills():
    """nnU-Net's 2D data is (c, 1, x, y): every voxel is on the border, nothing gets filled."""
    cropping = require("nnunetv2.preprocessing.cropping.cropping")
    data = np.zeros((1, 1, 7, 7), np.float32)
    data[0, 0, 1:6, 1:6] = 1
    data[0, 0, 2:5, 2:5] = 0
    got = K.crop_to_nonzero(data)
    want = cropping.crop_to_nonzero(data.copy())
    check_outputs(got, want, data, None)
    assert (got[1][0, 0, 1:4, 1:4] == -1).all()


def test_crop_large_volume_thread_counts_and_layouts():
    """Big enough for the parallel slab split; strided, F-ordered and byte-swapped inputs."""
    cropping = require("nnunetv2.preprocessing.cropping.cropping")
    rng = np.random.default_rng(3)
    data = make_data(rng, 2, (40, 64, 120), "body", np.float32)
    seg = make_seg(rng, (40, 64, 120), np.int16)
    want = cropping.crop_to_nonzero(data.copy(), seg.copy(), -1)
    try:
        for threads in (1, 2, 3):
            K.set_num_threads(threads)
            check_outputs(K.crop_to_nonzero(data, seg, -1), want, data, seg)
    finally:
        K.set_num_threads(0)
    for d, s in [
        (np.asfortranarray(data), np.asfortranarray(seg)),
        (data.astype(">f4"), seg.astype(">i2")),
        (data[:, ::-1, :, ::3], seg[:, ::-1, :, ::3]),
    ]:
        ref = R.crop_to_nonzero(np.ascontiguousarray(d, np.float32), np.ascontiguousarray(s, np.int16), -1)
        got = K.crop_to_nonzero(d, s, -1)
        assert got[2] == ref[2] and same_floats(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_multichannel_seg_matches_nnunet():
    cropping = require("nnunetv2.preprocessing.cropping.cropping")
    rng = np.random.default_rng(11)
    data = make_data(rng, 2, (9, 12, 30), "shell", np.float32)
    seg = rng.choice(np.array([0, 0, 1, 3], np.int16), size=(3, 9, 12, 30))
    want = cropping.crop_to_nonzero(data.copy(), seg.copy(), -1)
    check_outputs(K.crop_to_nonzero(data, seg, -1), want, data, seg)
    check_outputs(R.crop_to_nonzero(data, seg, -1), want, data, seg)


def test_empty_image_keeps_full_extent():
    data = np.zeros((2, 3, 4, 5), np.float64)
    data[1, 0, 0, 0] = -0.0
    seg = np.full((1, 3, 4, 5), 2, np.uint8)
    d, s, bbox = K.crop_to_nonzero(data, seg, 7)
    assert bbox == [[0, 3], [0, 4], [0, 5]] and d.shape == data.shape
    np.testing.assert_array_equal(s, seg)
    _, s, _ = K.crop_to_nonzero(data)
    assert s.dtype == np.int8 and (s == -1).all()


IMPLS = [pytest.param(K, id="rust"), pytest.param(R, id="reference")]
DATA = np.ones((1, 3, 4, 5), np.float32)
BAD = [
    ((DATA.tolist(),), KernelTypeError, "data"),
    ((DATA.astype(np.int16),), KernelTypeError, "data"),
    ((DATA[0, 0],), KernelShapeError, "data"),
    ((DATA[None],), KernelShapeError, "data"),
    ((np.ones((1, 3, 0, 5), np.float32),), KernelShapeError, "data"),
    ((np.ones((0, 3, 4, 5), np.float32),), KernelShapeError, "data"),
    ((DATA, np.zeros((1, 3, 4, 5), np.float32)), KernelTypeError, "seg"),
    ((DATA, np.zeros((1, 3, 4, 5), np.int64)), KernelTypeError, "seg"),
    ((DATA, [[0]]), KernelTypeError, "seg"),
    ((DATA, np.zeros((3, 4, 5), np.int16)), KernelShapeError, "seg"),
    ((DATA, np.zeros((1, 3, 4, 6), np.int16)), KernelShapeError, "seg"),
    ((DATA, np.zeros((0, 3, 4, 5), np.int16)), KernelShapeError, "seg"),
    ((DATA, None, 1.0), KernelTypeError, "nonzero_label"),
    ((DATA, None, True), KernelTypeError, "nonzero_label"),
    ((DATA, None, 128), KernelValueError, "nonzero_label"),
    ((DATA, np.zeros((1, 3, 4, 5), np.uint8), -1), KernelValueError, "nonzero_label"),
    ((DATA, np.zeros((1, 3, 4, 5), np.int16), 40000), KernelValueError, "nonzero_label"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("args,exc,arg", BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input(impl, args, exc, arg):
    with pytest.raises(exc) as info:
        impl.crop_to_nonzero(*args)
    assert str(info.value).startswith(f"{arg}:"), str(info.value)
