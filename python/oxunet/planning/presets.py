"""Planner presets: nnU-Net's ``ExperimentPlanner`` and its residual-encoder variants
(``ResEncUNetPlanner``, ``nnUNetPlannerResEncM/L/XL``), as data instead of subclasses."""

from __future__ import annotations

from dataclasses import dataclass

from .vram import PLAIN_UNET, RESENC_UNET


@dataclass(frozen=True)
class PlannerPreset:
    name: str  # our name (``default``, ``ResEncM``, ...)
    nnunet_class: str  # written as ``experiment_planner_used`` so nnU-Net can resolve it
    plans_name: str
    network_class_name: str
    blocks_encoder: tuple[int, ...]  # n_conv_per_stage (plain) or n_blocks_per_stage (residual)
    blocks_decoder: tuple[int, ...]
    reference_3d: float  # feature-map count that fits ``reference_gb`` at batch size 2 (3D)
    reference_2d: float  # ... at batch size 12 (2D)
    reference_gb: float  # also the default GPU memory target
    max_dataset_covered: float  # a batch covers at most this fraction of the dataset's voxels
    shrink_until_batch_of_two_fits: bool  # v2.3+ default rule; ResEnc planners shrink until estimate <= reference
    share_default_data: bool  # 2d/3d_fullres data identifiers stay nnUNetPlans_* (ResEnc)
    warn_on_memory_override: bool = False

    @property
    def is_residual(self) -> bool:
        return self.network_class_name == RESENC_UNET


_PLAIN_BLOCKS = (2,) * 14
_RES_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
_RES_DECODER = (1,) * 12

PRESETS: dict[str, PlannerPreset] = {
    p.name: p
    for p in (
        PlannerPreset("default", "ExperimentPlanner", "nnUNetPlans", PLAIN_UNET, _PLAIN_BLOCKS, _PLAIN_BLOCKS[:13],
                      560e6, 85e6, 8, 0.05, True, False),
        PlannerPreset("ResEnc", "ResEncUNetPlanner", "nnUNetResEncUNetPlans", RESENC_UNET, _RES_BLOCKS, _RES_DECODER,
                      680e6, 135e6, 8, 0.05, False, True),
        PlannerPreset("ResEncM", "nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans", RESENC_UNET, _RES_BLOCKS, _RES_DECODER,
                      680e6, 135e6, 8, 1.0, False, True, True),
        PlannerPreset("ResEncL", "nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans", RESENC_UNET, _RES_BLOCKS, _RES_DECODER,
                      2100e6, 380e6, 24, 1.0, False, True, True),
        PlannerPreset("ResEncXL", "nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans", RESENC_UNET, _RES_BLOCKS, _RES_DECODER,
                      3600e6, 560e6, 40, 1.0, False, True, True),
    )
}

_ALIASES = {p.nnunet_class.casefold(): p.name for p in PRESETS.values()}
_ALIASES.update({p.name.casefold(): p.name for p in PRESETS.values()})


def planner_names() -> list[str]:
    """Every accepted spelling: ours and nnU-Net's class names."""
    return list(PRESETS) + [p.nnunet_class for p in PRESETS.values()]


def resolve_planner(name: str | PlannerPreset) -> PlannerPreset:
    """A preset by our name or nnU-Net's class name (case-insensitive)."""
    if isinstance(name, PlannerPreset):
        return name
    key = _ALIASES.get(str(name).casefold())
    if key is None:
        raise ValueError(f"unknown planner {name!r}; choose one of {', '.join(planner_names())}")
    return PRESETS[key]
