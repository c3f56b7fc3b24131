"""Build nnU-Net's training / validation augmentation from a preset.

Order (nnUNetTrainer.get_training_transforms): [fold slices if dummy 2D] → preset steps (spatial
first, mirror where the preset puts it, unfold right after spatial) → mask image (if any channel
was normalised inside a mask) → seg -1 → 0 → cascade (previous-stage seg as one-hot data, random
morphology, random component removal) → regions → deep-supervision targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from . import _base
from ._base import Batch, Compose, Maybe, Transform, pair
from .cascade import RandomBinaryOperator, RemoveRandomComponent
from .geometry import FoldToSlices, Mirror, Rot90, Transpose, UnfoldSlices, equal_size_axes
from .intensity import (
    AdditiveBrightness,
    Contrast,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    MultiplicativeBrightness,
    SimulateLowResolution,
)
from .labels import DownsampleSegForDS, MaskImage, RemoveLabel, SegToOneHotData, SegToRegions
from .local import BlankRectangle, BrightnessGradient, LocalGamma, MedianFilter, Sharpen
from .presets import OneOf, Preset, Step, get_preset
from .setup import configure_augmentation
from .spatial import SpatialTransform, center_crop


@dataclass(frozen=True)
class Context:
    """What ops take from the plan rather than from the preset."""

    patch_size: tuple[int, ...]
    rotation: tuple[float, float]
    do_dummy_2d: bool
    mirror_axes: tuple[int, ...] | None


def _spatial(ctx: Context, **args) -> Transform:
    patch = ctx.patch_size[1:] if ctx.do_dummy_2d else ctx.patch_size
    return SpatialTransform(patch, ctx.rotation, **args)


def _mirror(ctx: Context) -> Transform | None:
    return Mirror(ctx.mirror_axes) if ctx.mirror_axes else None


def _rot90(ctx: Context, num_rotations=(1, 2, 3)) -> Transform | None:
    axes = equal_size_axes(ctx.patch_size)
    return Rot90(axes, num_rotations) if axes else None


def _transpose(ctx: Context) -> Transform | None:
    axes = equal_size_axes(ctx.patch_size)
    return Transpose(axes) if axes else None


def _low_res(ctx: Context, **args) -> Transform:
    return SimulateLowResolution(ignore_axes=(0,) if ctx.do_dummy_2d else None, **args)


OPS: dict[str, Callable[..., Transform | None]] = {
    "spatial": _spatial,
    "mirror": _mirror,
    "rot90": _rot90,
    "transpose": _transpose,
    "gaussian_noise": lambda ctx, **a: GaussianNoise(**a),
    "gaussian_blur": lambda ctx, **a: GaussianBlur(**a),
    "multiplicative_brightness": lambda ctx, **a: MultiplicativeBrightness(**a),
    "additive_brightness": lambda ctx, **a: AdditiveBrightness(**a),
    "contrast": lambda ctx, **a: Contrast(**a),
    "simulate_low_resolution": _low_res,
    "gamma": lambda ctx, **a: Gamma(**a),
    "median_filter": lambda ctx, **a: MedianFilter(**a),
    "sharpen": lambda ctx, **a: Sharpen(**a),
    "blank_rectangle": lambda ctx, **a: BlankRectangle(ctx.patch_size, **a),
    "brightness_gradient": lambda ctx, **a: BrightnessGradient(**a),
    "local_gamma": lambda ctx, **a: LocalGamma(**a),
}


def _build_step(step: Step, ctx: Context) -> Transform | None:
    try:
        factory = OPS[step.op]
    except KeyError:
        raise ValueError(f"augmentation step: unknown op {step.op!r}; known: {', '.join(OPS)}") from None
    try:
        inner = factory(ctx, **dict(step.args))
    except TypeError as e:
        raise ValueError(f"augmentation step {step.op!r}: bad arguments {dict(step.args)!r} ({e})") from None
    if inner is None:
        return None
    return inner if step.op == "spatial" or step.p >= 1 else Maybe(inner, step.p)


class CenterCrop(Transform):
    """Cut the final patch from the centre (when a preset has no spatial step)."""

    def __init__(self, patch_size: Sequence[int], pad_label: int = -1):
        self.patch_size, self.pad_label = tuple(patch_size), pad_label

    def __call__(self, batch: Batch, gen: torch.Generator) -> Batch:
        if tuple(batch.data.shape[2:]) == self.patch_size:
            return batch
        data = torch.stack([center_crop(d, self.patch_size, 0) for d in batch.data])
        seg = None if batch.seg is None else torch.stack([center_crop(s, self.patch_size, self.pad_label)
                                                          for s in batch.seg])
        return Batch(data, seg, batch.folded)


class Augmenter:
    """A built pipeline. ``augmenter(data, seg, generator)`` augments one sample ``(c, *spatial)``;
    ``augmenter.batch(data, seg, generator)`` a batch ``(b, c, *spatial)`` (e.g. on a GPU).

    Returns ``(data, seg)`` where seg is a tensor, or a list of tensors (one per deep-supervision
    scale). The same generator state gives the same result; without a generator a fresh one is
    seeded from torch's global RNG. Inputs are not modified.
    """

    def __init__(self, transform: Compose, description: str):
        self.transform, self.description = transform, description
        # a leading spatial step writes fresh tensors; otherwise copy so callers' tensors stay intact
        first = [t for t in transform.transforms if not isinstance(t, FoldToSlices)][:1]
        self._copies_input = bool(first) and isinstance(first[0], SpatialTransform)

    def __repr__(self) -> str:
        return f"Augmenter({self.description}: {self.transform!r})"

    def batch(self, data: torch.Tensor, seg: torch.Tensor | None, generator: torch.Generator | None = None):
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        if self._copies_input:
            b = Batch(data.contiguous(), None if seg is None else seg.contiguous())
        else:
            b = Batch(data.clone(memory_format=torch.contiguous_format),
                      None if seg is None else seg.clone(memory_format=torch.contiguous_format))
        out = self.transform(b, generator)
        return out.data, out.seg

    def __call__(self, data: torch.Tensor, seg: torch.Tensor | None, generator: torch.Generator | None = None):
        out, out_seg = self.batch(data[None], None if seg is None else seg[None], generator)
        if isinstance(out_seg, list):
            return out[0], [s[0] for s in out_seg]
        return out[0], None if out_seg is None else out_seg[0]


def _label_tail(
    *,
    use_mask_for_norm: Sequence[bool] | None,
    deep_supervision_scales,
    is_cascaded: bool,
    foreground_labels: Sequence[int] | None,
    regions,
    ignore_label: int | None,
    cascade_p_per_label: float | None,
) -> list[Transform]:
    tail: list[Transform] = []
    if use_mask_for_norm is not None and any(use_mask_for_norm):
        tail.append(MaskImage([i for i, m in enumerate(use_mask_for_norm) if m]))
    tail.append(RemoveLabel(-1, 0))
    if is_cascaded:
        if foreground_labels is None:
            raise ValueError("foreground_labels: required for cascade augmentation (is_cascaded=True)")
        labels = list(foreground_labels)
        tail.append(SegToOneHotData(labels, source=1))
        if cascade_p_per_label is not None:
            channels = list(range(-len(labels), 0))
            tail.append(Maybe(RandomBinaryOperator(channels, (1.0, 8.0), cascade_p_per_label), 0.4))
            tail.append(Maybe(RemoveRandomComponent(channels, 0.15, cascade_p_per_label), 0.2))
    if regions is not None:
        tail.append(SegToRegions(list(regions) + [ignore_label] if ignore_label is not None else list(regions)))
    if deep_supervision_scales is not None:
        tail.append(DownsampleSegForDS(deep_supervision_scales))
    return tail


_UNSET = object()


def build_training_transforms(
    patch_size: Sequence[int],
    preset: str | Preset = "default",
    *,
    rotation: tuple[float, float] | None = None,
    mirror_axes=_UNSET,
    do_dummy_2d: bool | None = None,
    deep_supervision_scales: Sequence | None = None,
    is_cascaded: bool = False,
    foreground_labels: Sequence[int] | None = None,
    regions: Sequence | None = None,
    ignore_label: int | None = None,
    use_mask_for_norm: Sequence[bool] | None = None,
) -> Augmenter:
    """nnU-Net's training augmentation for the plan's (final) ``patch_size``.

    Inputs are the enlarged crop (``configure_augmentation(patch_size, ...).initial_patch_size``);
    outputs have ``patch_size``. ``rotation``, ``mirror_axes`` and ``do_dummy_2d`` default to
    nnU-Net's rule for this patch size and preset. Seg input has the label map in channel 0 and,
    for a cascade, the previous stage's seg in channel 1.
    """
    preset = get_preset(preset)
    patch_size = tuple(int(p) for p in patch_size)
    setup = configure_augmentation(patch_size, preset, dummy_2d=do_dummy_2d)
    ctx = Context(
        patch_size,
        pair(rotation) if rotation is not None else setup.rotation,
        setup.do_dummy_2d if do_dummy_2d is None else bool(do_dummy_2d and len(patch_size) == 3),
        setup.mirror_axes if mirror_axes is _UNSET else (tuple(mirror_axes) if mirror_axes else None),
    )
    transforms: list[Transform] = []
    has_spatial = any(isinstance(s, Step) and s.op == "spatial" for s in preset.steps)
    if not has_spatial:
        transforms.append(CenterCrop(patch_size))
    for step in preset.steps:
        if isinstance(step, OneOf):
            choices = [_build_step(s, ctx) for s in step.steps]
            transforms.append(_base.OneOf([c if c is not None else Compose([]) for c in choices]))
            continue
        built = _build_step(step, ctx)
        if built is None:
            continue
        if step.op == "spatial" and ctx.do_dummy_2d:
            transforms += [FoldToSlices(), built, UnfoldSlices()]
        else:
            transforms.append(built)
    transforms += _label_tail(
        use_mask_for_norm=use_mask_for_norm,
        deep_supervision_scales=deep_supervision_scales,
        is_cascaded=is_cascaded,
        foreground_labels=foreground_labels,
        regions=regions,
        ignore_label=ignore_label,
        cascade_p_per_label=preset.cascade_p_per_label,
    )
    return Augmenter(Compose(transforms), f"training[{preset.name}] patch {patch_size}")


def build_validation_transforms(
    *,
    deep_supervision_scales: Sequence | None = None,
    is_cascaded: bool = False,
    foreground_labels: Sequence[int] | None = None,
    regions: Sequence | None = None,
    ignore_label: int | None = None,
) -> Augmenter:
    """nnU-Net's validation transforms: -1 → 0, cascade one-hot, regions, deep-supervision targets."""
    tail = _label_tail(
        use_mask_for_norm=None,
        deep_supervision_scales=deep_supervision_scales,
        is_cascaded=is_cascaded,
        foreground_labels=foreground_labels,
        regions=regions,
        ignore_label=ignore_label,
        cascade_p_per_label=None,
    )
    return Augmenter(Compose(tail), "validation")
