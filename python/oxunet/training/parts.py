"""What a TrainerConfig changes in the pieces the trainer builds: the architecture (norm, network
class) and the augmentation (preset, mirror axes, dummy 2D, interpolation orders)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from .kinds import NORMS

if TYPE_CHECKING:
    from .config import TrainerConfig
    from .fold import FoldContext


def effective_architecture(architecture: dict, config: "TrainerConfig") -> dict:
    """The plans' ``architecture`` entry with ``config.norm`` / ``config.network`` applied (a copy).

    ``norm="batch"`` is nnUNetTrainerBN: BatchNorm of the conv's dimensionality, eps 1e-5, affine."""
    arch = copy.deepcopy(dict(architecture))
    kwargs = dict(arch.get("arch_kwargs") or {})
    if config.norm is not None:
        if "norm_op" not in kwargs:
            raise ValueError(f"trainer {config.name!r}: norm={config.norm!r} needs an architecture with 'norm_op' "
                             "(nnU-Net's default U-Nets)")
        conv = str(kwargs.get("conv_op", "Conv3d"))
        dim = "2d" if conv.endswith("2d") else "3d"
        kwargs["norm_op"] = f"torch.nn.modules.{'batchnorm' if config.norm == 'batch' else 'instancenorm'}." \
                            f"{NORMS[config.norm]}{dim}"
        kwargs["norm_op_kwargs"] = {"eps": 1e-5, "affine": True}
    if config.network is not None:
        arch["network_class_name"] = config.network
    arch["arch_kwargs"] = kwargs
    return arch


def build_augmentation(config: "TrainerConfig", ctx: "FoldContext", ds_scales):
    """(training augmenter, validation augmenter, AugmentationSetup, test-time mirror axes)."""
    from .augmentation import build_training_transforms, build_validation_transforms, configure_augmentation
    from .augmentation.presets import load_preset, with_interpolation

    info, patch = ctx.info, ctx.patch_size
    preset = with_interpolation(load_preset(config.augmentation), config.seg_interpolation_order,
                                config.image_interpolation_order)
    setup = configure_augmentation(patch, patch_scale_range=preset.patch_scale_range, mirror=preset.mirror,
                                   dummy_2d=config.dummy_2d)
    train_axes = config.mirror_axes_for(len(patch), preset.mirror)
    test_axes = config.mirror_axes_for(len(patch), preset.mirror, inference=True)
    regions = info.foreground_regions if info.has_regions else None
    labels_kw = dict(deep_supervision_scales=ds_scales, foreground_labels=info.foreground_labels,
                     regions=regions, ignore_label=info.ignore_label, is_cascaded=bool(ctx.previous_stage))
    train_aug = build_training_transforms(patch, preset, rotation=setup.rotation, mirror_axes=train_axes,
                                          do_dummy_2d=setup.do_dummy_2d, use_mask_for_norm=list(ctx.configuration.use_mask_for_norm),
                                          **labels_kw)
    val_aug = build_validation_transforms(**labels_kw)
    return train_aug, val_aug, setup, test_axes
