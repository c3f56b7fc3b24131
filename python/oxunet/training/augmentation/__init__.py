"""nnU-Net's data augmentation on torch tensors: per sample in CPU loader workers, or batched on a GPU.

Build a pipeline for a plan's patch size from a preset (``default``, ``none``, ``no-mirroring``,
``da5``, ``brats2020``)::

    setup = configure_augmentation(patch_size, "default")  # initial (enlarged) patch, mirror axes
    aug = build_training_transforms(patch_size, "default", deep_supervision_scales=scales)
    data, segs = aug(data, seg, generator)                  # (c, *initial) -> (c, *patch), [targets]

Results are a function of the generator's state; given the same random parameters every step
agrees with batchgeneratorsv2 (bit for bit for the spatial transform and the label steps).
"""

from .pipeline import (
    OPS,
    Augmenter,
    build_training_transforms,
    build_validation_transforms,
    ds_scales_from_pooling,
)
from .presets import PRESETS, OneOf, Preset, Step, get_preset, preset_from_json, preset_to_json
from .setup import (
    ANISO_THRESHOLD,
    DEFAULT_PATCH_SCALE_RANGE,
    AugmentationSetup,
    configure_augmentation,
    default_rotation_and_dummy_2d,
    get_patch_size,
)

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
