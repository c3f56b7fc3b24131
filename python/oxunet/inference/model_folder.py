"""Trained-model folders (ours or nnU-Net v2's): plans.json, dataset.json, fold_N/<checkpoint>.

Layout as nnU-Net: ``<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>/`` holding
``plans.json``, ``dataset.json`` and ``fold_N/checkpoint_final.pth``. Checkpoints are read with
``torch.load(weights_only=True)`` and oxunet's numpy allow-list (never arbitrary unpickling).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dataset import DatasetInfo, load_dataset_json
from ..dataset.dataset_json import DatasetJsonError
from ..planning.plans import PlansError, resolve_configuration
from ..errors import InferenceError  # noqa: F401 - this stage's error, re-exported

__all__ = ["InferenceError", "ModelFolder", "available_folds", "default_folds", "load_model_folder"]


@dataclass
class ModelFolder:
    """Everything prediction needs from a trained-model folder."""

    path: Path
    plans: dict
    dataset_json: dict
    dataset: DatasetInfo
    configuration: str
    trainer_name: str
    folds: list[int | str]
    checkpoint_name: str
    state_dicts: list[dict] = field(repr=False)
    mirror_axes: tuple[int, ...] | None
    architecture: dict | None = None  # what an oxunet checkpoint records it was trained with (None: the plans')

    @property
    def config(self) -> dict:
        """The resolved configuration dict (``inherits_from`` applied)."""
        return resolve_configuration(self.plans, self.configuration)


def _fold_of(name: str) -> int | str | None:
    m = re.fullmatch(r"fold_(\d+|all)", name)
    if m is None:
        return None
    return m[1] if m[1] == "all" else int(m[1])


def available_folds(model_dir: str | os.PathLike, checkpoint: str = "checkpoint_final.pth") -> list[int | str]:
    """nnU-Net's ``auto_detect_available_folds``: every ``fold_N`` (not ``fold_all``) holding
    the checkpoint, in numeric order."""
    model_dir = Path(model_dir)
    found = []
    if model_dir.is_dir():
        for p in model_dir.iterdir():
            f = _fold_of(p.name)
            if f is not None and f != "all" and (p / checkpoint).is_file():
                found.append(f)
    return sorted(found)


def _splits_file(model_dir: Path) -> Path | None:
    """``splits_final.json`` beside the model, else in the preprocessed folder of its dataset."""
    local = model_dir / "splits_final.json"
    if local.is_file():
        return local
    try:
        from ..dataset import resolve_paths

        name = json.loads((model_dir / "plans.json").read_text()).get("dataset_name")
        pre = resolve_paths().preprocessed
    except Exception:  # noqa: BLE001 - no plans / no environment: no splits to go by
        return None
    if name and pre is not None and (Path(pre) / name / "splits_final.json").is_file():
        return Path(pre) / name / "splits_final.json"
    return None


def default_folds(model_dir: str | os.PathLike, checkpoint: str = "checkpoint_final.pth") -> tuple[list[int], str]:
    """The folds a prediction without explicit folds uses, and a sentence saying which and why
    others were skipped: the folds of the model's ``splits_final.json`` that hold the checkpoint
    (nnU-Net's auto-detection of every ``fold_N`` when no splits file is found)."""
    model_dir = Path(model_dir)
    present = sorted(f for p in model_dir.iterdir() if isinstance(f := _fold_of(p.name), int)) \
        if model_dir.is_dir() else []
    splits = _splits_file(model_dir)
    n_splits = None
    if splits is not None:
        try:
            n_splits = len(json.loads(splits.read_text()))
        except (OSError, ValueError, TypeError):
            n_splits = None
    skipped = []
    chosen = []
    for f in present:
        if n_splits is not None and f >= n_splits:
            skipped.append(f"fold_{f} (not one of the {n_splits} folds of {splits})")
        elif not (model_dir / f"fold_{f}" / checkpoint).is_file():
            skipped.append(f"fold_{f} (no {checkpoint})")
        else:
            chosen.append(f)
    if n_splits is not None:
        missing = [f for f in range(n_splits) if f not in present]
        skipped += [f"fold_{f} (not trained)" for f in missing]
        why = f"the folds of {splits} with {checkpoint}"
    else:
        why = f"every fold_N with {checkpoint} (no splits_final.json found)"
    note = f"folds used: {', '.join(map(str, chosen)) or 'none'} ({why})"
    if skipped:
        note += "; skipped: " + ", ".join(skipped)
    return chosen, note


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InferenceError(f"{path}: {what} not found (is {path.parent} a trained-model folder?)")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InferenceError(f"{path}: cannot be parsed as JSON ({e})") from None


def _configuration_from_name(model_dir: Path) -> str | None:
    parts = model_dir.name.split("__")
    return parts[2] if len(parts) == 3 else None


def load_model_folder(model_dir: str | os.PathLike, folds=None, checkpoint: str = "checkpoint_final.pth",
                      configuration: str | None = None) -> ModelFolder:
    """Reads a trained-model folder written by oxunet or by nnU-Net v2.

    Parameters
    ----------
    model_dir : the ``<trainer>__<plans>__<configuration>`` folder.
    folds : fold numbers (``0``, ``"3"``, ``"all"``); None = :func:`default_folds` (the folds of
        the model's splits holding the checkpoint; every ``fold_N`` without a splits file).
    checkpoint : file name inside each fold folder (``checkpoint_final.pth`` / ``checkpoint_best.pth``).
    configuration : override; default the first checkpoint's ``init_args.configuration``
        (as nnU-Net), else the folder name's third part.
    """
    from ..networks import load_nnunet_checkpoint, network_state_dict

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InferenceError(f"{model_dir}: model folder not found")
    dataset_json = _read_json(model_dir / "dataset.json", "dataset.json")
    plans = _read_json(model_dir / "plans.json", "plans.json")
    try:
        dataset = load_dataset_json(model_dir / "dataset.json")
    except DatasetJsonError as e:
        raise InferenceError(str(e)) from None

    if folds is None:
        folds, _ = default_folds(model_dir, checkpoint)
        if not folds:
            present = sorted(p.name for p in model_dir.glob("fold_*/*.pth"))
            hint = f" (found: {', '.join(present)}; pick one with -chk)" if present else ""
            raise InferenceError(
                f"{model_dir}: no fold_N/{checkpoint} found: the folder holds no trained checkpoints{hint}")
    elif isinstance(folds, (int, str)):
        folds = [folds]
    folds = [f if f == "all" else int(f) for f in folds]

    state_dicts, mirror_axes, ck_config, architecture = [], None, None, None
    trainer_name = "nnUNetTrainer"  # the first checkpoint's, below
    for i, f in enumerate(folds):
        path = model_dir / f"fold_{f}" / checkpoint
        if not path.is_file():
            present = sorted(p.name for p in path.parent.glob("*.pth")) if path.parent.is_dir() else []
            hint = f" (the fold folder holds: {', '.join(present)})" if present else ""
            raise InferenceError(f"{path}: checkpoint not found for fold {f}{hint}")
        try:
            ck = load_nnunet_checkpoint(path)
        except (ValueError, FileNotFoundError) as e:
            raise InferenceError(str(e)) from None
        if i == 0:
            trainer_name = str(ck.get("trainer_name", "nnUNetTrainer"))
            init_args: Any = ck.get("init_args") or {}
            ck_config = init_args.get("configuration") if isinstance(init_args, dict) else None
            axes = ck.get("inference_allowed_mirroring_axes")
            mirror_axes = tuple(int(a) for a in axes) if axes is not None else None
            ours = ck.get("oxunet")
            architecture = ours.get("architecture") if isinstance(ours, dict) else None
        state_dicts.append(network_state_dict(ck))
        del ck

    configuration = configuration or ck_config or _configuration_from_name(model_dir)
    known = sorted(plans.get("configurations", {}))
    if configuration is None:
        raise InferenceError(f"{model_dir}: cannot tell the configuration (checkpoint has no init_args.configuration "
                             f"and the folder name is not TRAINER__PLANS__CONFIGURATION); plans define {known}")
    try:
        resolve_configuration(plans, configuration)
    except (PlansError, KeyError) as e:
        raise InferenceError(f"{model_dir / 'plans.json'}: unknown configuration {configuration!r} "
                             f"(plans define {', '.join(known)}) [{e}]") from None
    return ModelFolder(model_dir, plans, dataset_json, dataset, configuration, trainer_name, folds, checkpoint,
                       state_dicts, mirror_axes, architecture)
