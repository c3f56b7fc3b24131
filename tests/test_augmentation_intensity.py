"""Intensity transforms vs batchgeneratorsv2 given the same sampled parameters, plus their invariants."""

import numpy as np
import pytest
import torch

from oxunet.training.augmentation._base import Batch
from oxunet.training.augmentation.intensity import (
    AdditiveBrightness,
    Contrast,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    MultiplicativeBrightness,
    SimulateLowResolution,
)
from oxunet.training.augmentation.local import (
    BlankRectangle,
    BrightnessGradient,
    LocalGamma,
    MedianFilter,
    Sharpen,
    gaussian_bump,
    median_filter,
)
from peers import require


def image(c=3, shape=(14, 17, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, *shape, generator=g) * 2 + torch.linspace(0, 3, shape[-1])


def ours_apply(t, img, seed):
    """Sample our parameters for one sample and apply them; returns (output, params)."""
    batch = Batch(img[None].clone(), None)
    params = t.sample(torch.Generator().manual_seed(seed), batch)
    return t.apply(batch, params).data[0], params


def rows_of(params):
    return params["rows"].nonzero()[:, 0]


@pytest.mark.parametrize("seed", range(4))
def test_multiplicative_brightness_matches(seed):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform

    img = image(seed=seed)
    out, p = ours_apply(MultiplicativeBrightness((0.75, 1.25), p_per_channel=0.6), img, seed)
    idx = rows_of(p)
    ref = MultiplicativeBrightnessTransform((0.75, 1.25), False)._apply_to_image(
        img.clone(), apply_to_channel=idx, multipliers=p["factor"][idx].float())
    assert torch.equal(out, ref)


@pytest.mark.parametrize("preserve_range", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_contrast_matches_and_preserves_range(preserve_range, seed):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform

    img = image(seed=seed)
    out, p = ours_apply(Contrast((0.5, 2.0), preserve_range, p_per_channel=0.7), img, seed)
    idx = rows_of(p)
    ref = ContrastTransform((0.5, 2.0), preserve_range, False)._apply_to_image(
        img.clone(), apply_to_channel=idx, multipliers=p["factor"][idx].float())
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-6)  # the channel mean may sum in another order
    if preserve_range:
        flat_in, flat_out = img.flatten(1), out.flatten(1)
        assert torch.all(flat_out.amin(1) >= flat_in.amin(1)) and torch.all(flat_out.amax(1) <= flat_in.amax(1))


@pytest.mark.parametrize("invert", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_gamma_matches_and_retains_stats(invert, seed):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform

    img = image(seed=seed)
    out, p = ours_apply(Gamma((0.7, 1.5), p_invert_image=invert, p_retain_stats=0.7, p_per_channel=0.8), img, seed)
    idx = rows_of(p)
    ref = GammaTransform((0.7, 1.5), invert, False, 1, 1)._apply_to_image(
        img.clone(), apply_to_channel=idx, retain_stats=p["retain"][idx], invert_image=p["invert"][idx],
        gamma=p["gamma"][idx].float())
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    for r in idx[p["retain"][idx]].tolist():
        torch.testing.assert_close(out[r].mean(), img[r].mean(), rtol=0, atol=1e-4)
        torch.testing.assert_close(out[r].std(), img[r].std(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sync_axes", [False, True])
def test_gaussian_blur_matches(sync_axes):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform

    for seed in range(3):
        img = image(c=4, seed=seed)
        out, p = ours_apply(GaussianBlur((0.3, 1.5), sync_axes, p_per_channel=0.6), img, seed)
        mask = p["rows"]
        sigmas = [list(map(float, p["sigma"][r])) for r in rows_of(p)]
        ref = GaussianBlurTransform((0.3, 1.5), False, sync_axes, benchmark=False)._apply_to_image(
            img.clone(), apply_to_channel=mask, sigmas=sigmas)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_gaussian_blur_2d_batch_rows():
    # several samples, different kernels per row, 2D: each row equals blurring it alone
    img = torch.randn(3, 2, 20, 23, generator=torch.Generator().manual_seed(1))
    t = GaussianBlur((0.4, 1.6), False, p_per_channel=1.0)
    batch = Batch(img.clone(), None)
    params = t.sample(torch.Generator().manual_seed(3), batch)
    out = t.apply(batch, params).data
    for r in range(6):
        single = {"rows": torch.ones(1, dtype=torch.bool), "sigma": params["sigma"][r:r + 1]}
        alone = t.apply(Batch(img.view(6, 1, 20, 23)[r:r + 1].clone(), None), single).data
        torch.testing.assert_close(out.view(6, 20, 23)[r], alone[0, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("ignore_axes", [None, (0,)])
def test_simulate_low_resolution_matches(ignore_axes):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform

    for seed in range(3):
        img = image(c=4, seed=seed)
        out, p = ours_apply(SimulateLowResolution((0.3, 1.0), 0.5, ignore_axes), img, seed)
        idx = rows_of(p)
        scales = p["zoom"][idx][:, None].repeat(1, 3)
        if ignore_axes:
            scales[:, list(ignore_axes)] = 1
        ref = SimulateLowResolutionTransform((0.3, 1), False, True, ignore_axes)._apply_to_image(
            img.clone(), apply_to_channel=idx, scales=scales)
        assert torch.equal(out, ref)


def test_additive_brightness_matches():
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.intensity.brightness import BrightnessAdditiveTransform

    img = image()
    out, p = ours_apply(AdditiveBrightness(0.0, 0.5, p_per_channel=0.5), img, 2)
    idx = rows_of(p)
    ref = BrightnessAdditiveTransform(0, 0.5, False)._apply_to_image(
        img.clone(), apply_to_channel=idx, shift=p["shift"].float())
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_gaussian_noise_statistics_and_determinism():
    img = torch.zeros(2, 40, 40, 40)
    t = GaussianNoise((0.05, 0.05), p_per_channel=1.0, synchronize_channels=True)
    out, _ = ours_apply(t, img, 0)
    assert abs(float(out.std()) - 0.05) < 1e-3 and abs(float(out.mean())) < 1e-3
    assert not torch.equal(out[0], out[1])  # same sigma, independent fields
    again, _ = ours_apply(t, img, 0)
    assert torch.equal(out, again)


def test_median_filter_matches_scipy():
    from scipy.ndimage import median_filter as scipy_median

    vol = torch.randn(13, 11, 9, generator=torch.Generator().manual_seed(0))
    for size in range(2, 8):
        np.testing.assert_array_equal(median_filter(vol, size).numpy(), scipy_median(vol.numpy(), size=size))
    flat = torch.randn(17, 15, generator=torch.Generator().manual_seed(1))
    for size in (2, 3, 6):
        np.testing.assert_array_equal(median_filter(flat, size).numpy(), scipy_median(flat.numpy(), size=size))
    out, p = ours_apply(MedianFilter((2, 8), 1.0), image(c=2), 0)
    for r, size in zip(p["rows"], p["params"]):
        np.testing.assert_array_equal(out[r].numpy(), scipy_median(image(c=2)[r].numpy(), size=size))


def test_sharpen_matches():
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.noise.sharpen import SharpeningTransform

    for shape in [(14, 17, 12), (20, 21)]:
        img = image(shape=shape)
        out, p = ours_apply(Sharpen((0.1, 1.0), 0.6), img, 1)
        strengths = [0.0] * img.shape[0]
        for r, s in zip(p["rows"], p["params"]):
            strengths[r] = s
        ref = SharpeningTransform((0.1, 1.0))._apply_to_image(
            img.clone(), strengths=strengths, clamp_intensities=[False] * img.shape[0],
            apply_channel=[r in p["rows"] for r in range(img.shape[0])])
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_gaussian_bump_local_gamma_and_gradient_match():
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.local.brightness_gradient import BrightnessGradientAdditiveTransform
    from batchgeneratorsv2.transforms.local.local_gamma import LocalGammaTransform

    img = image(c=2)
    shape = tuple(img.shape[1:])
    out, p = ours_apply(LocalGamma(p_per_channel=1.0), img, 3)
    kernels, gammas = [], []
    for centres, sigmas, gamma in p["params"]:
        locs = iter([c / s for c, s in zip(centres, shape)])
        scales = iter(sigmas)
        lt = LocalGammaTransform(scale=lambda *a: next(scales), loc=lambda *a: next(locs))
        kernels.append(lt._generate_kernel(shape))
        gammas.append(gamma)
        np.testing.assert_allclose(gaussian_bump(shape, centres, sigmas).numpy(), kernels[-1], atol=1e-6)
    ref = LocalGammaTransform(1.0)._apply_to_image(img.clone(), kernels=kernels, gammas=gammas)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)

    out, p = ours_apply(BrightnessGradient(p_per_channel=1.0), img, 4)
    kernels = []
    for centres, sigmas, strength in p["params"]:
        k = gaussian_bump(shape, centres, sigmas).numpy()
        kernels.append(k / np.abs(k).max() * strength)
    ref = BrightnessGradientAdditiveTransform(1.0, mean_centered=False)._apply_to_image(img.clone(), kernels=kernels)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_blank_rectangles_fill_boxes_with_their_mean():
    img = image(c=2, shape=(30, 30, 30))
    out, p = ours_apply(BlankRectangle((30, 30, 30), (1, 5), 1.0), img, 0)
    for r, boxes in zip(p["rows"], p["params"]):
        assert 1 <= len(boxes) <= 4
        last = boxes[-1]
        assert torch.all(out[r][last] == out[r][last].flatten()[0])
        assert all(3 <= b.stop - b.start < 10 for b in last)
