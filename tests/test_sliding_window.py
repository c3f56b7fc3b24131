"""sliding_window_starts and gaussian_importance_map: Rust vs the NumPy twin vs nnunetv2."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from peers import require

import oxunet.kernels as k
import oxunet.kernels.reference as r
from oxunet.kernels import KernelShapeError, KernelTypeError, KernelValueError

IMPLS = [pytest.param(k, id="rust"), pytest.param(r, id="reference")]


def _nnunet():
    torch = require("torch")
    sw = require("nnunetv2.inference.sliding_window_prediction")
    return torch, sw


# ---------------------------------------------------------------------------------------------
# window starts


def test_starts_documented_example():
    assert k.sliding_window_starts((110,), (64,)) == [[0, 23, 46]]
    assert r.sliding_window_starts((110,), (64,)) == [[0, 23, 46]]
    assert k.sliding_window_starts((160, 320, 320), (128, 128, 128), 0.5) == [
        [0, 32],
        [0, 64, 128, 192],
        [0, 64, 128, 192],
    ]
    # a tie (2.5) rounds to even like np.round
    assert k.sliding_window_starts([9], [4], 0.625) == [[0, 2, 5]]


steps = st.one_of(st.sampled_from([0.5, 1.0, 0.25, 1 / 3, 0.75, 0.1]), st.floats(0.05, 1.0))


@given(data=st.data(), step=steps)
def test_starts_match_nnunet(data, step):
    _, sw = _nnunet()
    nd = data.draw(st.integers(1, 3))
    patch = data.draw(st.lists(st.integers(1, 64), min_size=nd, max_size=nd))
    image = [p + data.draw(st.integers(0, 300)) for p in patch]
    want = sw.compute_steps_for_sliding_window(tuple(image), tuple(patch), step)
    got = k.sliding_window_starts(image, patch, step)
    assert got == [list(map(int, s)) for s in want]
    assert r.sliding_window_starts(image, patch, step) == got
    for s, p, n in zip(got, patch, image):
        assert s[0] == 0 and s[-1] == n - p
        assert all(b - a <= math.ceil(p * step) for a, b in zip(s, s[1:]))


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    "args, exc, name",
    [
        (((10, 100), (64, 64), 0.5), KernelValueError, "image_size"),
        (((100,), (64,), 0.0), KernelValueError, "step_size"),
        (((100,), (64,), 1.5), KernelValueError, "step_size"),
        (((100,), (64,), float("nan")), KernelValueError, "step_size"),
        (((100,), (64,), "half"), KernelTypeError, "step_size"),
        (((100, 100), (64,), 0.5), KernelShapeError, "patch_size"),
        (((100,), (0,), 0.5), KernelValueError, "patch_size"),
        (((100.5,), (64,), 0.5), KernelTypeError, "image_size"),
        ((100, (64,), 0.5), KernelTypeError, "image_size"),
    ],
)
def test_starts_bad_input(mod, args, exc, name):
    with pytest.raises(exc) as ei:
        mod.sliding_window_starts(*args)
    assert str(ei.value).startswith(name)


# ---------------------------------------------------------------------------------------------
# Gaussian importance map

patch_sizes = st.integers(2, 3).flatmap(lambda nd: st.lists(st.integers(1, 40), min_size=nd, max_size=nd))


@given(patch=patch_sizes)
def test_gaussian_matches_nnunet_default(patch):
    torch, sw = _nnunet()
    want = sw.compute_gaussian(tuple(patch), 1.0 / 8, 10, dtype=torch.float32, device=torch.device("cpu")).numpy()
    got = k.gaussian_importance_map(patch)
    assert got.dtype == np.float32 and got.shape == tuple(patch)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=0)
    np.testing.assert_allclose(r.gaussian_importance_map(patch), want, rtol=1e-3, atol=0)
    assert got.max() == pytest.approx(10, rel=1e-6)
    assert got[tuple(p // 2 for p in patch)] == got.max()
    assert (got > 0).all()


@given(
    patch=st.integers(1, 3).flatmap(lambda nd: st.lists(st.integers(1, 33), min_size=nd, max_size=nd)),
    sigma_scale=st.floats(0.02, 0.6),
    vsf=st.floats(0.5, 100),
)
def test_gaussian_matches_nnunet_any_parameters(patch, sigma_scale, vsf):
    torch, sw = _nnunet()
    want = sw.compute_gaussian.__wrapped__(
        tuple(patch), sigma_scale, vsf, dtype=torch.float32, device=torch.device("cpu")
    ).numpy()
    got = k.gaussian_importance_map(patch, sigma_scale, vsf)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=0)
    np.testing.assert_allclose(r.gaussian_importance_map(patch, sigma_scale, vsf), want, rtol=1e-3, atol=0)


@pytest.mark.parametrize("patch", [(64, 64, 64), (128, 128, 128), (40, 33), (7, 160, 192), (1, 1, 1)])
def test_gaussian_float16_matches_nnunet(patch):
    torch, sw = _nnunet()
    want = sw.compute_gaussian.__wrapped__(patch, 1.0 / 8, 10, dtype=torch.float16, device=torch.device("cpu")).numpy()
    got = k.gaussian_importance_map(patch, dtype=np.float16)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(r.gaussian_importance_map(patch, dtype="float16"), want)
    assert (got > 0).all()  # fp16 underflow at the corners replaced by the smallest non-zero value


def test_gaussian_is_separable():
    g = k.gaussian_importance_map((9, 12, 15))
    c = (4, 6, 7)
    gx, gy, gz = g[:, c[1], c[2]], g[c[0], :, c[2]], g[c[0], c[1], :]
    outer = np.einsum("i,j,k->ijk", gx, gy, gz) / 10**2
    np.testing.assert_allclose(g, outer, rtol=1e-5)


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(patch_size=(0, 4)), KernelValueError, "patch_size"),
        (dict(patch_size=()), KernelShapeError, "patch_size"),
        (dict(patch_size=(4, 4), sigma_scale=0), KernelValueError, "sigma_scale"),
        (dict(patch_size=(4, 4), sigma_scale=float("inf")), KernelValueError, "sigma_scale"),
        (dict(patch_size=(4, 4), value_scaling_factor=-1), KernelValueError, "value_scaling_factor"),
        (dict(patch_size=(4, 4), dtype=np.float64), KernelTypeError, "dtype"),
        (dict(patch_size=(4, 4), dtype="int8"), KernelTypeError, "dtype"),
        (dict(patch_size="44"), KernelTypeError, "patch_size"),
    ],
)
def test_gaussian_bad_input(mod, kwargs, exc, name):
    with pytest.raises(exc) as ei:
        mod.gaussian_importance_map(**kwargs)
    assert str(ei.value).startswith(name)
