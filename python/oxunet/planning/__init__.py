"""Fingerprint and experiment planning."""

from .experiment import FingerprintError, import_nnunet_plans, load_fingerprint, plan_experiment
from .fingerprint import extract_fingerprint
from .planner import PlanningError, plan_from_fingerprint
from .model import Architecture, Configuration, Plans, as_plans
from .plans import PlansError, load_plans, resolve_configuration, validate_plans, write_plans
from .presets import PRESETS, PlannerPreset, resolve_planner
from .topology import pool_and_conv_props
from .vram import conv_feature_map_size

__all__ = [
    "Architecture",
    "Configuration",
    "Plans",
    "as_plans",
    "PRESETS",
    "FingerprintError",
    "PlannerPreset",
    "PlanningError",
    "PlansError",
    "conv_feature_map_size",
    "extract_fingerprint",
    "import_nnunet_plans",
    "load_fingerprint",
    "load_plans",
    "plan_experiment",
    "plan_from_fingerprint",
    "pool_and_conv_props",
    "resolve_configuration",
    "resolve_planner",
    "validate_plans",
    "write_plans",
]
