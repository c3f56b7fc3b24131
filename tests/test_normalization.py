"""Normalization schemes vs nnU-Net's classes of the same names."""

import numpy as np
import pytest

from oxunet.preprocessing import normalization as ours
from oxunet.preprocessing.normalization import NormalizationError, normalization_class, normalize
from peers import require

PROPS = {"mean": 41.5, "std": 12.25, "percentile_00_5": 5.0, "percentile_99_5": 90.0, "median": 40.0, "min": -3.0, "max": 120.0}


def _image(seed=0, shape=(9, 17, 13)):
    rng = np.random.default_rng(seed)
    img = rng.normal(40, 30, size=shape).astype(np.float32)
    img[:2] = 0  # a zero slab, outside the "nonzero mask"
    return img


def _seg(img):
    seg = np.zeros(img.shape, np.int8)
    seg[img == 0] = -1
    seg[4:6, 5:9, 3:7] = 1
    return seg


def _theirs(name, image, seg, use_mask):
    require("nnunetv2")
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as dns

    return getattr(dns, name)(use_mask_for_norm=use_mask, intensityproperties=dict(PROPS)).run(image.copy(), seg)


@pytest.mark.parametrize(
    "name,use_mask",
    [
        ("ZScoreNormalization", False),
        ("ZScoreNormalization", True),
        ("CTNormalization", False),
        ("CTNormalization", True),  # the mask is ignored by CT
        ("NoNormalization", False),
        ("RescaleTo01Normalization", False),
    ],
)
def test_scheme_matches_nnunet_bit_for_bit(name, use_mask):
    img = _image()
    seg = _seg(img)
    expected = _theirs(name, img, seg, use_mask)
    work = img.copy()
    got = normalization_class(name)(use_mask_for_norm=use_mask, intensityproperties=PROPS).run(work, seg)
    assert got.dtype == np.float32
    assert got is work  # in place, no copy of the volume
    np.testing.assert_array_equal(got, expected)


def test_masked_zscore_leaves_outside_untouched_and_normalizes_inside():
    img = _image(1)
    seg = _seg(img)
    img[0, 0, 0] = 0  # outside
    got = ours.ZScoreNormalization(True, {}).run(img.copy(), seg)
    assert np.all(got[seg < 0] == 0)
    inside = got[seg >= 0].astype(np.float64)
    assert abs(inside.mean()) < 1e-5 and abs(inside.std() - 1) < 1e-5


def test_rgb_matches_nnunet_and_rejects_values_outside_0_255():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(3, 20, 21)).astype(np.float32)
    expected = _theirs("RGBTo01Normalization", img, None, False)
    np.testing.assert_array_equal(ours.RGBTo01Normalization().run(img.copy()), expected)
    img[0, 0, 0] = 256
    with pytest.raises(NormalizationError, match=r"\[0, 255\]"):
        ours.RGBTo01Normalization().run(img)


def test_constant_image_uses_eps_like_nnunet():
    img = np.full((4, 5, 6), 7.0, np.float32)
    for name in ("ZScoreNormalization", "RescaleTo01Normalization"):
        expected = _theirs(name, img, None, False)
        np.testing.assert_array_equal(normalization_class(name)().run(img.copy()), expected)


def test_non_float32_input_is_converted():
    img = _image().astype(np.float64)
    got = ours.ZScoreNormalization().run(img)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _theirs("ZScoreNormalization", img, None, False))


def test_normalize_applies_one_scheme_per_channel_in_place():
    img = np.stack([_image(0), _image(1), _image(2)])
    seg = _seg(img[0])[None]
    schemes = ["CTNormalization", "ZScoreNormalization", "RescaleTo01Normalization"]
    props = {"0": PROPS, "1": PROPS, "2": PROPS}
    expected = np.stack([_theirs(s, img[c], seg[0], m) for c, (s, m) in enumerate(zip(schemes, [False, True, False]))])
    work = img.copy()
    out = normalize(work, seg, schemes, [False, True, False], props)
    assert out is work
    np.testing.assert_array_equal(out, expected)


def test_errors_name_the_problem():
    with pytest.raises(NormalizationError, match="unknown normalization scheme 'Foo'.*ZScoreNormalization"):
        normalization_class("Foo")
    with pytest.raises(NormalizationError, match="missing mean, std"):
        ours.CTNormalization(False, {"percentile_00_5": 0, "percentile_99_5": 1}).run(_image())
    with pytest.raises(NormalizationError, match="needs the seg"):
        ours.ZScoreNormalization(True, {}).run(_image())
    with pytest.raises(NormalizationError, match="2 normalization scheme"):
        normalize(_image()[None], None, ["ZScoreNormalization"] * 2, [False] * 2)
    with pytest.raises(NormalizationError, match="float32"):
        normalize(_image()[None].astype(np.float64), None, ["ZScoreNormalization"], [False])


def test_channel_name_mapping_matches_nnunet():
    require("nnunetv2")
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme

    for name in ("CT", "ct", "noNorm", "zscore", "rescale_to_0_1", "RGB_to_0_1", "T1", "FLAIR", "mr"):
        assert ours.normalization_for_channel_name(name).__name__ == get_normalization_scheme(name).__name__
    assert ours.ZScoreNormalization.leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true
    assert not ours.CTNormalization.leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true
