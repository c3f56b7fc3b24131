"""Augmentation presets as plain data: an ordered list of steps, each an op name, a per-sample
probability and the op's arguments. The builder turns a preset into transforms; new variants are
new data, not subclasses. NumPy/torch-free so presets can be listed, validated and serialised cheaply.

Ops that take their geometry from the plan (patch size, rotation range, dummy 2D, mirror axes)
receive it from the builder; a preset only fixes probabilities and ranges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from .setup import DEFAULT_PATCH_SCALE_RANGE


@dataclass(frozen=True)
class Step:
    """Apply op ``op`` to a sample with probability ``p``, with keyword arguments ``args``."""

    op: str
    p: float = 1.0
    args: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class OneOf:
    """Pick one of ``steps`` uniformly per sample, then apply it with its own probability."""

    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Preset:
    """A named training augmentation.

    ``patch_scale_range`` feeds ``get_patch_size`` (None: no enlarged crop); ``mirror`` False
    disables training mirroring *and* test-time mirroring; ``cascade_p_per_label`` is the per-label
    probability of the cascade's morphology / connected-component steps.
    """

    name: str
    description: str
    steps: tuple[Step | OneOf, ...]
    patch_scale_range: tuple[float, float] | None = DEFAULT_PATCH_SCALE_RANGE
    mirror: bool = True
    cascade_p_per_label: float = 0.5


# nnUNetTrainer.get_training_transforms (batchgeneratorsv2, nnunetv2 2.8.1)
_DEFAULT_SPATIAL = Step("spatial", 1.0, {
    "p_rotation": 0.2, "p_scaling": 0.2, "scaling": (0.7, 1.4), "p_synchronize_scaling": 1.0,
    "p_elastic": 0.0,
})
_DEFAULT_INTENSITY = (
    Step("gaussian_noise", 0.1, {"sigma": (0.0, 0.1), "p_per_channel": 1.0, "synchronize_channels": True}),
    Step("gaussian_blur", 0.2, {"sigma": (0.5, 1.0), "synchronize_axes": False, "p_per_channel": 0.5}),
    Step("multiplicative_brightness", 0.15, {"multiplier": (0.75, 1.25), "p_per_channel": 1.0}),
    Step("contrast", 0.15, {"factor": (0.75, 1.25), "preserve_range": True, "p_per_channel": 1.0}),
    Step("simulate_low_resolution", 0.25, {"zoom": (0.5, 1.0), "p_per_channel": 0.5}),
    Step("gamma", 0.1, {"gamma": (0.7, 1.5), "p_invert_image": 1.0, "p_retain_stats": 1.0}),
    Step("gamma", 0.3, {"gamma": (0.7, 1.5), "p_invert_image": 0.0, "p_retain_stats": 1.0}),
)
_MIRROR = Step("mirror", 1.0)

DEFAULT = Preset(
    "default",
    "nnU-Net's default training augmentation (nnUNetTrainer)",
    (_DEFAULT_SPATIAL, *_DEFAULT_INTENSITY, _MIRROR),
)

NONE = Preset(
    "none",
    "no augmentation (nnUNetTrainerNoDA): the loader cuts the final patch; no test-time mirroring",
    (),
    patch_scale_range=None,
    mirror=False,
)

NO_MIRRORING = Preset(
    "no-mirroring",
    "default without mirroring, in training and at test time (nnUNetTrainerNoMirroring)",
    (_DEFAULT_SPATIAL, *_DEFAULT_INTENSITY),
    mirror=False,
)

# nnUNetTrainerDA5 (nnunetv2 2.8.1)
DA5 = Preset(
    "da5",
    "nnU-Net's heavier augmentation (nnUNetTrainerDA5)",
    (
        Step("spatial", 1.0, {
            "p_rotation": 0.4, "p_rotation_per_axis": 0.5, "p_scaling": 0.2, "scaling": (0.7, 1.43),
            "p_synchronize_scaling": 0.0, "p_elastic": 0.0,
        }),
        Step("rot90", 0.5, {"num_rotations": (0, 1, 2, 3)}),
        Step("transpose", 0.5),
        OneOf((
            Step("median_filter", 0.2, {"size": (2, 8), "p_per_channel": 0.5}),
            Step("gaussian_blur", 0.2, {"sigma": (0.3, 1.5), "synchronize_axes": True, "p_per_channel": 0.5}),
        )),
        Step("gaussian_noise", 0.1, {"sigma": (0.0, 0.1), "p_per_channel": 1.0, "synchronize_channels": True}),
        Step("additive_brightness", 0.1, {"mu": 0.0, "sigma": 0.5, "p_per_channel": 0.5}),
        OneOf((
            Step("contrast", 0.2, {"factor": (0.5, 2.0), "preserve_range": True, "p_per_channel": 0.5}),
            Step("contrast", 0.2, {"factor": (0.5, 2.0), "preserve_range": False, "p_per_channel": 0.5}),
        )),
        Step("simulate_low_resolution", 0.15, {"zoom": (0.25, 1.0), "p_per_channel": 0.5}),
        Step("gamma", 0.1, {"gamma": (0.7, 1.5), "p_invert_image": 1.0, "p_retain_stats": 1.0}),
        Step("gamma", 0.1, {"gamma": (0.7, 1.5), "p_invert_image": 1.0, "p_retain_stats": 1.0}),
        _MIRROR,
        Step("blank_rectangle", 0.4, {"num_rectangles": (1, 5), "p_per_channel": 0.5}),
        Step("brightness_gradient", 0.3, {"loc": (-0.5, 1.5), "strength": (1.0, 5.0), "p_per_channel": 0.5}),
        Step("local_gamma", 0.3, {"loc": (-0.5, 1.5), "gamma_low": (0.01, 0.8), "gamma_high": (1.5, 4.0),
                                  "p_per_channel": 0.5}),
        Step("sharpen", 0.2, {"strength": (0.1, 1.0), "p_per_channel": 0.5}),
    ),
    patch_scale_range=(0.7, 1.43),
    cascade_p_per_label=1.0,
)

# nnU-Net v1's BraTS 2020 trainer (nnUNetTrainerV2BraTSRegions_DA3: setup_DA_params) carried over to
# the v2 pipeline: more rotation/scaling (independent per axis 30% of the time), elastic
# deformation (v1's augment_spatial_2 parametrisation), additive brightness, wider gamma.
BRATS2020 = Preset(
    "brats2020",
    "heavier spatial + intensity augmentation of nnU-Net's BraTS 2020 submission",
    (
        Step("spatial", 1.0, {
            "p_rotation": 0.3, "p_scaling": 0.3, "scaling": (0.65, 1.6), "p_synchronize_scaling": 0.7,
            "p_elastic": 0.3, "elastic_scale": (0.0, 0.25), "elastic_magnitude": "relative",
            "p_synchronize_elastic_scale": 1.0,
        }),
        *_DEFAULT_INTENSITY[:2],
        Step("multiplicative_brightness", 0.15, {"multiplier": (0.75, 1.25), "p_per_channel": 1.0}),
        Step("additive_brightness", 0.3, {"mu": 0.0, "sigma": 0.2, "p_per_channel": 1.0}),
        Step("contrast", 0.15, {"factor": (0.75, 1.25), "preserve_range": True, "p_per_channel": 1.0}),
        Step("simulate_low_resolution", 0.25, {"zoom": (0.5, 1.0), "p_per_channel": 0.5}),
        Step("gamma", 0.1, {"gamma": (0.5, 1.6), "p_invert_image": 1.0, "p_retain_stats": 1.0}),
        Step("gamma", 0.3, {"gamma": (0.5, 1.6), "p_invert_image": 0.0, "p_retain_stats": 1.0}),
        _MIRROR,
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (DEFAULT, NONE, NO_MIRRORING, DA5, BRATS2020)}


def get_preset(preset: str | Preset) -> Preset:
    """A preset by name (or the preset itself); unknown names list the known ones."""
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"preset: unknown augmentation preset {preset!r}; known: {', '.join(PRESETS)}") from None


PRESET_FORMAT_VERSION = 1


def preset_to_json(preset: Preset) -> dict:
    """A preset as plain JSON data (``{"version": 1, "name": ..., "steps": [...], ...}``)."""

    def step(s):
        if isinstance(s, OneOf):
            return {"one_of": [step(x) for x in s.steps]}
        return {"op": s.op, "p": s.p, "args": {k: list(v) if isinstance(v, tuple) else v for k, v in s.args.items()}}

    return {
        "version": PRESET_FORMAT_VERSION,
        "name": preset.name,
        "description": preset.description,
        "steps": [step(s) for s in preset.steps],
        "patch_scale_range": None if preset.patch_scale_range is None else list(preset.patch_scale_range),
        "mirror": preset.mirror,
        "cascade_p_per_label": preset.cascade_p_per_label,
    }


def preset_from_json(data: dict) -> Preset:
    """Inverse of :func:`preset_to_json`; list-valued arguments become tuples. Unknown ops are
    reported when the preset is built."""
    if data.get("version") != PRESET_FORMAT_VERSION:
        raise ValueError(f"augmentation preset: unsupported format version {data.get('version')!r} "
                         f"(expected {PRESET_FORMAT_VERSION})")

    def step(s):
        if "one_of" in s:
            return OneOf(tuple(step(x) for x in s["one_of"]))
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in s.get("args", {}).items()}
        return Step(s["op"], float(s.get("p", 1.0)), args)

    scale = data.get("patch_scale_range", list(DEFAULT_PATCH_SCALE_RANGE))
    return Preset(
        name=data["name"],
        description=data.get("description", ""),
        steps=tuple(step(s) for s in data["steps"]),
        patch_scale_range=None if scale is None else tuple(scale),
        mirror=bool(data.get("mirror", True)),
        cascade_p_per_label=float(data.get("cascade_p_per_label", 0.5)),
    )


def load_preset(spec: str | Preset) -> Preset:
    """A preset by name, or read from a JSON file (:func:`preset_to_json`'s format) when ``spec``
    ends with ``.json`` or names a file; errors name the file."""
    import json
    from pathlib import Path

    if isinstance(spec, Preset):
        return spec
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not (spec.endswith(".json") or path.is_file()):
        return get_preset(spec)  # raises with the known names
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read augmentation preset ({e})") from None
    try:
        return preset_from_json(data)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not an augmentation preset ({e!r})") from None


def with_interpolation(preset: Preset, seg_order: int | None = None, image_order: int | None = None) -> Preset:
    """``preset`` with its spatial steps resampling segmentations / images with order 0 (nearest) or
    1 (linear; per label for segmentations), as nnU-Net's DASegOrd0 / DA5ord0 trainers."""
    modes = {0: "nearest", 1: "bilinear"}
    changes = {}
    if seg_order is not None:
        changes["seg_mode"] = modes[seg_order]
    if image_order is not None:
        changes["image_mode"] = modes[image_order]
    if not changes:
        return preset

    def apply(s):
        if isinstance(s, OneOf):
            return OneOf(tuple(apply(x) for x in s.steps))
        return Step(s.op, s.p, {**s.args, **changes}) if s.op == "spatial" else s

    return dataclasses.replace(preset, steps=tuple(apply(s) for s in preset.steps))
