"""What preprocessing needs from a plans dict (nnU-Net's plans JSON), resolved once per configuration.

Inheritance is resolved as nnU-Net's ``PlansManager`` does: a configuration with
``inherits_from`` is its resolved parent updated with its own keys; cycles are errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import cast

import numpy as np

__all__ = ["PlansError", "PreprocessingPlan", "Resampling", "resolve_configuration"]

from ..constants import ANISO_THRESHOLD  # noqa: E402 (nnU-Net's separate-z threshold; the kernels implement exactly this one)
SUPPORTED_PREPROCESSORS = ("DefaultPreprocessor",)


# One definition of plans errors and configuration inheritance, shared with the planner.
from ..planning.plans import PlansError, resolve_configuration  # noqa: E402


@dataclass(frozen=True)
class Resampling:
    """One resampling role of the plans (``resampling_fn_data``/``_seg`` and their kwargs)."""

    fn: str
    order: int = 3
    order_z: int = 0
    force_separate_z: bool | None = None

    @classmethod
    def from_plans(cls, fn: str, kwargs: Mapping | None, role: str) -> Resampling:
        kwargs = dict(kwargs or {})
        if fn == "no_resampling_hack":
            if kwargs:
                raise PlansError(f"plans: resampling_fn_{role}_kwargs must be empty for no_resampling_hack, got {kwargs}")
            return cls(fn)
        if fn != "resample_data_or_seg_to_shape":
            raise PlansError(
                f"plans: resampling_fn_{role} {fn!r} is not supported by oxunet "
                "(supported: resample_data_or_seg_to_shape, no_resampling_hack)"
            )
        threshold = kwargs.pop("separate_z_anisotropy_threshold", ANISO_THRESHOLD)
        if threshold != ANISO_THRESHOLD:
            raise PlansError(f"plans: resampling_fn_{role}_kwargs separate_z_anisotropy_threshold={threshold} is not supported (only {ANISO_THRESHOLD})")
        kwargs.pop("is_seg", None)  # the role decides
        unknown = set(kwargs) - {"order", "order_z", "force_separate_z"}
        if unknown:
            raise PlansError(f"plans: resampling_fn_{role}_kwargs has unsupported key(s) {', '.join(sorted(unknown))}")
        default_order = 3 if role == "data" else 1
        force = kwargs.get("force_separate_z")
        if force is not None and not isinstance(force, bool):
            raise PlansError(f"plans: resampling_fn_{role}_kwargs force_separate_z must be null, true or false, got {force!r}")
        return cls(fn, int(kwargs.get("order", default_order)), int(kwargs.get("order_z", 0)), force)

    def apply(self, array: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
              new_spacing: Sequence[float], is_seg: bool) -> np.ndarray:
        if self.fn == "no_resampling_hack":
            return array
        from ..kernels import resample_data, resample_seg

        fn = resample_seg if is_seg else resample_data
        return fn(array, new_shape, current_spacing, new_spacing, order=self.order, order_z=self.order_z,
                  force_separate_z=self.force_separate_z)


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class PreprocessingPlan:
    """The preprocessing-relevant part of one resolved configuration (picklable, sent to workers)."""

    configuration: str
    data_identifier: str
    spacing: tuple[float, ...]
    transpose_forward: tuple[int, ...]
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    intensity_properties: dict = field(hash=False)
    resampling_data: Resampling = Resampling("resample_data_or_seg_to_shape", 3)
    resampling_seg: Resampling = Resampling("resample_data_or_seg_to_shape", 1)
    image_reader_writer: str = "SimpleITKIO"
    patch_size: tuple[int, ...] = ()

    @classmethod
    def from_plans(cls, plans, configuration: str) -> PreprocessingPlan:
        """Reads and checks the fields preprocessing needs from the plans: a typed
        :class:`~oxunet.planning.model.Plans` (fields read as parsed) or the plans dict."""
        where = f"plans configuration {configuration!r}"
        v = _typed_fields(plans, configuration) if hasattr(plans, "transpose_forward") else \
            _dict_fields(plans, configuration, where)
        if v["preprocessor_name"] not in SUPPORTED_PREPROCESSORS:
            raise PlansError(f"{where}: preprocessor {v['preprocessor_name']!r} is not supported (only DefaultPreprocessor)")
        transpose = tuple(int(i) for i in v["transpose_forward"])
        if sorted(transpose) != [0, 1, 2]:
            raise PlansError(f"plans: transpose_forward must be a permutation of [0, 1, 2], got {list(transpose)}")
        spacing = _floats(v["spacing"])
        if len(spacing) not in (2, 3) or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise PlansError(f"{where}: spacing must be 2 or 3 positive numbers, got {list(spacing)}")
        schemes = tuple(str(s) for s in v["normalization_schemes"])
        use_mask = tuple(bool(b) for b in v["use_mask_for_norm"])
        if len(schemes) != len(use_mask):
            raise PlansError(f"{where}: {len(schemes)} normalization_schemes but {len(use_mask)} use_mask_for_norm entries")
        from .normalization import normalization_class

        for s in schemes:
            try:
                normalization_class(s)
            except ValueError as e:
                raise PlansError(f"{where}: {e}") from None
        from ..io import io_class_by_name

        reader = str(v["image_reader_writer"])
        if io_class_by_name(reader) is None:
            from ..io import IMAGE_IOS

            known = ", ".join(c.__name__ for c in IMAGE_IOS)
            raise PlansError(f"plans: image_reader_writer {reader!r} is not supported by oxunet ({known})")
        return cls(
            configuration=configuration,
            data_identifier=str(v["data_identifier"]),
            spacing=spacing,
            transpose_forward=transpose,
            normalization_schemes=schemes,
            use_mask_for_norm=use_mask,
            intensity_properties={str(k): dict(p) for k, p in v["intensity_properties"].items()},
            resampling_data=Resampling.from_plans(v["resampling_fn_data"], v["resampling_fn_data_kwargs"], "data"),
            resampling_seg=Resampling.from_plans(v["resampling_fn_seg"], v["resampling_fn_seg_kwargs"], "seg"),
            image_reader_writer=reader,
            patch_size=tuple(int(p) for p in v["patch_size"]),
        )

    @property
    def num_channels(self) -> int:
        return len(self.normalization_schemes)

    def target_spacing(self, original_spacing: Sequence[float]) -> list[float]:
        """The spacing a case is resampled to; 2D keeps the case's own (transposed) axis-0 spacing."""
        if len(self.spacing) < len(original_spacing):
            return [float(original_spacing[0]), *self.spacing]
        return list(self.spacing)

    def signature(self) -> dict:
        """Everything that changes the preprocessed arrays, as plain JSON (resume compares it)."""
        out = asdict(self)
        out.pop("configuration")
        out.pop("patch_size")  # affects no array (kept for storage tuning only)
        return out


def _typed_fields(plans, configuration: str) -> dict:
    """What PreprocessingPlan reads, from a parsed planning.model.Plans."""
    c = plans.configuration(configuration)
    return dict(preprocessor_name=c.preprocessor_name, transpose_forward=plans.transpose_forward, spacing=c.spacing,
                normalization_schemes=c.normalization_schemes, use_mask_for_norm=c.use_mask_for_norm,
                image_reader_writer=plans.image_reader_writer,
                intensity_properties=plans.foreground_intensity_properties_per_channel or {},
                data_identifier=c.data_identifier, resampling_fn_data=c.resampling_fn_data,
                resampling_fn_data_kwargs=dict(c.resampling_fn_data_kwargs), resampling_fn_seg=c.resampling_fn_seg,
                resampling_fn_seg_kwargs=dict(c.resampling_fn_seg_kwargs), patch_size=c.patch_size)


def _dict_fields(plans: Mapping, configuration: str, where: str) -> dict:
    """What PreprocessingPlan reads, from a plans dict (partial plans allowed where a default exists)."""
    # it only reads plans (its annotation says dict until the planning branch widens it to Mapping)
    cfg = resolve_configuration(cast(dict, plans), configuration)

    def need(key, source=cfg, place=where):
        if key not in source:
            raise PlansError(f"{place}: missing {key!r}")
        return source[key]

    props = plans.get("foreground_intensity_properties_per_channel")
    if props is None:
        props = plans.get("foreground_intensity_properties_by_modality", {})  # nnU-Net's old key
    return dict(preprocessor_name=cfg.get("preprocessor_name", "DefaultPreprocessor"),
                transpose_forward=need("transpose_forward", plans, "plans"), spacing=need("spacing"),
                normalization_schemes=need("normalization_schemes"), use_mask_for_norm=need("use_mask_for_norm"),
                image_reader_writer=plans.get("image_reader_writer", "SimpleITKIO"), intensity_properties=props,
                data_identifier=need("data_identifier"), resampling_fn_data=need("resampling_fn_data"),
                resampling_fn_data_kwargs=cfg.get("resampling_fn_data_kwargs"), resampling_fn_seg=need("resampling_fn_seg"),
                resampling_fn_seg_kwargs=cfg.get("resampling_fn_seg_kwargs"), patch_size=cfg.get("patch_size", ()))
