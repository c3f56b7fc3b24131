"""nnU-Net's data augmentation on torch tensors: per sample in CPU loader workers, or batched on a GPU.

Build a pipeline for a plan's patch size from a preset (``default``, ``none``, ``no-mirroring``,
``da5``, ``brats2020``)::

    setup = configure_augmentation(patch_size, "default")  # initial (enlarged) patch, mirror axes
    aug = build_training_transforms(patch_size, "default", deep_supervision_scales=scales)
    data, segs = aug(data, seg, generator)                  # (c, *initial) -> (c, *patch), [targets]

Importing this package does not import torch until a pipeline is built (``configure_augmentation``,
``ds_scales_from_pooling`` and the presets are NumPy-only). Results are a function of the
generator's state; given the same random parameters every step agrees with batchgeneratorsv2 (bit
for bit for the spatial transform and the label steps).
"""

from .presets import PRESETS, OneOf, Preset, Step, get_preset, preset_from_json, preset_to_json
from .setup import (
    ANISO_THRESHOLD,
    DEFAULT_PATCH_SCALE_RANGE,
    AugmentationSetup,
    configure_augmentation,
    default_rotation_and_dummy_2d,
    ds_scales_from_pooling,
    get_patch_size,
)

# the pipeline needs torch; the patch-size rule and presets do not (planning imports them)
_LAZY = {"OPS", "Augmenter", "build_training_transforms", "build_validation_transforms"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ANISO_THRESHOLD",
    "DEFAULT_PATCH_SCALE_RANGE",
    "OPS",
    "PRESETS",
    "AugmentationSetup",
    "Augmenter",
    "OneOf",
    "Preset",
    "Step",
    "build_training_transforms",
    "build_validation_transforms",
    "configure_augmentation",
    "default_rotation_and_dummy_2d",
    "ds_scales_from_pooling",
    "get_patch_size",
    "get_preset",
    "preset_from_json",
    "preset_to_json",
]
