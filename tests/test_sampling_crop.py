"""crop_and_pad vs acvl_utils.crop_and_pad_nd (nnU-Net's cropping) and the NumPy twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from peers import require

import oxunet.kernels as K
import oxunet.kernels.reference as R
from oxunet.kernels.errors import KernelShapeError, KernelTypeError, KernelValueError

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_, np.complex64]
IMPLS = [K.crop_and_pad, R.crop_and_pad]


def acvl_crop():
    require("acvl_utils")
    from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd

    return crop_and_pad_nd


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def make_array(rng, shape, dtype) -> np.ndarray:
    a = rng.integers(-100, 100, size=shape)
    if np.dtype(dtype).kind == "u":
        a = np.abs(a)
    return a.astype(dtype)


def pad_for(dtype) -> int:
    return 0 if np.dtype(dtype).kind in "ub" else -1


@st.composite
def crop_case(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    n_box = draw(st.integers(1, ndim))
    box = []
    for s in shape[ndim - n_box:]:
        kind = draw(st.sampled_from(["inside", "partial", "partial", "outside", "any"]))
        if kind == "inside":
            lb = draw(st.integers(0, s - 1))
            ub = draw(st.integers(lb, s))
        elif kind == "partial":
            lb = draw(st.integers(-6, s - 1))
            ub = draw(st.integers(max(lb, 1), s + 6))
        elif kind == "outside":
            lb = draw(st.sampled_from([s, s + 3, -8]))
            ub = lb + draw(st.integers(0, 5)) if lb >= s else draw(st.integers(lb, 0))
        else:
            lb = draw(st.integers(-10, s + 10))
            ub = draw(st.integers(lb, lb + 15))
        box.append([lb, ub])
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(["c", "c", "f", "reversed", "strided"]))
    return shape, box, dtype, layout, draw(st.integers(0, 2**32 - 1))


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "reversed":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if layout == "strided":
        big = np.repeat(a, 2, axis=-1)
        return big[..., ::2]
    return a


@given(crop_case())
def test_matches_acvl_and_reference(case):
    crop = acvl_crop()
    shape, box, dtype, layout, seed = case
    a = with_layout(make_array(np.random.default_rng(seed), shape, dtype), layout)
    pad = pad_for(dtype)
    want = np.ascontiguousarray(crop(a, box, pad))
    for impl in IMPLS:
        got = impl(a, box, pad)
        assert_same(got, want)
        assert got.flags.c_contiguous and got.flags.writeable
        assert not np.shares_memory(got, a)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.float32])
def test_cast_like_acvl_cast_cropped_to(dtype):
    crop = acvl_crop()
    rng = np.random.default_rng(1)
    seg = make_array(rng, (1, 7, 8, 9), dtype)
    for box in ([[-2, 5], [3, 12], [0, 9]], [[1, 4], [2, 3], [4, 6]], [[-3, 10], [-1, 9], [-5, 14]]):
        want = crop(seg, box, -1, cast_cropped_to=np.int16)
        for impl in IMPLS:
            assert_same(impl(seg, box, -1, dtype=np.int16), want)


def test_fully_outside_gives_zeros_like_acvl():
    crop = acvl_crop()
    a = np.arange(4 * 5 * 6, dtype=np.int16).reshape(1, 4, 5, 6)
    for box in ([[4, 8], [0, 5], [0, 6]], [[0, 4], [-7, 0], [0, 6]], [[-3, -1], [9, 12], [2, 3]]):
        want = crop(a, box, -1)
        assert not want.any()  # acvl returns zeros here, not the pad value
        for impl in IMPLS:
            assert_same(impl(a, box, -1), want)
            assert_same(impl(a, box, -1, dtype=np.int32), want.astype(np.int32))


def test_large_patches_sequential_and_parallel():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 40, 50, 60)).astype(np.float32)
    for box in ([[-7, 33], [10, 70], [-3, 57]], [[0, 40], [0, 50], [0, 60]], [[5, 45], [-20, 30], [30, 90]]):
        want = R.crop_and_pad(a, box, 0)
        for parallel in (False, True):
            assert_same(K.crop_and_pad(a, box, 0, parallel=parallel), want)
            strided = a[:, ::-1, :, ::2]
            assert_same(K.crop_and_pad(strided, box, 0.5, parallel=parallel), R.crop_and_pad(strided, box, 0.5))


def test_memmapped_npy_inside_partial_and_outside(tmp_path):
    crop = acvl_crop()
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2, 30, 40, 50)).astype(np.float32)
    seg = rng.integers(-1, 4, (1, 30, 40, 50)).astype(np.int16)
    np.save(tmp_path / "d.npy", data)
    np.save(tmp_path / "s.npy", seg)
    d = np.load(tmp_path / "d.npy", mmap_mode="r")
    s = np.load(tmp_path / "s.npy", mmap_mode="r")
    assert not d.flags.writeable and not d.flags.owndata
    boxes = [
        [[2, 18], [5, 37], [10, 42]],
        [[-8, 24], [20, 52], [-16, 16]],
        [[20, 52], [-4, 28], [40, 72]],
        [[-20, -4], [0, 32], [0, 32]],
    ]
    for box in boxes:
        for arr, pad in ((d, 0), (s, -1)):
            want = np.ascontiguousarray(crop(arr, box, pad))
            for impl in IMPLS:
                assert_same(impl(arr, box, pad), want)
        assert_same(K.crop_and_pad(s, box, -1, dtype=np.int16), R.crop_and_pad(s, box, -1, dtype=np.int16))


def test_blosc2_source_like_acvl():
    crop = acvl_crop()
    blosc2 = pytest.importorskip("blosc2")
    rng = np.random.default_rng(4)
    data = rng.standard_normal((2, 20, 24, 28)).astype(np.float32)
    b = blosc2.asarray(data, chunks=(1, 10, 12, 14), blocks=(1, 5, 6, 7))
    for box in ([[2, 18], [5, 20], [0, 28]], [[-5, 11], [20, 36], [-3, 13]], [[25, 30], [0, 5], [0, 5]]):
        want = np.ascontiguousarray(crop(b, box, 0))
        for impl in IMPLS:
            assert_same(impl(b, box, 0), want)
            assert_same(impl(b, box, -1, dtype=np.float64), R.crop_and_pad(data, box, -1, dtype=np.float64))


def test_non_native_byte_order_and_bool():
    a = np.arange(60, dtype=">f4").reshape(3, 4, 5)
    for impl in IMPLS:
        got = impl(a, [[-1, 3], [2, 7]], 7.5)
        assert got.dtype == a.dtype
        np.testing.assert_array_equal(got, R.crop_and_pad(a.astype("<f4"), [[-1, 3], [2, 7]], 7.5))
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    for impl in IMPLS:
        got = impl(m, [[1, 7], [-1, 3]], True)
        want = np.ones((6, 4), bool)  # rows 1..6 of the image, columns -1..2: padding is True
        want[0:4, 1:4] = False  # image rows 1..4, columns 0..2
        want[1, 3] = True  # the one True voxel (2, 2)
        assert_same(got, want)


def test_box_forms_and_empty_box():
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    want = R.crop_and_pad(a, [[0, 2], [1, 5]], 0)
    for impl in IMPLS:
        assert_same(impl(a, np.array([[0, 2], [1, 5]]), 0), want)
        assert_same(impl(a, ((np.int64(0), 2), (1, np.int32(5))), 0), want)
        assert_same(impl(a, [], 0), a)
        assert impl(a, [[1, 1]], 0).shape == (2, 3, 0)


BAD = [
    (dict(array=[[1, 2]]), KernelTypeError, "array"),
    (dict(array=np.array(["a", "b"])), KernelTypeError, "array"),
    (dict(array=np.zeros(3, np.complex128)), KernelTypeError, "array"),
    (dict(array=np.array(1.0)), KernelShapeError, "array"),
    (dict(box=[[0, 1], [0, 1], [0, 1], [0, 1]]), KernelShapeError, "box"),
    (dict(box=[[3, 1]]), KernelValueError, "box"),
    (dict(box=[[0.5, 2]]), KernelTypeError, "box"),
    (dict(box=[[0, 1, 2]]), KernelShapeError, "box"),
    (dict(box=5), KernelTypeError, "box"),
    (dict(box=[5]), KernelTypeError, "box"),
    (dict(box=np.zeros((2, 3), np.int64)), KernelShapeError, "box"),
    (dict(box=np.zeros((2, 2), np.float32)), KernelTypeError, "box"),
    (dict(box=[[0, 2**70]]), KernelValueError, "box"),
    (dict(array=np.zeros((3, 3), np.uint8), pad_value=-1), KernelValueError, "pad_value"),
    (dict(array=np.zeros((3, 3), np.int8), pad_value=200), KernelValueError, "pad_value"),
    (dict(array=np.zeros((3, 3), np.int16), pad_value=0.5), KernelValueError, "pad_value"),
    (dict(array=np.zeros((3, 3), bool), pad_value=2), KernelValueError, "pad_value"),
    (dict(pad_value="0"), KernelTypeError, "pad_value"),
    (dict(pad_value=None), KernelTypeError, "pad_value"),
    (dict(dtype="not-a-dtype"), KernelTypeError, "dtype"),
    (dict(dtype=object), KernelTypeError, "dtype"),
    (dict(array=np.zeros((3, 3), np.uint8), pad_value=-1, dtype=np.uint16), KernelValueError, "pad_value"),
]


@pytest.mark.parametrize("impl", IMPLS, ids=["rust", "reference"])
@pytest.mark.parametrize("kwargs,exc,name", BAD)
def test_bad_inputs(impl, kwargs, exc, name):
    args = dict(array=np.zeros((3, 4, 5), np.float32), box=[[0, 2], [1, 3]], pad_value=0)
    args.update(kwargs)
    with pytest.raises(exc) as info:
        impl(args.pop("array"), args.pop("box"), args.pop("pad_value"), **args)
    assert type(info.value) is exc
    assert str(info.value).startswith(f"{name}:"), str(info.value)
