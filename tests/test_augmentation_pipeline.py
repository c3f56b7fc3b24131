"""Built pipelines: same structure as nnU-Net's, shapes, determinism, identity, label steps vs batchgeneratorsv2."""

import numpy as np
import pytest
import torch

from oxunet.training.augmentation import (
    PRESETS,
    Preset,
    Step,
    build_training_transforms,
    build_validation_transforms,
    configure_augmentation,
    ds_scales_from_pooling,
    get_preset,
)
from oxunet.training.augmentation._base import Batch, Maybe, OneOf
from oxunet.training.augmentation.geometry import Mirror
from oxunet.training.augmentation.labels import downsample_seg
from peers import require

DS_3D = [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]


def case(shape, channels=2, n_labels=3, seed=0, prev=False):
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(channels, *shape, generator=g)
    seg = torch.randint(-1, n_labels, (2 if prev else 1, *shape), generator=g, dtype=torch.int16)
    return data, seg


# ---------------------------------------------------------------------------------------------
# structure vs nnU-Net's ComposeTransforms

OURS = {
    "SpatialTransform": "spatial", "GaussianNoise": "noise", "GaussianBlur": "blur",
    "MultiplicativeBrightness": "mult_brightness", "AdditiveBrightness": "add_brightness", "Contrast": "contrast",
    "SimulateLowResolution": "lowres", "Gamma": "gamma", "Mirror": "mirror", "Rot90": "rot90",
    "Transpose": "transpose", "MedianFilter": "median", "Sharpen": "sharpen", "BlankRectangle": "blank",
    "BrightnessGradient": "gradient", "LocalGamma": "local_gamma", "MaskImage": "mask", "RemoveLabel": "remove_label",
    "SegToOneHotData": "onehot", "RandomBinaryOperator": "binop", "RemoveRandomComponent": "remove_cc",
    "SegToRegions": "regions", "DownsampleSegForDS": "ds", "FoldToSlices": "fold", "UnfoldSlices": "unfold",
}
THEIRS = {
    "SpatialTransform": "spatial", "GaussianNoiseTransform": "noise", "GaussianBlurTransform": "blur",
    "MultiplicativeBrightnessTransform": "mult_brightness", "BrightnessAdditiveTransform": "add_brightness",
    "ContrastTransform": "contrast", "SimulateLowResolutionTransform": "lowres", "GammaTransform": "gamma",
    "MirrorTransform": "mirror", "Rot90Transform": "rot90", "TransposeAxesTransform": "transpose",
    "MedianFilterTransform": "median", "SharpeningTransform": "sharpen", "BlankRectangleTransform": "blank",
    "BrightnessGradientAdditiveTransform": "gradient", "LocalGammaTransform": "local_gamma",
    "MaskImageTransform": "mask",
    "RemoveLabelTransform": "remove_label", "MoveSegAsOneHotToDataTransform": "onehot",
    "ApplyRandomBinaryOperatorTransform": "binop",
    "RemoveRandomConnectedComponentFromOneHotEncodingTransform": "remove_cc",
    "ConvertSegmentationToRegionsTransform": "regions", "DownsampleSegForDSTransform": "ds",
    "Convert3DTo2DTransform": "fold", "Convert2DTo3DTransform": "unfold",
}


def _key_ours(t):
    kind = OURS[type(t).__name__]
    extra = {
        "spatial": lambda: (t.patch_size, t.p_rotation, t.p_rotation_per_axis, t.p_scaling, t.scaling,
                            t.p_synchronize_scaling, t.p_elastic, tuple(round(r, 6) for r in t.rotation)),
        "gamma": lambda: (t.p_invert_image, t.gamma),
        "contrast": lambda: (t.preserve_range, t.factor, t.p_per_channel),
        "blur": lambda: (t.sigma, t.synchronize_axes, t.p_per_channel),
        "lowres": lambda: (t.zoom, t.ignore_axes or None, t.p_per_channel),
        "mirror": lambda: t.axes,
        "ds": lambda: [tuple(s) for s in t.scales],
        "regions": lambda: [tuple(r) for r in t.regions],
        "binop": lambda: t.p_per_label,
        "remove_cc": lambda: t.p_per_label,
    }.get(kind, lambda: None)()
    return kind, extra


def _key_theirs(t):
    kind = THEIRS[type(t).__name__]
    extra = {
        "spatial": lambda: (tuple(t.patch_size), t.p_rotation, t.p_rot_per_axis, t.p_scaling, tuple(t.scaling),
                            t.p_synchronize_scaling_across_axes, t.p_elastic_deform,
                            tuple(round(r, 6) for r in t.rotation)),
        "gamma": lambda: (t.p_invert_image, tuple(t.gamma.contrast_range)),
        "contrast": lambda: (t.preserve_range, tuple(t.contrast_range.contrast_range), t.p_per_channel),
        "blur": lambda: (tuple(t.blur_sigma), t.synchronize_axes, t.p_per_channel),
        "lowres": lambda: (tuple(t.scale), t.ignore_axes, t.p_per_channel),
        "mirror": lambda: tuple(t.allowed_axes),
        "ds": lambda: [tuple(s) for s in t.ds_scales],
        "regions": lambda: [tuple(int(v) for v in r.tolist()) for r in t.regions],
        "binop": lambda: t.p_per_label,
        "remove_cc": lambda: t.p_per_label,
    }.get(kind, lambda: None)()
    return kind, extra


def flatten_ours(transforms):
    out = []
    for t in transforms:
        if isinstance(t, Maybe):
            out.append((t.p, *_key_ours(t.inner)))
        elif isinstance(t, OneOf):
            out.append(("one_of", tuple(flatten_ours(t.choices))))
        elif type(t).__name__ == "CenterCrop":
            continue
        else:
            out.append((1.0, *_key_ours(t)))
    return out


def flatten_theirs(transforms):
    out = []
    for t in transforms:
        name = type(t).__name__
        if name == "RandomTransform":
            out.append((t.apply_probability, *_key_theirs(t.transform)))
        elif name == "OneOfTransform":
            out.append(("one_of", tuple(flatten_theirs(t.list_of_transforms))))
        else:
            out.append((1.0, *_key_theirs(t)))
    return out


TRAINER_FOR = {"default": "nnUNetTrainer", "da5": "nnUNetTrainerDA5", "no-mirroring": "nnUNetTrainerNoMirroring"}


def _their_trainer(name):
    import importlib

    if name == "nnUNetTrainer":
        module = "nnunetv2.training.nnUNetTrainer.nnUNetTrainer"
    else:
        module = f"nnunetv2.training.nnUNetTrainer.variants.data_augmentation.{name}"
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("preset", ["default", "da5", "no-mirroring"])
@pytest.mark.parametrize("patch", [(40, 56, 40), (16, 160, 128), (64, 64, 64), (96, 80)])
@pytest.mark.parametrize("variant", ["plain", "cascade_regions_mask"])
def test_structure_matches_nnunet(preset, patch, variant):
    require("nnunetv2")
    p = get_preset(preset)
    setup = configure_augmentation(patch, patch_scale_range=p.patch_scale_range, mirror=p.mirror)
    ds = [[1.0] * len(patch), [0.5] * len(patch)]
    kw = dict(deep_supervision_scales=ds)
    if variant != "plain":
        kw.update(is_cascaded=True, foreground_labels=[1, 2, 3], regions=[(1, 2, 3), (2, 3), 3], ignore_label=4,
                  use_mask_for_norm=[True, False])
    theirs = _their_trainer(TRAINER_FOR[preset]).get_training_transforms(
        patch, setup.rotation, ds, setup.mirror_axes, setup.do_dummy_2d,
        use_mask_for_norm=kw.get("use_mask_for_norm"), is_cascaded=kw.get("is_cascaded", False),
        foreground_labels=kw.get("foreground_labels"), regions=kw.get("regions"), ignore_label=kw.get("ignore_label"))
    ours = build_training_transforms(patch, preset, **kw)
    assert flatten_ours(ours.transform.transforms) == flatten_theirs(theirs.transforms)


def test_validation_structure_and_output_match_nnunet():
    require("nnunetv2")
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    for kw in [{}, dict(regions=[(1, 2), 2], ignore_label=3), dict(is_cascaded=True, foreground_labels=[1, 2])]:
        ours = build_validation_transforms(deep_supervision_scales=DS_3D, **kw)
        theirs = nnUNetTrainer.get_validation_transforms(DS_3D, **kw)
        assert flatten_ours(ours.transform.transforms) == flatten_theirs(theirs.transforms)
        data, seg = case((16, 20, 12), prev=kw.get("is_cascaded", False), n_labels=4)
        out_data, out_segs = ours(data, seg)
        ref = theirs(image=data.clone(), segmentation=seg.clone())
        assert torch.equal(out_data, ref["image"])
        assert len(out_segs) == len(ref["segmentation"])
        for a, b in zip(out_segs, ref["segmentation"]):
            assert a.dtype == b.dtype and torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# behaviour


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("patch", [(20, 24, 16), (8, 40, 36), (32, 28)])
def test_shapes_dtypes_and_determinism(preset, patch):
    p = get_preset(preset)
    initial = configure_augmentation(patch, patch_scale_range=p.patch_scale_range).initial_patch_size
    ds = ds_scales_from_pooling([[1] * len(patch), [2] * len(patch), [2] * len(patch), [2] * len(patch)])
    aug = build_training_transforms(patch, preset, deep_supervision_scales=ds)
    data, seg = case(initial)
    outs = []
    for seed in range(6):
        out, segs = aug(data, seg, torch.Generator().manual_seed(seed))
        assert out.shape == (2, *patch) and out.dtype == torch.float32
        expected = [tuple(round(a * f) for a, f in zip(patch, sc)) for sc in [[1] * len(patch)] + ds[1:]]
        assert [s.shape[1:] for s in segs] == expected
        assert all(s.dtype == torch.int16 for s in segs) and int(segs[0].min()) >= 0
        again = aug(data, seg, torch.Generator().manual_seed(seed))
        assert torch.equal(out, again[0]) and all(torch.equal(a, b) for a, b in zip(segs, again[1]))
        outs.append(out)
    if preset != "none":
        assert any(not torch.equal(outs[0], o) for o in outs[1:])
    # inputs untouched
    assert torch.equal(data, case(initial)[0]) and torch.equal(seg, case(initial)[1])


def test_all_probabilities_zero_is_a_center_crop():
    zero = Preset("zero", "all off", tuple(
        Step(s.op, 0.0 if s.op != "spatial" else 1.0, {**s.args, "p_rotation": 0.0, "p_scaling": 0.0}
             if s.op == "spatial" else s.args)
        for s in get_preset("default").steps if s.op != "mirror"), mirror=False)
    patch = (20, 24, 16)
    initial = configure_augmentation(patch).initial_patch_size
    aug = build_training_transforms(patch, zero)
    data, seg = case(initial)
    out, out_seg = aug(data, seg, torch.Generator().manual_seed(0))
    crop = tuple(slice(s // 2 - p // 2, s // 2 - p // 2 + p) for s, p in zip(initial, patch))
    assert torch.equal(out, data[(slice(None), *crop)])
    assert torch.equal(out_seg, seg[(slice(None), *crop)].clamp(min=0))


def test_mirroring_is_reversible_and_covers_each_axis():
    data, seg = case((6, 7, 8))
    m = Mirror((0, 1, 2))
    flips = m.sample(torch.Generator().manual_seed(0), 64)
    seen = {a for f in flips if f for a in f}
    assert seen == {1, 2, 3}
    for f in flips[:8]:
        b = m.apply(Batch(data[None].clone(), seg[None].clone()), [f])
        once = b.data[0].clone()
        assert torch.equal(once, torch.flip(data, f) if f else data)
        back = m.apply(b, [f])
        assert torch.equal(back.data[0], data) and torch.equal(back.seg[0], seg)


def test_remove_label_and_mask_image():
    patch = (10, 12, 8)
    aug = build_training_transforms(patch, "none", use_mask_for_norm=[True, False])
    data, seg = case(patch)
    out, out_seg = aug(data, seg)
    outside = seg[0] < 0
    assert torch.all(out[0][outside] == 0) and torch.equal(out[1], data[1])
    assert torch.equal(out[0][~outside], data[0][~outside])
    assert int((out_seg == -1).sum()) == 0 and torch.equal(out_seg[seg >= 0], seg[seg >= 0])


@pytest.mark.parametrize("scales", [DS_3D, [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25]], [1, 0.5, 0.25]])
@pytest.mark.parametrize("dtype", [torch.int16, torch.bool, torch.uint8])
def test_deep_supervision_matches_nnunet(scales, dtype):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    for shape in [(20, 24, 18), (13, 17, 11)]:
        seg = torch.randint(0, 4, (2, *shape), generator=torch.Generator().manual_seed(len(shape)))
        seg = seg.to(dtype) if dtype != torch.bool else seg > 1
        ours = downsample_seg(seg[None], scales)
        theirs = DownsampleSegForDSTransform(scales)._apply_to_segmentation(seg.clone())
        for a, b in zip(ours, theirs):
            assert a.dtype == b.dtype and torch.equal(a[0], b)


def test_regions_and_cascade_onehot_match_nnunet():
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.nnunet.seg_to_onehot import MoveSegAsOneHotToDataTransform
    from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform

    data, seg = case((12, 10, 9), prev=True, n_labels=5)
    aug = build_validation_transforms(is_cascaded=True, foreground_labels=[1, 2, 4], regions=[(1, 2, 4), (2, 4), 4],
                                      ignore_label=3)
    out, out_seg = aug(data, seg)
    ref = MoveSegAsOneHotToDataTransform(1, [1, 2, 4])(image=data.clone(), segmentation=seg.clamp(min=0))
    ref = ConvertSegmentationToRegionsTransform([(1, 2, 4), (2, 4), 4, 3])(**ref)
    assert torch.equal(out, ref["image"]) and torch.equal(out_seg, ref["segmentation"])
    assert out.shape[0] == 2 + 3 and out_seg.dtype == torch.bool and out_seg.shape[0] == 4


def test_batched_call_is_deterministic_and_shaped():
    patch = (16, 20, 12)
    initial = configure_augmentation(patch).initial_patch_size
    aug = build_training_transforms(patch, "default", deep_supervision_scales=DS_3D)
    data = torch.randn(4, 2, *initial, generator=torch.Generator().manual_seed(0))
    seg = torch.randint(0, 3, (4, 1, *initial), dtype=torch.int16, generator=torch.Generator().manual_seed(1))
    a, sa = aug.batch(data, seg, torch.Generator().manual_seed(3))
    b, sb = aug.batch(data, seg, torch.Generator().manual_seed(3))
    assert a.shape == (4, 2, *patch) and [s.shape for s in sa] == [(4, 1, 16, 20, 12), (4, 1, 8, 10, 6),
                                                                   (4, 1, 4, 5, 3)]
    assert torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(sa, sb))
    # samples are augmented independently
    assert not torch.equal(a[0], a[1])


def test_step_errors_are_clear():
    bad = Preset("bad", "", (Step("gamma", 0.3, {"gama": (0.7, 1.5)}),))
    with pytest.raises(ValueError, match="'gamma': bad arguments"):
        build_training_transforms((16, 16, 16), bad)
    with pytest.raises(ValueError, match="unknown op 'warp'"):
        build_training_transforms((16, 16, 16), Preset("bad", "", (Step("warp"),)))
    with pytest.raises(ValueError, match="foreground_labels"):
        build_validation_transforms(is_cascaded=True)
    np.testing.assert_equal(ds_scales_from_pooling([[1, 1, 1], [2, 2, 1], [2, 2, 2]]), [[1, 1, 1], [0.5, 0.5, 1]])
