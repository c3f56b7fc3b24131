"""Aggregator: Rust vs the NumPy twin vs a straightforward float64 accumulation vs nnU-Net's
torch bookkeeping; streaming, threads, torch inputs, label dtypes, bad input."""

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from peers import require

import oxunet.kernels as k
import oxunet.kernels.reference as r
from oxunet.kernels import KernelShapeError, KernelTypeError, KernelValueError
from oxunet.kernels._validate import prediction_array as _prediction_array

torch = require("torch")

IMPLS = [pytest.param(k, id="rust"), pytest.param(r, id="reference")]
KINDS = ["np32", "np16", "t32", "t16", "tbf16"]


# ---------------------------------------------------------------------------------------------
# helpers


def as_kind(pred: np.ndarray, kind: str):
    """`pred` (float32) handed over as numpy float32/float16 or a torch tensor."""
    if kind == "np32":
        return pred
    if kind == "np16":
        return pred.astype(np.float16)
    t = torch.from_numpy(pred)
    return {"t32": t, "t16": t.half(), "tbf16": t.bfloat16()}[kind]


def seen_values(x) -> np.ndarray:
    """The float32 values the aggregator sees for an input."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32)
    return x.float().numpy()


def window_slices(start, patch, shape):
    vol = tuple(slice(max(s, 0), min(s + p, n)) for s, p, n in zip(start, patch, shape))
    win = tuple(slice(v.start - s, v.stop - s) for v, s in zip(vol, start))
    return vol, win


def oracle(num_channels, shape, patch, windows, weight):
    """Straightforward float64 accumulation; 0 where nothing was covered. Returns (logits, wsum)."""
    acc = np.zeros((num_channels, *shape))
    wsum = np.zeros(shape)
    weight = weight.astype(np.float64)
    for start, pred in windows:
        vol, win = window_slices(start, patch, shape)
        acc[(slice(None),) + vol] += seen_values(pred).astype(np.float64)[(slice(None),) + win] * weight[win]
        wsum[vol] += weight[win]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(wsum > 0, acc / wsum, 0.0)
    return out, wsum


def expected_weight(weighting, dtype, patch):
    if weighting == "constant":
        return np.ones(patch, np.float32)
    return k.gaussian_importance_map(patch, dtype=dtype).astype(np.float32)


@st.composite
def cases(draw, max_windows=8):
    nd = draw(st.sampled_from([2, 3]))
    hi = 10 if nd == 3 else 16
    patch = tuple(draw(st.lists(st.integers(1, hi), min_size=nd, max_size=nd)))
    shape = tuple(draw(st.lists(st.integers(1, 20), min_size=nd, max_size=nd)))
    c = draw(st.integers(1, 4))
    if draw(st.booleans()):
        # nnU-Net's grid on the image padded to the patch (windows may reach past the end)
        step = draw(st.sampled_from([0.5, 1.0, 0.3]))
        grid = k.sliding_window_starts([max(n, p) for n, p in zip(shape, patch)], patch, step)
        starts = list(itertools.product(*grid))
        covered = True
    else:
        n = draw(st.integers(1, max_windows))
        starts = [
            tuple(draw(st.integers(-p + 1, s - 1)) for p, s in zip(patch, shape)) for _ in range(n)
        ]
        covered = False
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1.0, 4.0]))
    rng = np.random.default_rng(seed)
    preds = [(rng.standard_normal((c, *patch)) * scale).astype(np.float32) for _ in starts]
    return dict(c=c, shape=shape, patch=patch, starts=starts, preds=preds, covered=covered, scale=scale)


def make(mod, case, **kw):
    kw.setdefault("uncovered", "error" if case["covered"] else "zero")
    return mod.Aggregator(case["c"], case["shape"], case["patch"], **kw)


# ---------------------------------------------------------------------------------------------
# parity


@given(
    case=cases(),
    weighting=st.sampled_from(["gaussian", "constant"]),
    dtype=st.sampled_from(["float32", "float16"]),
    kind=st.sampled_from(KINDS),
)
def test_aggregator_matches_reference_and_oracle(case, weighting, dtype, kind):
    ours = make(k, case, weighting=weighting, dtype=dtype)
    ref = make(r, case, weighting=weighting, dtype=dtype)
    windows = []
    for start, pred in zip(case["starts"], case["preds"]):
        x = as_kind(pred, kind)
        ours.add(x, start)
        ref.add(x, start)
        windows.append((start, x))
    got = ours.finalize()
    assert got.dtype == np.float32 and got.shape == (case["c"], *case["shape"])
    # same float32/float16 arithmetic in the same order: bit-identical to the numpy twin
    np.testing.assert_array_equal(got, ref.finalize())

    weight = expected_weight(weighting, dtype, case["patch"])
    np.testing.assert_array_equal(ours.importance_map, weight)
    want, wsum = oracle(case["c"], case["shape"], case["patch"], windows, weight)
    vmax = max(float(np.abs(seen_values(x)).max()) for _, x in windows)
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * vmax)
    else:
        # float16 sums (nnU-Net's accumulation): a few float16 roundings per window; weights at
        # the very corners of a Gaussian window are float16 subnormals, so compare where the
        # summed weight is meaningful.
        ok = wsum >= 1e-2
        np.testing.assert_allclose(got[:, ok], want[:, ok], rtol=0, atol=1e-2 * vmax)
    assert (got[:, wsum == 0] == 0).all()

    labels = ours.argmax()
    assert labels.dtype == np.uint8 and labels.shape == case["shape"]
    np.testing.assert_array_equal(labels, got.argmax(0))
    np.testing.assert_array_equal(ref.argmax(), labels)


@given(case=cases(), output=st.sampled_from(["logits", "labels"]), dtype=st.sampled_from(["float32", "float16"]))
def test_streaming_equals_whole_volume(case, output, dtype):
    order = sorted(range(len(case["starts"])), key=lambda i: case["starts"][i][0])
    whole = make(k, case, dtype=dtype)
    stream = make(k, case, dtype=dtype, streaming=True, output=output)
    ref_stream = make(r, case, dtype=dtype, streaming=True, output=output)
    slabs, ref_slabs = [], []
    reached = 0
    for i in order:
        start, pred = case["starts"][i], case["preds"][i]
        whole.add(pred, start)
        stream.add(pred, start)
        ref_stream.add(pred, start)
        # everything below the current first-axis start is handed back at once
        reached = max(reached, min(max(start[0], 0), case["shape"][0]))
        new = stream.pop_ready()
        slabs += new
        ref_slabs += ref_stream.pop_ready()
        assert (slabs[-1][1] if slabs else 0) == reached
    slabs += stream.flush()
    ref_slabs += ref_stream.flush()
    assert stream.pop_ready() == [] and stream.flush() == []

    bounds = [(a, b) for a, b, _ in slabs]
    assert bounds == [(a, b) for a, b, _ in ref_slabs]
    assert bounds[0][0] == 0 and bounds[-1][1] == case["shape"][0]
    assert all(b0 == a1 for (_, b0), (a1, _) in zip(bounds, bounds[1:]))
    assert all(a < b for a, b in bounds)
    if output == "logits":
        got = np.concatenate([s for _, _, s in slabs], axis=1)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, whole.finalize())
        np.testing.assert_array_equal(np.concatenate([s for _, _, s in ref_slabs], axis=1), got)
    else:
        got = np.concatenate([s for _, _, s in slabs], axis=0)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, whole.argmax())
        np.testing.assert_array_equal(np.concatenate([s for _, _, s in ref_slabs], axis=0), got)


def _grid_case(shape, patch, c, seed=0, step=0.5):
    grid = k.sliding_window_starts(shape, patch, step)
    starts = list(itertools.product(*grid))
    rng = np.random.default_rng(seed)
    preds = [rng.standard_normal((c, *patch)).astype(np.float32) for _ in starts]
    return starts, preds


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_threaded_adds_equal_sequential(mod, dtype):
    shape, patch, c = (30, 40, 36), (12, 16, 16), 3
    starts, preds = _grid_case(shape, patch, c, seed=1, step=0.35)
    seq = mod.Aggregator(c, shape, patch, dtype=dtype)
    for s, p in zip(starts, preds):
        seq.add(p, s)
    par = mod.Aggregator(c, shape, patch, dtype=dtype)
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda sp: par.add(sp[1], sp[0]), zip(starts, preds)))
    a, b = seq.finalize(), par.finalize()
    tol = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    # labels agree wherever the top two channels are not within the tolerance of each other
    top2 = np.sort(a, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 4 * tol
    np.testing.assert_array_equal(par.argmax()[clear], seq.argmax()[clear])


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("c, dtype", [(256, np.uint8), (257, np.uint16), (300, np.uint16)])
def test_label_dtype_by_channel_count(mod, c, dtype):
    shape, patch = (7, 6, 9), (4, 4, 5)
    starts, preds = _grid_case(shape, patch, c, seed=c)
    agg = mod.Aggregator(c, shape, patch)
    stream = mod.Aggregator(c, shape, patch, streaming=True, output="labels")
    for s, p in zip(starts, preds):
        agg.add(p, s)
        stream.add(p, s)
    labels = agg.argmax()
    assert labels.dtype == dtype and agg.labels_dtype is dtype
    np.testing.assert_array_equal(labels, agg.finalize().argmax(0))
    if c > 256:
        assert labels.max() > 255
    slabs = stream.flush()
    assert all(s.dtype == dtype for _, _, s in slabs)
    np.testing.assert_array_equal(np.concatenate([s for _, _, s in slabs]), labels)


def test_argmax_ties_and_nan_like_numpy():
    # equal channels -> lowest index; NaN wins (first NaN), as numpy/torch argmax
    shape, patch = (2, 3, 4), (2, 3, 4)
    pred = np.zeros((4, *patch), np.float32)
    pred[1, 0] = 1.0
    pred[2, 0] = 1.0
    pred[3, 1, 0, 0] = np.nan
    pred[2, 1, 0, 1] = np.nan
    pred[3, 1, 0, 1] = np.nan
    for mod in (k, r):
        agg = mod.Aggregator(4, shape, patch, weighting="constant")
        agg.add(pred, (0, 0, 0))
        want = agg.finalize().argmax(0)
        labels = agg.argmax()
        np.testing.assert_array_equal(labels, want)
        assert labels[0, 0, 0] == 1 and labels[1, 0, 0] == 3 and labels[1, 0, 1] == 2 and labels[1, 1, 1] == 0


# ---------------------------------------------------------------------------------------------
# nnU-Net's own bookkeeping


@pytest.mark.parametrize("shape, patch", [((20, 37, 30), (8, 16, 12)), ((45, 50), (32, 24))])
def test_float16_matches_nnunet_torch_loop(shape, patch):
    sw = require("nnunetv2.inference.sliding_window_prediction")
    c = 3
    steps = sw.compute_steps_for_sliding_window(shape, patch, 0.5)
    starts = list(itertools.product(*steps))
    rng = np.random.default_rng(3)
    preds = [rng.standard_normal((c, *patch)).astype(np.float32) * 3 for _ in starts]
    gaussian = sw.compute_gaussian.__wrapped__(tuple(patch), 1.0 / 8, 10, device=torch.device("cpu"))
    logits = torch.zeros((c, *shape), dtype=torch.half)
    n_pred = torch.zeros(shape, dtype=torch.half)
    for s, p in zip(starts, preds):
        sl = tuple([slice(None)] + [slice(a, a + b) for a, b in zip(s, patch)])
        prediction = torch.from_numpy(p) * gaussian
        logits[sl] += prediction
        n_pred[sl[1:]] += gaussian
    want = (logits / n_pred).float().numpy()

    agg = k.Aggregator(c, shape, patch, dtype="float16")
    for s, p in zip(starts, preds):
        agg.add(torch.from_numpy(p), s)
    got = agg.finalize()
    # identical float16 sums; only the last division differs (float16 there, float32 here)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
    top2 = np.sort(got, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-2 * np.abs(top2[1])
    np.testing.assert_array_equal(agg.argmax()[clear], want.argmax(0)[clear])

    ours32 = k.Aggregator(c, shape, patch)
    for s, p in zip(starts, preds):
        ours32.add(p, s)
    # float32 sums vs nnU-Net's float16 ones: close wherever the summed weight is not a
    # float16 subnormal (the image corners, where nnU-Net's fp16 sums are coarse)
    ok = n_pred.float().numpy() >= 1e-2
    assert ok.mean() > 0.5
    np.testing.assert_allclose(ours32.finalize()[:, ok], want[:, ok], rtol=0, atol=1e-2 * 3 * 4)


# ---------------------------------------------------------------------------------------------
# torch inputs: read in place


def test_torch_inputs_are_read_in_place():
    base = torch.randn(3, 6, 8, 10)
    for t in (base, base.half(), base.bfloat16(), base.requires_grad_(False).clone().requires_grad_(True)):
        arr, _ = _prediction_array(t)
        assert arr.__array_interface__["data"][0] == t.data_ptr()
    strided = torch.randn(3, 12, 8, 20)[:, ::2, :, 5:15]
    arr, kind = _prediction_array(strided)
    assert kind == "f32" and arr.__array_interface__["data"][0] == strided.data_ptr()
    arr, kind = _prediction_array(strided.bfloat16().transpose(2, 3).transpose(2, 3))
    assert kind == "bf16" and arr.dtype == np.int16


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("tdtype", ["float32", "float16", "bfloat16"])
def test_torch_noncontiguous_inputs(mod, tdtype):
    shape, patch, c = (9, 10, 11), (5, 6, 7), 2
    starts, preds = _grid_case(shape, patch, c, seed=5)
    dt = getattr(torch, tdtype)
    agg = mod.Aggregator(c, shape, patch)
    plain = mod.Aggregator(c, shape, patch)
    for s, p in zip(starts, preds):
        # a strided view: every other voxel along the last axis, channels and axes permuted back
        big = torch.zeros((patch[2] * 2, c, patch[0], patch[1]), dtype=dt)
        big[::2] = torch.from_numpy(p).permute(3, 0, 1, 2).to(dt)
        view = big[::2].permute(1, 2, 3, 0)
        assert not view.is_contiguous()
        agg.add(view.requires_grad_(False), s)
        plain.add(view.contiguous().float().numpy(), s)
    np.testing.assert_array_equal(agg.finalize(), plain.finalize())


@pytest.mark.parametrize(
    "view",
    [np.asfortranarray, lambda p: p[:, ::-1, ::-1], lambda p: np.broadcast_to(p[:, :1], p.shape), lambda p: p[::-1]],
    ids=["fortran", "reversed", "broadcast", "channels-reversed"],
)
def test_numpy_noncontiguous_input(view):
    shape, patch, c = (8, 9), (5, 6), 3
    starts, preds = _grid_case(shape, patch, c, seed=6)
    a = k.Aggregator(c, shape, patch)
    b = k.Aggregator(c, shape, patch)
    for s, p in zip(starts, preds):
        v = view(p)
        a.add(v, s)
        b.add(np.ascontiguousarray(v), s)
    np.testing.assert_array_equal(a.finalize(), b.finalize())


# ---------------------------------------------------------------------------------------------
# coverage, overflow, bad input


@pytest.mark.parametrize("mod", IMPLS)
def test_uncovered_voxels(mod):
    pred = np.ones((2, 4, 4, 4), np.float32)
    agg = mod.Aggregator(2, (10, 10, 10), (4, 4, 4))
    agg.add(pred, (-2, 0, 8))
    for call in (agg.finalize, agg.argmax):
        with pytest.raises(KernelValueError) as ei:
            call()
        assert str(ei.value).startswith("uncovered") and "[0, 0, 0]" in str(ei.value)
    agg = mod.Aggregator(2, (10, 10, 10), (4, 4, 4), uncovered="zero")
    agg.add(pred * 3, (-2, 0, 8))
    out = agg.finalize()
    assert out[:, 0, 0, 8].tolist() == [3.0, 3.0] and (out[:, 5] == 0).all()
    assert (agg.argmax() == 0).all()
    # streaming: the gap is found when the planes are finished
    stream = mod.Aggregator(2, (10, 10, 10), (4, 4, 4), streaming=True)
    stream.add(pred, (0, 0, 0))
    with pytest.raises(KernelValueError) as ei:
        stream.add(pred, (6, 0, 0))
    assert str(ei.value).startswith("uncovered")


@pytest.mark.parametrize("mod", IMPLS)
def test_float16_overflow_raises(mod):
    pred = np.full((1, 4, 4), 3e4, np.float32)
    agg = mod.Aggregator(1, (4, 4), (4, 4), weighting="constant", dtype="float16")
    for _ in range(3):
        agg.add(pred, (0, 0))
    with pytest.raises(KernelValueError) as ei:
        agg.finalize()
    assert str(ei.value).startswith("dtype")
    agg32 = mod.Aggregator(1, (4, 4), (4, 4), weighting="constant")
    for _ in range(3):
        agg32.add(pred, (0, 0))
    assert (agg32.finalize() == 3e4).all()


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(num_channels=0), KernelValueError, "num_channels"),
        (dict(num_channels=70000), KernelValueError, "num_channels"),
        (dict(num_channels=2.0), KernelTypeError, "num_channels"),
        (dict(shape=(4, 4, 4, 4), patch_size=(2, 2, 2, 2)), KernelShapeError, "shape"),
        (dict(shape=(4,), patch_size=(2,)), KernelShapeError, "shape"),
        (dict(shape=(0, 4, 4)), KernelValueError, "shape"),
        (dict(patch_size=(2, 2)), KernelShapeError, "patch_size"),
        (dict(patch_size=(2, 0, 2)), KernelValueError, "patch_size"),
        (dict(weighting="gauss"), KernelValueError, "weighting"),
        (dict(dtype="float64"), KernelTypeError, "dtype"),
        (dict(dtype=np.int16), KernelTypeError, "dtype"),
        (dict(streaming="yes"), KernelTypeError, "streaming"),
        (dict(output="probabilities"), KernelValueError, "output"),
        (dict(uncovered="nan"), KernelValueError, "uncovered"),
        (dict(sigma_scale=0), KernelValueError, "sigma_scale"),
        (dict(value_scaling_factor=float("nan")), KernelValueError, "value_scaling_factor"),
    ],
)
def test_constructor_bad_input(mod, kwargs, exc, name):
    args = dict(num_channels=2, shape=(8, 8, 8), patch_size=(4, 4, 4))
    args.update(kwargs)
    with pytest.raises(exc) as ei:
        mod.Aggregator(**args)
    assert str(ei.value).startswith(name)


def _bad_adds():
    ok = np.zeros((2, 4, 4, 4), np.float32)
    return [
        (np.zeros((3, 4, 4, 4), np.float32), (0, 0, 0), KernelShapeError, "prediction"),  # channels
        (np.zeros((2, 4, 4, 5), np.float32), (0, 0, 0), KernelShapeError, "prediction"),  # patch
        (np.zeros((2, 4, 4), np.float32), (0, 0, 0), KernelShapeError, "prediction"),  # ndim
        (ok.astype(np.float64), (0, 0, 0), KernelTypeError, "prediction"),
        (ok.astype(np.int32), (0, 0, 0), KernelTypeError, "prediction"),
        (ok.tolist(), (0, 0, 0), KernelTypeError, "prediction"),
        (torch.zeros((2, 4, 4, 4), dtype=torch.float64), (0, 0, 0), KernelTypeError, "prediction"),
        (torch.zeros((2, 4, 4, 4), dtype=torch.int64), (0, 0, 0), KernelTypeError, "prediction"),
        (ok, (0, 0), KernelShapeError, "start"),
        (ok, (0, 0, 0.5), KernelTypeError, "start"),
        (ok, (8, 0, 0), KernelValueError, "start"),  # entirely outside
        (ok, (0, -4, 0), KernelValueError, "start"),
    ]


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("i", range(len(_bad_adds())))
def test_add_bad_input(mod, i):
    pred, start, exc, name = _bad_adds()[i]
    agg = mod.Aggregator(2, (8, 8, 8), (4, 4, 4))
    with pytest.raises(exc) as ei:
        agg.add(pred, start)
    assert str(ei.value).startswith(name), str(ei.value)


@pytest.mark.parametrize("mod", IMPLS)
def test_streaming_misuse(mod):
    pred = np.zeros((2, 4, 4, 4), np.float32)
    agg = mod.Aggregator(2, (8, 8, 8), (4, 4, 4), streaming=True, uncovered="zero")
    agg.add(pred, (4, 0, 0))
    with pytest.raises(KernelValueError) as ei:
        agg.add(pred, (2, 0, 0))  # out of order
    assert str(ei.value).startswith("start") and "2" in str(ei.value)
    for call in (agg.finalize, agg.argmax):
        with pytest.raises(KernelValueError) as ei:
            call()
        assert str(ei.value).startswith("streaming")
    agg2 = mod.Aggregator(2, (8, 8, 8), (4, 4, 4), streaming=True, uncovered="zero")
    agg2.add(pred, (0, 0, 0))
    agg2.flush()
    with pytest.raises(KernelValueError) as ei:
        agg2.add(pred, (4, 0, 0))
    assert str(ei.value).startswith("start")
    whole = mod.Aggregator(2, (8, 8, 8), (4, 4, 4))
    for call in (whole.flush, whole.pop_ready):
        with pytest.raises(KernelValueError) as ei:
            call()
        assert str(ei.value).startswith("streaming")


def test_2d_configuration_on_3d_volume_equals_per_slice():
    # nnU-Net's 2D configuration tiles every slice of a 3D volume: patch (1, py, pz)
    shape, patch2, c = (3, 21, 17), (12, 10), 2
    grid = k.sliding_window_starts(shape[1:], patch2)
    rng = np.random.default_rng(7)
    vol = k.Aggregator(c, shape, (1, *patch2))
    slices = [k.Aggregator(c, shape[1:], patch2) for _ in range(shape[0])]
    for z in range(shape[0]):
        for s in itertools.product(*grid):
            p = rng.standard_normal((c, *patch2)).astype(np.float32)
            vol.add(p[:, None], (z, *s))
            slices[z].add(p, s)
    np.testing.assert_array_equal(vol.finalize(), np.stack([a.finalize() for a in slices], axis=1))
    np.testing.assert_array_equal(vol.argmax(), np.stack([a.argmax() for a in slices]))
