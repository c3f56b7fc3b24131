"""Trainer variants as configuration: one dataclass instead of one subclass per variant.

nnU-Net selects behaviour with trainer class names (``-tr nnUNetTrainer_250epochs``); we map
those names to :class:`TrainerConfig` values (:data:`BUILTIN_VARIANTS`, :func:`variant_names`)
and accept a JSON file with the same fields plus a ``name`` for anything else.

Built-in names: ``nnUNetTrainer``, ``nnUNetTrainer_{1,5,10,20,50,100,250,500,750,2000,4000,8000}epochs``,
``nnUNetTrainerNoMirroring``, ``nnUNetTrainerDA5``, ``nnUNetTrainerDiceCELoss_noSmooth``,
``nnUNetTrainer_probabilisticOversampling`` (+ ``_010``/``_033``), ``nnUNetTrainerCELoss``,
``nnUNetTrainerDiceLoss``, ``nnUNetTrainerTopk10Loss``, ``nnUNetTrainerNoDeepSupervision``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..inference.runtime import PRECISIONS  # torch-free import: one list of precision names
from ..errors import TrainingError

CONFIG_VERSION = 1


class TrainerConfigError(TrainingError, ValueError):
    """An unknown trainer name or an invalid configuration file/value; the message names it."""


@dataclass
class TrainerConfig:
    """Everything that distinguishes nnU-Net's trainer variants (defaults = ``nnUNetTrainer``)."""

    name: str = "nnUNetTrainer"
    epochs: int = 1000
    iterations_per_epoch: int = 250
    val_iterations: int = 50
    initial_lr: float = 1e-2
    weight_decay: float = 3e-5
    momentum: float = 0.99
    poly_exponent: float = 0.9
    grad_clip: float = 12.0
    loss: str = "dice_ce"
    loss_smooth: float = 1e-5
    deep_supervision: bool = True
    deep_supervision_weights: list[float] | None = None
    augmentation: str = "default"
    # None with probabilistic oversampling: the deterministic scheme's effective fraction (nnU-Net)
    oversample_foreground_percent: float | None = 0.33
    probabilistic_oversampling: bool = False
    batch_size: int | None = None  # None: the plan's
    num_workers: int | None = None  # None: nnUNet_n_proc_DA or min(12, cpu count)
    precision: str = "auto"
    checkpoint_interval: int = 1  # checkpoint_latest.pth every N epochs (nnU-Net: 50)
    compile: bool | None = None  # None: nnU-Net's rule ($nnUNet_compile, default on) — CUDA only
    progress_plot: bool = True  # progress.png every epoch (skipped with one log line without matplotlib)
    seed: int | None = None  # None: drawn once and stored in the checkpoint
    freeze: str | int | None = None  # "encoder" or N: train only later layers (oxunet.training.transfer)
    augment_on: str | None = None  # "device" | "workers"; None: device on CUDA, workers elsewhere
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def positive(key: str, allow_zero: bool = False) -> None:
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if allow_zero else 1):
                raise TrainerConfigError(f"trainer {self.name!r}: {key} must be an integer >= {0 if allow_zero else 1}, got {v!r}")

        for key in ("epochs", "iterations_per_epoch", "checkpoint_interval"):
            positive(key)
        positive("val_iterations", allow_zero=True)
        if self.batch_size is not None:
            positive("batch_size")
        if self.num_workers is not None:
            positive("num_workers", allow_zero=True)
        if self.precision not in PRECISIONS:
            raise TrainerConfigError(f"trainer {self.name!r}: precision must be one of {PRECISIONS}, got {self.precision!r}")
        from .losses import LOSS_KINDS

        if self.loss not in LOSS_KINDS:
            raise TrainerConfigError(f"trainer {self.name!r}: unknown loss {self.loss!r} (known: {', '.join(LOSS_KINDS)})")
        p = self.oversample_foreground_percent
        if p is None and not self.probabilistic_oversampling:
            raise TrainerConfigError(f"trainer {self.name!r}: oversample_foreground_percent may be null only with probabilistic_oversampling")
        if p is not None and not 0.0 <= p <= 1.0:
            raise TrainerConfigError(f"trainer {self.name!r}: oversample_foreground_percent must be in [0, 1], got {p!r}")
        from .transfer import TransferError, parse_freeze

        try:
            self.freeze = parse_freeze(self.freeze)
        except TransferError as e:
            raise TrainerConfigError(f"trainer {self.name!r}: {e}") from None
        if self.augment_on not in (None, "device", "workers"):
            raise TrainerConfigError(f"trainer {self.name!r}: augment_on must be 'device' or 'workers', got {self.augment_on!r}")
        if self.initial_lr <= 0:
            raise TrainerConfigError(f"trainer {self.name!r}: initial_lr must be > 0, got {self.initial_lr!r}")

    def replace(self, **changes: Any) -> "TrainerConfig":
        """A copy with `changes` (None values are ignored, so CLI flags can be passed straight)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {"version": CONFIG_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "trainer config") -> "TrainerConfig":
        d = dict(d)
        d.pop("version", None)
        base = d.pop("base", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainerConfigError(f"{source}: unknown field(s) {unknown} (known: {sorted(known)})")
        start = builtin_config(base) if base else cls()
        try:
            return dataclasses.replace(start, **d)
        except TypeError as e:
            raise TrainerConfigError(f"{source}: {e}") from None


_EPOCH_VARIANTS = (1, 5, 10, 20, 50, 100, 250, 500, 750, 2000, 4000, 8000)


def _builtins() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"nnUNetTrainer": {}}
    for e in _EPOCH_VARIANTS:
        out[f"nnUNetTrainer_{e}epochs"] = {"epochs": e}
    out["nnUNetTrainerNoMirroring"] = {"augmentation": "no-mirroring"}
    out["nnUNetTrainerDA5"] = {"augmentation": "da5"}
    out["nnUNetTrainerDiceCELoss_noSmooth"] = {"loss_smooth": 0.0}
    out["nnUNetTrainer_probabilisticOversampling"] = {"probabilistic_oversampling": True, "oversample_foreground_percent": None}
    out["nnUNetTrainer_probabilisticOversampling_010"] = {"probabilistic_oversampling": True, "oversample_foreground_percent": 0.10}
    out["nnUNetTrainer_probabilisticOversampling_033"] = {"probabilistic_oversampling": True, "oversample_foreground_percent": 0.33}
    out["nnUNetTrainerCELoss"] = {"loss": "ce"}
    out["nnUNetTrainerDiceLoss"] = {"loss": "dice"}
    out["nnUNetTrainerTopk10Loss"] = {"loss": "topk"}
    out["nnUNetTrainerNoDeepSupervision"] = {"deep_supervision": False}
    return out


BUILTIN_VARIANTS: dict[str, dict[str, Any]] = _builtins()


def variant_names() -> list[str]:
    return list(BUILTIN_VARIANTS)


def builtin_config(name: str) -> TrainerConfig:
    if name not in BUILTIN_VARIANTS:
        raise TrainerConfigError(
            f"unknown trainer {name!r}: oxunet has no class discovery; use one of {', '.join(variant_names())} "
            "or a JSON file with TrainerConfig fields (and a 'name')"
        )
    return TrainerConfig(name=name, **BUILTIN_VARIANTS[name])


def load_trainer_config(spec: str | Path) -> TrainerConfig:
    """A built-in variant name, or a JSON file (fields of :class:`TrainerConfig`, optional ``base``:
    a built-in name to start from)."""
    text = str(spec)
    if text.endswith(".json") or Path(text).is_file():
        path = Path(text)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TrainerConfigError(f"{path}: cannot read trainer config ({e})") from None
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise TrainerConfigError(f"{path}: a trainer config is a JSON object with a string 'name'")
        return TrainerConfig.from_dict(d, str(path))
    return builtin_config(text)
