"""The plans file ``<preprocessed>/DatasetXXX_Name/<plans_name>.json``: nnU-Net's JSON layout
(nnunetv2's ``PlansManager`` loads ours, we load theirs) plus an ``oxunet`` key with our
artefact version. Reading validates everything later stages rely on and names the file and
the entry when something is wrong."""

from __future__ import annotations

import copy

import json
from pathlib import Path

from .. import __version__
from ..io import atomic_path
from ..errors import PlanningError

FORMAT_VERSION = 1
JSON_INDENT = 4  # as nnU-Net's save_json

_TOP_LEVEL = ("dataset_name", "plans_name", "image_reader_writer", "transpose_forward", "transpose_backward", "configurations")
_CONFIG_KEYS = (
    "data_identifier", "preprocessor_name", "batch_size", "patch_size", "spacing", "normalization_schemes",
    "use_mask_for_norm", "resampling_fn_data", "resampling_fn_seg", "resampling_fn_probabilities",
    "resampling_fn_data_kwargs", "resampling_fn_seg_kwargs", "resampling_fn_probabilities_kwargs", "architecture",
)
_ARCH_KEYS = ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage_decoder")
NORMALIZATION_CLASSES = frozenset(
    {"CTNormalization", "NoNormalization", "ZScoreNormalization", "RescaleTo01Normalization", "RGBTo01Normalization"}
)


class PlansError(PlanningError):
    """A plans file is missing, unreadable or inconsistent; the message names the file and the entry."""


def oxunet_stamp(**extra) -> dict:
    return {"artefact": "plans", "format_version": FORMAT_VERSION, "version": __version__, **extra}


def resolve_configuration(plans: dict, name: str, source: str = "plans") -> dict:
    """A configuration with ``inherits_from`` applied (child keys override the parent's), as a deep
    copy that keeps the child's ``inherits_from`` key, exactly as nnU-Net's PlansManager resolves it."""
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict):
        raise PlansError(f"{source}: no 'configurations' mapping")
    chain: list[str] = []
    resolved: dict = {}
    while True:
        if name not in configurations:
            what = f"configuration {name!r}" if not chain else f"configuration {chain[-1]!r} inherits from {name!r}, which"
            raise PlansError(f"{source}: {what} does not exist (available: {', '.join(configurations)})")
        if name in chain:
            raise PlansError(f"{source}: circular inheritance {' -> '.join(chain + [name])}")
        chain.append(name)
        resolved = {**copy.deepcopy(configurations[name]), **resolved}
        parent = configurations[name].get("inherits_from")
        if parent is None:
            return resolved
        name = parent


def _check_configuration(cfg: dict, where: str) -> None:
    missing = [k for k in _CONFIG_KEYS if k not in cfg]
    if "architecture" in missing and "UNet_class_name" in cfg:
        raise PlansError(f"{where}: old nnU-Net plans format (no 'architecture' entry); re-plan the dataset")
    if missing:
        raise PlansError(f"{where}: missing {', '.join(missing)}")
    patch, spacing = cfg["patch_size"], cfg["spacing"]
    if not (isinstance(patch, list) and len(patch) in (2, 3) and all(isinstance(p, int) and p > 0 for p in patch)):
        raise PlansError(f"{where}: patch_size must be 2 or 3 positive integers, got {patch!r}")
    if not (isinstance(spacing, list) and len(spacing) == len(patch) and all(isinstance(s, (int, float)) and s > 0 for s in spacing)):
        raise PlansError(f"{where}: spacing must be {len(patch)} positive numbers (one per patch axis), got {spacing!r}")
    if not (isinstance(cfg["batch_size"], int) and cfg["batch_size"] >= 1):
        raise PlansError(f"{where}: batch_size must be a positive integer, got {cfg['batch_size']!r}")
    schemes, masks = cfg["normalization_schemes"], cfg["use_mask_for_norm"]
    if not isinstance(schemes, list) or not schemes or len(masks) != len(schemes):
        raise PlansError(f"{where}: normalization_schemes and use_mask_for_norm need one entry per channel")
    unknown = [s for s in schemes if s not in NORMALIZATION_CLASSES]
    if unknown:
        raise PlansError(f"{where}: unknown normalization scheme(s) {unknown} (known: {', '.join(sorted(NORMALIZATION_CLASSES))})")
    arch = cfg["architecture"]
    if not isinstance(arch, dict) or "network_class_name" not in arch or not isinstance(arch.get("arch_kwargs"), dict):
        raise PlansError(f"{where}: architecture needs network_class_name and arch_kwargs")
    kw = arch["arch_kwargs"]
    missing = [k for k in _ARCH_KEYS if k not in kw]
    if missing:
        raise PlansError(f"{where}: architecture.arch_kwargs is missing {', '.join(missing)}")
    n = kw["n_stages"]
    for key in ("features_per_stage", "kernel_sizes", "strides"):
        if not isinstance(kw[key], list) or len(kw[key]) != n:
            raise PlansError(f"{where}: arch_kwargs.{key} must have n_stages={n} entries")
    for key in ("kernel_sizes", "strides"):
        if any(not isinstance(v, list) or len(v) != len(patch) for v in kw[key]):
            raise PlansError(f"{where}: every entry of arch_kwargs.{key} needs {len(patch)} values (one per patch axis)")
    for axis in range(len(patch)):
        total = 1
        for s in kw["strides"]:
            total *= s[axis]
        if patch[axis] % total:
            raise PlansError(f"{where}: patch_size {patch} is not divisible by the total stride {total} along axis {axis}")


def validate_plans(plans: dict, source: str = "plans") -> None:
    """Raises :class:`PlansError` naming ``source`` and the entry for anything later stages
    could not use. Accepts plans written by nnU-Net (no ``oxunet`` key)."""
    if not isinstance(plans, dict):
        raise PlansError(f"{source}: expected a JSON object")
    missing = [k for k in _TOP_LEVEL if k not in plans]
    if "foreground_intensity_properties_per_channel" not in plans and "foreground_intensity_properties_by_modality" not in plans:
        missing.append("foreground_intensity_properties_per_channel")
    if missing:
        raise PlansError(f"{source}: missing {', '.join(missing)}")
    stamp = plans.get("oxunet")
    if stamp is not None:
        if stamp.get("artefact") != "plans":
            raise PlansError(f"{source}: this is an oxunet {stamp.get('artefact')!r} file, not plans")
        if int(stamp.get("format_version", 0)) > FORMAT_VERSION:
            raise PlansError(
                f"{source}: plans format version {stamp.get('format_version')} was written by a newer oxunet "
                f"({stamp.get('version')}); this one reads up to version {FORMAT_VERSION}"
            )
    fwd, bwd = plans["transpose_forward"], plans["transpose_backward"]
    if sorted(fwd) != [0, 1, 2] or [fwd.index(i) for i in range(3)] != bwd:
        raise PlansError(f"{source}: transpose_forward {fwd} / transpose_backward {bwd} are not inverse permutations of 0, 1, 2")
    configurations = plans["configurations"]
    if not isinstance(configurations, dict) or not configurations:
        raise PlansError(f"{source}: no configurations")
    for name in configurations:
        _check_configuration(resolve_configuration(plans, name, source), f"{source}: configuration {name!r}")


def load_plans(path: str | Path) -> dict:
    """Reads and validates a plans file (ours or nnU-Net's)."""
    path = Path(path)
    if not path.is_file():
        raise PlansError(f"{path}: plans file not found (run `oxunet plan -d <dataset>` first)")
    try:
        plans = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlansError(f"{path}: cannot be read as JSON ({e})") from None
    validate_plans(plans, str(path))
    return plans


def write_plans(plans: dict, path: str | Path, keep_custom_configurations: bool = True) -> dict:
    """Writes ``plans`` atomically. As nnU-Net does, configurations of an existing file that were
    not planned now (custom ones) are kept. Returns what was written."""
    path = Path(path)
    plans = dict(plans)
    if keep_custom_configurations and path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PlansError(f"{path}: the existing plans file cannot be read ({e}); delete it to re-plan") from None
        extra = {k: v for k, v in old.get("configurations", {}).items() if k not in plans["configurations"]}
        if extra:
            plans["configurations"] = {**plans["configurations"], **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(plans, indent=JSON_INDENT) + "\n")
    return plans
