"""Parity of oxunet.kernels.resample_data / resample_seg with the NumPy/SciPy twin and with
nnU-Net v2.8.1 (resample_data_or_seg_to_shape; batchgenerators 0.25.5 resize_segmentation).

What is pinned, and how exactly:

* data, float32/float64: max |rust - reference| <= 1e-4 x input range (the Rust kernel works
  separably in f32/f64 with f64 line scratch; the reference is scipy's N-d zoom in float64).
* data, float16: within one float16 step of the reference, plus 1e-6 x max|input| (the Rust
  kernel keeps float16 intermediates in float32, as for float32 input, so outputs near zero
  carry float32 rounding relative to the input's magnitude, finer than 1e-6 of it).
* segmentations at order 0/1 (any order_z in {0, 1}): identical. The Rust one-pass kernel forms
  every label's interpolated indicator with scipy's own arithmetic (same products, same
  summation order), so exact ties (e.g. a sample point half way between two labels) are settled
  exactly as in nnU-Net, by the nearest-neighbour label.
* segmentations where an order 3 spline is involved (order=3, or order_z=3): a float tie is
  possible. Symmetric configurations give two labels mathematically equal scores (or a score of
  exactly 0.5 against nnU-Net's `> 0.5` rule), and which side wins depends on the last bit of a
  float sum that scipy forms over the N-d tensor product while oxunet forms it separably. There
  the tests require identity everywhere except at voxels whose competing reference scores are
  within 1e-9 of each other (or of 0.5), and they check that condition voxel by voxel.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy import ndimage

from peers import require

from oxunet import _core
from oxunet.kernels import KernelShapeError, KernelTypeError, KernelValueError
from oxunet.kernels import resampling as K
from oxunet.kernels.reference import resampling as R

FLOATS = (np.float16, np.float32, np.float64)
LABELS = (np.int8, np.int16, np.int32, np.uint8, np.uint16)
SPACINGS = (0.5, 0.7, 1.0, 1.0, 2.0, 3.5, 5.0)
TIE = 1e-9


# ----------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------

@st.composite
def cases(draw, ndim=st.sampled_from([3, 3, 3, 2]), max_in=9, max_out=12, forces=(None, True, False)):
    nd = draw(ndim)
    shape = tuple(draw(st.lists(st.integers(1, max_in), min_size=nd, max_size=nd)))
    new_shape = tuple(draw(st.lists(st.integers(1, max_out), min_size=nd, max_size=nd)))
    cur = tuple(draw(st.lists(st.sampled_from(SPACINGS), min_size=nd, max_size=nd)))
    new = tuple(draw(st.lists(st.sampled_from(SPACINGS), min_size=nd, max_size=nd)))
    force = draw(st.sampled_from(forces))
    channels = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    return shape, new_shape, cur, new, force, channels, np.random.default_rng(seed)


def make_data(rng, channels, shape, dtype):
    kind = rng.integers(3)
    if kind == 0:      # smooth + noise
        x = rng.normal(size=(channels, *shape)) * 10 + 3
    elif kind == 1:    # piecewise constant (spline overshoot, clipping)
        x = rng.integers(-2, 3, size=(channels, *shape)).astype(float) * 100
    else:              # a constant channel next to a random one
        x = rng.normal(size=(channels, *shape))
        x[0] = 7.25
    return x.astype(dtype)


def make_seg(rng, channels, shape, dtype):
    kind = rng.integers(4)
    lo = 0 if np.dtype(dtype).kind == "u" else -1
    if kind == 0:      # empty mask
        s = np.zeros((channels, *shape))
    elif kind == 1:    # full mask of one label
        s = np.full((channels, *shape), 2)
    else:              # up to 4 labels, -1 included for signed types
        s = rng.integers(lo, lo + 4, size=(channels, *shape))
    return s.astype(dtype)


def assert_data_close(ref, out, data):
    assert out.dtype == ref.dtype == data.dtype
    assert out.shape == ref.shape
    r = ref.astype(np.float64)
    o = out.astype(np.float64)
    x = data.astype(np.float64)
    if data.dtype == np.float16:
        # one float16 step of the value, plus the float32 rounding of the intermediates (relative
        # to the input's magnitude), which exceeds a float16 step only for outputs near zero
        step = np.spacing(np.maximum(np.abs(r), np.abs(o)).astype(np.float16)).astype(np.float64)
        slack = 1e-6 * float(np.abs(x).max(initial=0))
        assert np.all(np.abs(r - o) <= step * 1.0001 + slack), np.abs(r - o).max()
        return
    rng_ = float(x.max() - x.min()) if x.size else 0.0
    eps = np.finfo(data.dtype).eps * 8 * float(np.abs(x).max(initial=0))
    err = float(np.abs(r - o).max(initial=0))
    assert err <= 1e-4 * rng_ + eps, (err, rng_)


# ----------------------------------------------------------------------------------------------
# tie analysis for order 3 (see module docstring)
# ----------------------------------------------------------------------------------------------

def _label_scores(x, shape, order):
    """{label: clipped interpolated indicator} of one resize unit, as resize_segmentation has them."""
    return {lab: np.clip(R._zoom((x == lab).astype(np.float64), shape, order), 0, 1) for lab in np.unique(x)}


def _argmax_ties(ref, out, unit, shape, order):
    """Voxels of one unit where ref and out differ must have both labels within TIE of the best."""
    bad = np.argwhere(ref != out)
    if not len(bad):
        return
    scores = _label_scores(unit, shape, order)
    for idx in map(tuple, bad):
        best = max(s[idx] for s in scores.values())
        for lab in (ref[idx], out[idx]):
            assert lab in scores and best - scores[lab][idx] <= TIE, (idx, ref[idx], out[idx])


def check_seg_order3(ref, out, seg, new_shape, axis, order):
    """ref vs out for order 3 in plane and order_z 0 (separate axis `axis` or None)."""
    for c in range(seg.shape[0]):
        if axis is None:
            _argmax_ties(ref[c], out[c], seg[c], new_shape, order)
            continue
        nn = R._zoom(np.arange(seg.shape[1 + axis]), (new_shape[axis],), 0)
        plane = [m for i, m in enumerate(new_shape) if i != axis]
        for k, src in enumerate(nn):
            sl = (slice(None),) * axis + (k,)
            _argmax_ties(ref[c][sl], out[c][sl], seg[c][(slice(None),) * axis + (src,)], plane, order)


def check_seg_threshold(ref, out, seg, new_shape, axis, order, order_z):
    """ref vs out for order 0/1 in plane (exact) and order_z 3 along `axis`: a differing voxel
    needs some label whose reference z-score is within TIE of 0.5."""
    for c in range(seg.shape[0]):
        bad = np.argwhere(ref[c] != out[c])
        if not len(bad):
            continue
        plane = [m for i, m in enumerate(new_shape) if i != axis]
        tmp_shape = list(new_shape)
        tmp_shape[axis] = seg.shape[1 + axis]
        tmp = np.empty(tmp_shape, dtype=seg.dtype)
        for s in range(seg.shape[1 + axis]):
            sl = (slice(None),) * axis + (s,)
            tmp[sl] = R._resize_seg(seg[c][sl], plane, order)
        zs = [R._zoom((tmp == lab).astype(np.float64), new_shape, order_z) for lab in np.unique(tmp)]
        for idx in map(tuple, bad):
            assert any(abs(z[idx] - 0.5) <= TIE for z in zs), (idx, [z[idx] for z in zs])


def check_seg(ref, out, seg, new_shape, cur, new, force, order, order_z):
    assert out.dtype == ref.dtype == seg.dtype and out.shape == ref.shape
    axis = R.separate_z_axis(cur, new, force)
    z_changes = axis is not None and seg.shape[1 + axis] != new_shape[axis]
    if order == 3 and z_changes and order_z == 3:
        return  # both spline steps tie-prone; covered separately below
    if order == 3 and (not z_changes or order_z in (0, 1)):
        if z_changes and order_z == 1:
            return  # an in-plane tie can move a z threshold: covered by the order_z=0 cases
        check_seg_order3(ref, out, seg, new_shape, axis, order)
    elif z_changes and order_z == 3:
        check_seg_threshold(ref, out, seg, new_shape, axis, order, order_z)
    else:
        np.testing.assert_array_equal(out, ref)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------

@given(cases(), st.sampled_from(FLOATS), st.sampled_from([0, 1, 3]), st.sampled_from([0, 1, 3]))
def test_data_matches_reference(case, dtype, order, order_z):
    shape, new_shape, cur, new, force, channels, rng = case
    data = make_data(rng, channels, shape, dtype)
    ref = R.resample_data(data, new_shape, cur, new, order, order_z, force)
    out = K.resample_data(data, new_shape, cur, new, order, order_z, force)
    if tuple(shape) == tuple(new_shape):
        assert out is data and ref is data
        return
    assert_data_close(ref, out, data)


@given(cases(ndim=st.just(3)), st.sampled_from(FLOATS), st.sampled_from([0, 1, 3]), st.sampled_from([0, 1, 3]))
def test_data_matches_nnunet(case, dtype, order, order_z):
    nn = require("nnunetv2.preprocessing.resampling.default_resampling")
    shape, new_shape, cur, new, force, channels, rng = case
    data = make_data(rng, channels, shape, dtype)
    ref = nn.resample_data_or_seg_to_shape(data, new_shape, cur, new, is_seg=False, order=order,
                                           order_z=order_z, force_separate_z=force)
    out = K.resample_data(data, new_shape, cur, new, order, order_z, force)
    assert_data_close(ref, out, data)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,new_shape,cur,new,order,order_z", [
    # sizes beyond one 16-line block, odd remainders, every axis as the separate one
    ((19, 37, 23), (41, 18, 29), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 3, 0),
    ((6, 35, 33), (17, 30, 40), (5.0, 0.8, 0.8), (1.5, 0.9, 0.7), 3, 0),
    ((33, 5, 21), (29, 13, 21), (0.8, 4.0, 0.8), (0.8, 1.5, 0.8), 3, 1),
    ((20, 18, 4), (25, 35, 10), (1.0, 1.0, 5.0), (1.0, 1.0, 2.0), 1, 3),
    ((40, 40, 9), (20, 19, 3), (0.5, 0.5, 3.0), (1.0, 1.0, 6.0), 3, 0),
])
def test_data_mid_size(dtype, shape, new_shape, cur, new, order, order_z):
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(2, *shape)) * 50).astype(dtype)
    ref = R.resample_data(data, new_shape, cur, new, order, order_z)
    out = K.resample_data(data, new_shape, cur, new, order, order_z)
    assert_data_close(ref, out, data)


def test_data_clips_to_each_slice_on_the_separate_path():
    # two slices along z with disjoint ranges: each in-plane resize is clipped to its own slice
    data = np.zeros((1, 6, 6, 2), np.float32)
    data[0, :, :, 0] = np.kron([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.ones((2, 2)))
    data[0, :, :, 1] = 10 + data[0, :, :, 0]
    out = K.resample_data(data, (9, 9, 2), (1.0, 1.0, 4.0), (1.0, 1.0, 4.0))
    assert out[0, :, :, 0].min() >= 0 and out[0, :, :, 0].max() <= 1
    assert out[0, :, :, 1].min() >= 10 and out[0, :, :, 1].max() <= 11
    assert np.any((out[0, :, :, 0] > 0.05) & (out[0, :, :, 0] < 0.95))  # interpolated, not copied
    ref = R.resample_data(data, (9, 9, 2), (1.0, 1.0, 4.0), (1.0, 1.0, 4.0))
    assert_data_close(ref, out, data)


def test_data_noncontiguous_and_byteswapped_inputs():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(2, 11, 9, 14))
    views = [base.transpose(0, 3, 1, 2), base[:, ::2, 1:, ::-1], base.astype(">f4"), base.astype(np.float32)[:, :, :, 3]]
    for v in views:
        shape = v.shape[1:]
        new_shape = tuple(s * 2 - 1 for s in shape)
        ref = R.resample_data(v, new_shape, (1.0,) * len(shape), (1.0,) * len(shape), 3)
        out = K.resample_data(v, new_shape, (1.0,) * len(shape), (1.0,) * len(shape), 3)
        assert out.dtype == ref.dtype == v.dtype
        assert_data_close(ref, out, v)


def test_data_hand_checked_values():
    # linear upsampling 2 -> 4 with pixel-area alignment: coordinates -0.25, 0.25, 0.75, 1.25
    d = np.array([[[0.0, 1.0]]], np.float64)
    out = K.resample_data(d, (1, 4), (1.0, 1.0), (1.0, 1.0), order=1)
    np.testing.assert_allclose(out[0, 0], [0.0, 0.25, 0.75, 1.0])
    # nearest downsampling 4 -> 2 takes samples 1 and 3 (coordinates 0.5, 2.5 round half up)
    d = np.array([[[10.0, 11.0, 12.0, 13.0]]], np.float32)
    out = K.resample_data(d, (1, 2), (1.0, 1.0), (1.0, 1.0), order=0)
    np.testing.assert_array_equal(out[0, 0], [11.0, 13.0])
    # cubic matches scipy's zoom with the nearest-padded prefilter at the border
    d = np.array([[[0.0, 0.0, 1.0, 3.0, 2.0]]])
    out = K.resample_data(d, (1, 9), (1.0, 1.0), (1.0, 1.0), order=3)
    expect = np.clip(ndimage.zoom(d[0, 0], 9 / 5, order=3, mode="nearest", grid_mode=True), 0, 3)
    np.testing.assert_allclose(out[0, 0], expect, rtol=0, atol=1e-12)


def test_data_unchanged_shape_returns_input_object():
    d = np.ones((2, 3, 4, 5), np.float32)
    assert K.resample_data(d, (3, 4, 5), (1, 1, 1), (2, 2, 2)) is d
    s = np.ones((1, 3, 4), np.uint8)
    assert K.resample_seg(s, [3, 4], (1, 1), (2, 2)) is s


def test_zero_channels():
    d = np.zeros((0, 3, 4, 5), np.float32)
    out = K.resample_data(d, (6, 4, 5), (1, 1, 1), (1, 1, 1))
    assert out.shape == (0, 6, 4, 5) and out.dtype == np.float32
    s = np.zeros((0, 3, 4), np.int16)
    assert K.resample_seg(s, (2, 2), (1, 1), (1, 1)).shape == (0, 2, 2)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    d = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    out = K.resample_data(d, (6, 4, 5), (1, 1, 1), (1, 1, 1))
    ref = R.resample_data(d.numpy(), (6, 4, 5), (1, 1, 1), (1, 1, 1))
    assert isinstance(out, np.ndarray)
    assert_data_close(ref, out, d.numpy())


# ----------------------------------------------------------------------------------------------
# segmentations
# ----------------------------------------------------------------------------------------------

@given(cases(), st.sampled_from(LABELS), st.sampled_from([0, 1]), st.sampled_from([0, 1]))
def test_seg_order01_identical_to_reference(case, dtype, order, order_z):
    shape, new_shape, cur, new, force, channels, rng = case
    seg = make_seg(rng, channels, shape, dtype)
    ref = R.resample_seg(seg, new_shape, cur, new, order, order_z, force)
    out = K.resample_seg(seg, new_shape, cur, new, order, order_z, force)
    if tuple(shape) == tuple(new_shape):
        assert out is seg and ref is seg
        return
    assert out.dtype == seg.dtype
    np.testing.assert_array_equal(out, ref)


@given(cases(ndim=st.just(3)), st.sampled_from(LABELS), st.sampled_from([0, 1, 3]), st.sampled_from([0, 1, 3]))
def test_seg_matches_nnunet(case, dtype, order, order_z):
    nn = require("nnunetv2.preprocessing.resampling.default_resampling")
    shape, new_shape, cur, new, force, channels, rng = case
    seg = make_seg(rng, channels, shape, dtype)
    ref = nn.resample_data_or_seg_to_shape(seg, new_shape, cur, new, is_seg=True, order=order,
                                           order_z=order_z, force_separate_z=force)
    out = K.resample_seg(seg, new_shape, cur, new, order, order_z, force)
    check_seg(ref, out, seg, new_shape, cur, new, force, order, order_z)


@given(cases(forces=(False, True)), st.sampled_from(LABELS))
def test_seg_order3_differs_only_at_float_ties(case, dtype):
    shape, new_shape, cur, new, force, channels, rng = case
    seg = make_seg(rng, channels, shape, dtype)
    ref = R.resample_seg(seg, new_shape, cur, new, 3, 0, force)
    out = K.resample_seg(seg, new_shape, cur, new, 3, 0, force)
    check_seg(ref, out, seg, new_shape, cur, new, force, 3, 0)


@given(cases(forces=(True,)), st.sampled_from(LABELS), st.sampled_from([0, 1]))
def test_seg_order_z3_differs_only_at_half(case, dtype, order):
    shape, new_shape, cur, new, force, channels, rng = case
    seg = make_seg(rng, channels, shape, dtype)
    ref = R.resample_seg(seg, new_shape, cur, new, order, 3, force)
    out = K.resample_seg(seg, new_shape, cur, new, order, 3, force)
    check_seg(ref, out, seg, new_shape, cur, new, force, order, 3)


@pytest.mark.parametrize("dtype", LABELS)
@pytest.mark.parametrize("shape,new_shape,cur,new,order,order_z", [
    ((19, 37, 23), (41, 18, 29), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 1, 0),
    ((6, 35, 33), (17, 30, 40), (5.0, 0.8, 0.8), (1.5, 0.9, 0.7), 1, 0),
    ((33, 5, 21), (29, 13, 21), (0.8, 4.0, 0.8), (0.8, 1.5, 0.8), 1, 1),
    ((40, 40, 9), (20, 19, 3), (0.5, 0.5, 3.0), (1.0, 1.0, 6.0), 1, 0),
    ((24, 22, 20), (12, 11, 10), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), 1, 0),  # exact 2x: ties everywhere
    ((15, 17, 9), (30, 9, 20), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 0, 0),
])
def test_seg_mid_size_identical(dtype, shape, new_shape, cur, new, order, order_z):
    rng = np.random.default_rng(2)
    lo = 0 if np.dtype(dtype).kind == "u" else -1
    # blobby labels: smoothed noise thresholded into 4 classes
    f = ndimage.gaussian_filter(rng.normal(size=(2, *shape)), (0, 2, 2, 2))
    seg = (np.digitize(f, np.quantile(f, [0.4, 0.6, 0.8])) + lo).astype(dtype)
    ref = R.resample_seg(seg, new_shape, cur, new, order, order_z)
    out = K.resample_seg(seg, new_shape, cur, new, order, order_z)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("nlabels", [4, 40])
def test_seg_random_labels_identical(nlabels):
    # every voxel is a boundary voxel; with 40 labels more than 8 meet within a chunk of voxels
    rng = np.random.default_rng(nlabels)
    seg = rng.integers(-1, nlabels - 1, size=(1, 12, 30, 75)).astype(np.int16)
    for new_shape, order_z, cur in [((20, 17, 83), 0, (1, 1, 1)), ((7, 45, 40), 0, (4, 1, 1)),
                                    ((30, 31, 30), 1, (1, 1, 5))]:
        ref = R.resample_seg(seg, new_shape, cur, (1, 1, 1), 1, order_z)
        out = K.resample_seg(seg, new_shape, cur, (1, 1, 1), 1, order_z)
        np.testing.assert_array_equal(out, ref)


def test_seg_never_invents_labels_and_settles_ties_by_nearest():
    s = np.array([[[0, 0, 2]]], np.int8)
    out = K.resample_seg(s, (1, 7), (1, 1), (1, 1), order=1)
    assert set(np.unique(out)) <= {0, 2}
    # 4 -> 2: every output sits exactly between two labels; nearest neighbour (samples 1, 3) wins
    s = np.array([[[1, 2, 3, 4]]], np.uint8)
    np.testing.assert_array_equal(K.resample_seg(s, (1, 2), (1, 1), (1, 1)), [[[2, 4]]])
    np.testing.assert_array_equal(R.resample_seg(s, (1, 2), (1, 1), (1, 1)), [[[2, 4]]])


def test_seg_label_minus_one_and_noncontiguous():
    rng = np.random.default_rng(4)
    base = rng.integers(-1, 3, size=(1, 12, 10, 8)).astype(np.int16)
    for v in (base.transpose(0, 2, 3, 1), base[:, ::-1, ::2], base.astype(">i2")):
        new_shape = tuple(s + 3 for s in v.shape[1:])
        ref = R.resample_seg(v, new_shape, (1,) * 3, (1,) * 3)
        out = K.resample_seg(v, new_shape, (1,) * 3, (1,) * 3)
        np.testing.assert_array_equal(out, ref)
        assert -1 in out


_SIMD_SCRIPT = """
import numpy as np, sys
from oxunet.kernels import resampling as K
rng = np.random.default_rng(7)
d = (rng.normal(size=(2, 9, 37, 21)) * 10).astype(np.float32)
s = rng.integers(-1, 3, size=(1, 9, 37, 21)).astype(np.int8)
outs = [K.resample_data(d, (13, 30, 40), (1, 1, 1), (1, 1, 1), 3),
        K.resample_data(d.astype(np.float64), (5, 50, 17), (5, 1, 1), (1, 1, 1), 1, 3),
        K.resample_seg(s, (13, 30, 40), (1, 1, 1), (1, 1, 1), 1),
        K.resample_seg(s, (17, 20, 33), (4, 1, 1), (1, 1, 1), 1)]
np.savez(sys.argv[1], *outs)
"""


# ----------------------------------------------------------------------------------------------
# bands of planes (the streamed export)
# ----------------------------------------------------------------------------------------------

@given(cases(ndim=st.just(3), max_in=11, max_out=14), st.sampled_from(FLOATS), st.sampled_from([0, 1, 3]),
       st.sampled_from([0, 1, 3]), st.data())
def test_band_equals_whole_volume_planes(case, dtype, order, order_z, data):
    """Any band that holds the planes its outputs read gives the whole volume's planes bit for bit
    (same passes, same order, same precision; the clips a band leaves out are no-ops)."""
    shape, new_shape, cur, new, force, channels, rng = case
    x = make_data(rng, channels, shape, dtype)
    deps, why = K.band_dependencies(shape, new_shape, cur, new, order, order_z, force)
    rdeps, rwhy = R.band_dependencies(shape, new_shape, cur, new, order, order_z, force)
    assert why == rwhy
    if deps is None:
        assert rdeps is None and why
        with pytest.raises(KernelValueError, match="no exact band resampling"):
            K.resample_data_band(x, 0, shape[0], (0, 1), new_shape, cur, new, order, order_z, force)
        return
    np.testing.assert_array_equal(deps, rdeps)
    assert (np.diff(deps, axis=0) >= 0).all() and (deps[:, 0] <= deps[:, 1]).all()
    whole = K.resample_data(x, new_shape, cur, new, order, order_z, force)
    o0 = data.draw(st.integers(0, new_shape[0] - 1))
    o1 = data.draw(st.integers(o0 + 1, new_shape[0]))
    lo = data.draw(st.integers(0, int(deps[o0:o1, 0].min())))
    hi = data.draw(st.integers(int(deps[o0:o1, 1].max()) + 1, shape[0]))
    band = x[:, lo:hi]
    got = K.resample_data_band(band, lo, shape[0], (o0, o1), new_shape, cur, new, order, order_z, force)
    assert got.dtype == x.dtype and got.shape == (channels, o1 - o0, *new_shape[1:])
    np.testing.assert_array_equal(got, whole[:, o0:o1])
    assert_data_close(R.resample_data_band(band, lo, shape[0], (o0, o1), new_shape, cur, new, order, order_z, force),
                      got, x)


@pytest.mark.parametrize("shape,new_shape,cur,new,order,order_z", [
    ((37, 20, 18), (61, 33, 30), (1.0, 1.0, 1.0), (0.6, 0.6, 0.6), 1, 0),  # isotropic upsampling (CT export)
    ((61, 33, 30), (37, 20, 18), (0.6, 0.6, 0.6), (1.0, 1.0, 1.0), 1, 0),  # and downsampling
    ((9, 35, 33), (31, 30, 40), (5.0, 0.8, 0.8), (1.5, 0.9, 0.7), 3, 1),   # separate z, linear along it
    ((33, 5, 21), (29, 13, 25), (0.8, 4.0, 0.8), (0.8, 1.5, 0.8), 1, 3),   # separate axis 1
])
def test_band_mid_size_every_split(shape, new_shape, cur, new, order, order_z):
    """Mid sizes (several 16-line blocks, the fused in-plane passes): the volume cut into bands of
    every width from 1 to 7 output planes gives the whole volume's planes bit for bit."""
    x = (np.random.default_rng(4).normal(size=(2, *shape)) * 50).astype(np.float32)
    whole = K.resample_data(x, new_shape, cur, new, order, order_z)
    deps, why = K.band_dependencies(shape, new_shape, cur, new, order, order_z)
    assert deps is not None, why
    for width in range(1, 8):
        for o0 in range(0, new_shape[0], width):
            o1 = min(new_shape[0], o0 + width)
            lo, hi = int(deps[o0:o1, 0].min()), int(deps[o0:o1, 1].max()) + 1
            got = K.resample_data_band(x[:, lo:hi], lo, shape[0], (o0, o1), new_shape, cur, new, order, order_z)
            np.testing.assert_array_equal(got, whole[:, o0:o1])


def test_band_dependencies_linear_and_nearest():
    # 4 -> 8 planes, linear: output k sits at (k + 0.5) / 2 - 0.5 and reads floor and floor + 1 (clamped)
    deps, _ = K.band_dependencies((4, 3, 3), (8, 3, 3), (1, 1, 1), (0.5, 1, 1), 1, 0)
    assert deps.tolist() == [[0, 0], [0, 1], [0, 1], [1, 2], [1, 2], [2, 3], [2, 3], [3, 3]]
    # separate z (5 mm -> 1 mm) with nearest along it: one input plane per output plane
    deps, _ = K.band_dependencies((4, 9, 9), (8, 9, 9), (5, 1, 1), (2.5, 1, 1), 1, 0)
    assert deps.tolist() == [[0, 0], [0, 0], [1, 1], [1, 1], [2, 2], [2, 2], [3, 3], [3, 3]]
    deps, why = K.band_dependencies((4, 9, 9), (8, 9, 9), (1, 1, 1), (0.5, 1, 1), 3, 0)
    assert deps is None and "prefilter" in why


@pytest.mark.parametrize("impl", [K, R], ids=["rust", "reference"])
def test_band_bad_arguments(impl):
    x = np.zeros((1, 3, 4, 4), np.float32)
    args = ((8, 4, 4), (1, 1, 1), (0.5, 1, 1), 1, 0)
    with pytest.raises(KernelValueError, match=r"band: output planes 0..4 read input planes 0..=3, the band holds 2..5"):
        impl.resample_data_band(x, 2, 6, (0, 4), *args)
    with pytest.raises(KernelValueError, match="first_plane: a band of 3 planes from plane 4 does not fit a depth of 6"):
        impl.resample_data_band(x, 4, 6, (0, 1), *args)
    with pytest.raises(KernelValueError, match=r"planes: expected 0 <= o0 < o1 <= 8"):
        impl.resample_data_band(x, 0, 6, (3, 3), *args)
    with pytest.raises(KernelShapeError):
        impl.resample_data_band(x[0], 0, 6, (0, 1), *args)


def test_order1_never_leaves_the_range_of_its_taps():
    # the f32 weights 1 - x and x may sum to 1 + 2**-24: clamped per pair of taps, a resize of a
    # constant stays that constant and a resize never leaves its input range, clip or no clip
    for v in (1.0e-3, 0.1, 3.3, 1.7e5, -2.9e4):
        x = np.full((1, 7, 5, 3), v, np.float32)
        out = K.resample_data(x, (23, 11, 13), (1, 1, 1), (1, 1, 1), 1, 0)
        assert (out == np.float32(v)).all()
        band = K.resample_data_band(x[:, 2:5], 2, 7, (8, 12), (23, 11, 13), (1, 1, 1), (1, 1, 1), 1, 0)
        assert (band == np.float32(v)).all()


def test_baseline_build_matches_simd_build(tmp_path):
    # the hot loops also exist as an AVX2 build; OXUNET_NO_SIMD=1 forces the baseline build
    import os
    import subprocess
    import sys

    runs = {}
    for flag in ("0", "1"):
        path = tmp_path / f"out{flag}.npz"
        env = {**os.environ, "OXUNET_NO_SIMD": flag}
        subprocess.run([sys.executable, "-c", _SIMD_SCRIPT, str(path)], check=True, env=env)
        runs[flag] = np.load(path)
    for key in runs["0"].files:
        np.testing.assert_array_equal(runs["0"][key], runs["1"][key])


# ----------------------------------------------------------------------------------------------
# separate-z decision
# ----------------------------------------------------------------------------------------------

@given(st.lists(st.sampled_from(SPACINGS + (0.24, 1.25, 6.0)), min_size=3, max_size=3),
       st.lists(st.sampled_from(SPACINGS + (0.24, 1.25, 6.0)), min_size=3, max_size=3),
       st.sampled_from([None, True, False]))
def test_separate_z_decision_matches_nnunet(cur, new, force):
    nn = require("nnunetv2.preprocessing.resampling.default_resampling")
    do_sep, axis = nn.determine_do_sep_z_and_axis(force, cur, new)
    expect = int(axis) if do_sep else None
    assert R.separate_z_axis(cur, new, force) == expect
    assert _core.separate_z_axis(cur, new, force) == expect


def test_separate_z_examples():
    assert R.separate_z_axis((5, 0.7, 0.7), (1.5, 0.8, 0.8)) == 0
    assert R.separate_z_axis((0.24, 1.25, 1.25), (1, 1, 1)) is None  # tie of the largest axis
    assert R.separate_z_axis((1, 1, 1), (1, 1, 4)) == 2               # the new spacing decides
    assert R.separate_z_axis((1, 1, 3), (1, 1, 3)) is None            # 3 is not above the threshold
    assert R.separate_z_axis((1, 1, 1), (1, 1, 1), True) is None
    assert R.separate_z_axis((5, 1, 1), (5, 1, 1), False) is None


# ----------------------------------------------------------------------------------------------
# bad input: same exception class and message from both twins, naming the argument
# ----------------------------------------------------------------------------------------------

GOOD = dict(new_shape=(4, 4, 4), current_spacing=(1.0, 1.0, 1.0), new_spacing=(1.0, 1.0, 1.0))

BAD = [
    ("data", [[[[1.0]]]], {}, KernelTypeError),
    ("data", np.zeros((1, 2, 2, 2), np.int64), {}, KernelTypeError),
    ("data", np.zeros((2, 2), np.float32), {}, KernelShapeError),
    ("data", np.zeros((1, 2, 0, 2), np.float32), {}, KernelShapeError),
    ("new_shape", None, {"new_shape": (4, 4)}, KernelShapeError),
    ("new_shape", None, {"new_shape": (4, 0, 4)}, KernelValueError),
    ("new_shape", None, {"new_shape": (4, 2.5, 4)}, KernelTypeError),
    ("new_shape", None, {"new_shape": 4}, KernelTypeError),
    ("current_spacing", None, {"current_spacing": (1.0, 1.0)}, KernelShapeError),
    ("current_spacing", None, {"current_spacing": (1.0, -1.0, 1.0)}, KernelValueError),
    ("new_spacing", None, {"new_spacing": (1.0, float("nan"), 1.0)}, KernelValueError),
    ("new_spacing", None, {"new_spacing": "abc"}, KernelTypeError),
    ("order", None, {"order": 2}, KernelValueError),
    ("order", None, {"order": 1.0}, KernelTypeError),
    ("order", None, {"order": True}, KernelTypeError),
    ("order_z", None, {"order_z": 5}, KernelValueError),
    ("force_separate_z", None, {"force_separate_z": "yes"}, KernelTypeError),
]


@pytest.mark.parametrize("impl", [K, R], ids=["rust", "reference"])
@pytest.mark.parametrize("arg,value,kw,exc", BAD)
def test_bad_data_input(impl, arg, value, kw, exc):
    data = value if arg == "data" else np.zeros((1, 2, 2, 2), np.float32)
    args = {**GOOD, **kw}
    with pytest.raises(exc) as info:
        impl.resample_data(data, args["new_shape"], args["current_spacing"], args["new_spacing"],
                           **{k: v for k, v in kw.items() if k in ("order", "order_z", "force_separate_z")})
    assert str(info.value).startswith(f"{arg}:"), str(info.value)


@pytest.mark.parametrize("impl", [K, R], ids=["rust", "reference"])
@pytest.mark.parametrize("seg,exc", [
    (np.zeros((1, 2, 2, 2), np.float32), KernelTypeError),
    (np.zeros((1, 2, 2, 2), np.int64), KernelTypeError),
    (np.zeros((1, 2, 2, 2, 2), np.int8), KernelShapeError),
    ((1, 2, 3), KernelTypeError),
])
def test_bad_seg_input(impl, seg, exc):
    with pytest.raises(exc) as info:
        impl.resample_seg(seg, (4, 4, 4), (1, 1, 1), (1, 1, 1))
    assert str(info.value).startswith("seg:"), str(info.value)


@pytest.mark.parametrize("impl", [K, R], ids=["rust", "reference"])
def test_bad_seg_order(impl):
    with pytest.raises(KernelValueError, match=r"^order: "):
        impl.resample_seg(np.zeros((1, 2, 2, 2), np.int8), (4, 4, 4), (1, 1, 1), (1, 1, 1), order=2)
    with pytest.raises(KernelValueError, match=r"^order_z: "):
        impl.resample_seg(np.zeros((1, 2, 2, 2), np.int8), (4, 4, 4), (1, 1, 1), (1, 1, 1), order_z=-1)
