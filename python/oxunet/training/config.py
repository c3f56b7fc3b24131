"""Trainer variants as configuration: one dataclass instead of one subclass per variant.

nnU-Net selects behaviour with trainer class names (``-tr nnUNetTrainer_250epochs``); we map every
class name nnunetv2 2.8.1 ships to :class:`TrainerConfig` values (:mod:`.variants`, listed by
:func:`variant_names`) and accept a JSON file with the same fields plus a ``name`` (and an optional
``base``: a built-in name to start from) for anything else. ``-tr module:Class`` loads user code
(:mod:`.plugins`). Torch-free: reading and checking a config imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union, cast

from ..constants import OVERSAMPLE_FOREGROUND_PERCENT
from ..inference.runtime import PRECISIONS  # torch-free import: one list of precision names
from .kinds import INTERPOLATION_ORDERS, LOSS_KINDS, LR_SCHEDULES, NORMS, OPTIMIZERS, FreezeError, parse_freeze
from .variants import UNSUPPORTED, VARIANTS
from ..errors import TrainingError

CONFIG_VERSION = 2

# mirror axes: "auto" (nnU-Net's rule: every spatial axis unless the preset turns mirroring off),
# None (no mirroring), a list of spatial axes, or {"2": [...], "3": [...]} keyed by patch dimensionality
MirrorAxes = Union[str, None, list, dict]


class TrainerConfigError(TrainingError, ValueError):
    """An unknown trainer name or an invalid configuration file/value; the message names it."""


@dataclass
class TrainerConfig:
    """Everything that distinguishes nnU-Net's trainer variants (defaults = ``nnUNetTrainer``)."""

    name: str = "nnUNetTrainer"
    epochs: int = 1000
    iterations_per_epoch: int = 250
    val_iterations: int = 50
    # optimizer and schedule (nnUNetTrainer: SGD Nesterov 0.99, lr 1e-2, wd 3e-5, poly 0.9 per epoch)
    optimizer: str = "sgd"
    initial_lr: float = 1e-2
    weight_decay: float = 3e-5
    momentum: float = 0.99
    nesterov: bool = True
    lr_schedule: str = "poly"
    poly_exponent: float = 0.9
    warmup_epochs: int = 50  # warmup_poly: linear increase over these epochs, then poly over the rest
    grad_clip: float = 12.0
    # loss
    loss: str = "dice_ce"
    loss_smooth: float = 1e-5
    label_smoothing: float = 0.0
    topk_percent: float = 10.0
    batch_dice: bool | None = None  # None: the plan's
    deep_supervision: bool = True
    deep_supervision_weights: list[float] | None = None  # None: nnU-Net's 1/2**i, lowest 0
    # augmentation
    augmentation: str = "default"  # a preset name or a JSON preset file (augmentation.presets.preset_to_json)
    mirror_axes: MirrorAxes = "auto"  # training mirroring, and test-time mirroring unless inference_mirror_axes
    inference_mirror_axes: MirrorAxes = "same"  # "same": as mirror_axes
    dummy_2d: bool | None = None  # None: nnU-Net's rule (3D patch with max/patch[0] > 3)
    seg_interpolation_order: int | None = None  # None: the preset's (1, per label); 0: nearest
    image_interpolation_order: int | None = None  # None: the preset's (1); 0: nearest
    # sampling
    # None with probabilistic oversampling: the deterministic scheme's effective fraction (nnU-Net)
    oversample_foreground_percent: float | None = OVERSAMPLE_FOREGROUND_PERCENT
    probabilistic_oversampling: bool = False
    batch_size: int | None = None  # None: the plan's
    # network
    norm: str | None = None  # None: the plan's; "batch" (nnUNetTrainerBN) or "instance"
    network: str | None = None  # None: the plan's network_class_name; else a registered name or module:Class
    # run
    num_workers: int | None = None  # None: nnUNet_n_proc_DA or min(12, cpu count)
    precision: str = "auto"
    checkpoint_interval: int = 1  # checkpoint_latest.pth every N epochs (nnU-Net: 50)
    compile: bool | None = None  # None: nnU-Net's rule ($nnUNet_compile, default on) — CUDA only
    progress_plot: bool = True  # progress.png every epoch (skipped with one log line without matplotlib)
    seed: int | None = None  # None: drawn once and stored in the checkpoint
    freeze: str | int | None = None  # "encoder" or N: train only later layers (oxunet.training.transfer)
    augment_on: str | None = None  # "device" | "workers"; None: device on CUDA, workers elsewhere

    def __post_init__(self) -> None:
        self.validate()

    def _fail(self, text: str) -> None:
        raise TrainerConfigError(f"trainer {self.name!r}: {text}")

    def validate(self) -> None:
        def integer(key: str, minimum: int = 1) -> None:
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
                self._fail(f"{key} must be an integer >= {minimum}, got {v!r}")

        def choice(key: str, options) -> None:
            if getattr(self, key) not in options:
                self._fail(f"{key} must be one of {list(options)}, got {getattr(self, key)!r}")

        for key in ("epochs", "iterations_per_epoch", "checkpoint_interval"):
            integer(key)
        integer("val_iterations", 0)
        integer("warmup_epochs", 0)
        if self.batch_size is not None:
            integer("batch_size")
        if self.num_workers is not None:
            integer("num_workers", 0)
        choice("precision", PRECISIONS)
        choice("loss", LOSS_KINDS)
        choice("optimizer", OPTIMIZERS)
        choice("lr_schedule", LR_SCHEDULES)
        for key in ("seg_interpolation_order", "image_interpolation_order"):
            choice(key, (None, *INTERPOLATION_ORDERS))
        choice("norm", (None, *NORMS))
        choice("augment_on", (None, "device", "workers"))
        if self.lr_schedule == "warmup_poly" and not 0 < self.warmup_epochs < self.epochs:
            self._fail(f"warmup_epochs must be in (0, epochs={self.epochs}) for warmup_poly, got {self.warmup_epochs}")
        p = self.oversample_foreground_percent
        if p is None and not self.probabilistic_oversampling:
            self._fail("oversample_foreground_percent may be null only with probabilistic_oversampling")
        if p is not None and not 0.0 <= p <= 1.0:
            self._fail(f"oversample_foreground_percent must be in [0, 1], got {p!r}")
        try:
            self.freeze = parse_freeze(self.freeze)
        except FreezeError as e:
            self._fail(str(e))
        for key in ("initial_lr",):
            if not isinstance(getattr(self, key), (int, float)) or getattr(self, key) <= 0:
                self._fail(f"{key} must be > 0, got {getattr(self, key)!r}")
        for key in ("weight_decay", "momentum", "label_smoothing", "grad_clip", "loss_smooth"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                self._fail(f"{key} must be a number >= 0, got {v!r}")
        if not 0 <= self.label_smoothing < 1:
            self._fail(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0 < self.topk_percent <= 100:
            self._fail(f"topk_percent must be in (0, 100], got {self.topk_percent!r}")
        w = self.deep_supervision_weights
        if w is not None and (not isinstance(w, (list, tuple)) or not w or any(
                not isinstance(x, (int, float)) or x < 0 for x in w) or not any(x > 0 for x in w)):
            self._fail(f"deep_supervision_weights must be a list of numbers >= 0 with one > 0, got {w!r}")
        self._check_mirror("mirror_axes", self.mirror_axes, "auto")
        self._check_mirror("inference_mirror_axes", self.inference_mirror_axes, "same")
        if not isinstance(self.augmentation, str) or not self.augmentation:
            self._fail(f"augmentation must be a preset name or a JSON preset file, got {self.augmentation!r}")

    def _check_mirror(self, key: str, value: MirrorAxes, keyword: str) -> None:
        def axes_ok(a) -> bool:
            return isinstance(a, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 3
                                                        for x in a) and len(set(a)) == len(a)

        if value is None or value == keyword or axes_ok(value):
            return
        if isinstance(value, dict) and set(value) <= {"2", "3"} and all(v is None or axes_ok(v) for v in value.values()):
            return
        self._fail(f"{key} must be {keyword!r}, null, a list of spatial axes or {{\"2\": [...], \"3\": [...]}}, "
                   f"got {value!r}")

    def mirror_axes_for(self, dim: int, preset_mirrors: bool = True, inference: bool = False) -> tuple[int, ...] | None:
        """The mirror axes for a ``dim``-D patch: training's, or test-time's with ``inference``."""
        value = self.inference_mirror_axes if inference else self.mirror_axes
        if inference and value == "same":
            return self.mirror_axes_for(dim, preset_mirrors)
        if value == "auto":
            return tuple(range(dim)) if preset_mirrors else None
        if isinstance(value, dict):
            value = value.get(str(dim), list(range(dim)))
        if not value:
            return None
        bad = [a for a in cast("Sequence[int]", value) if a >= dim]  # "auto"/"same" handled above
        if bad:
            raise TrainerConfigError(f"trainer {self.name!r}: mirror axes {list(value)} do not exist in a {dim}D patch")
        return tuple(int(a) for a in value)

    def oversample_for(self, global_batch_size: int) -> float:
        """The foreground oversampling fraction; with probabilistic oversampling and no explicit value,
        the deterministic scheme's effective fraction for this batch (nnUNetTrainer_probabilisticOversampling)."""
        if self.oversample_foreground_percent is not None:
            return self.oversample_foreground_percent
        b = int(global_batch_size)
        return sum(j >= round(b * (1 - OVERSAMPLE_FOREGROUND_PERCENT)) for j in range(b)) / b

    def replace(self, **changes: Any) -> "TrainerConfig":
        """A copy with `changes` (None values are ignored, so CLI flags can be passed straight)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {"version": CONFIG_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "trainer config") -> "TrainerConfig":
        d = dict(d)
        d.pop("version", None)
        if d.get("extra") == {}:
            d.pop("extra")  # version-1 configs (checkpoints) carried an always-empty, never-read 'extra'
        base = d.pop("base", None)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in sorted(set(d) - known):
            raise TrainerConfigError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        start = builtin_config(base) if base else cls()
        try:
            return dataclasses.replace(start, **d)
        except TypeError as e:
            raise TrainerConfigError(f"{source}: {e}") from None


def variant_names() -> list[str]:
    return list(VARIANTS)


def builtin_config(name: str) -> TrainerConfig:
    if name in UNSUPPORTED:
        raise TrainerConfigError(f"trainer {name!r} is an nnU-Net variant oxunet cannot run: {UNSUPPORTED[name]}")
    if name not in VARIANTS:
        from .plugins import TRAINER_ENTRY_POINT_GROUP, load_trainer_plugin, registered_trainers

        registered = registered_trainers()
        if name in registered:
            return load_trainer_plugin(registered[name])
        raise TrainerConfigError(
            f"unknown trainer {name!r}: not a built-in nnU-Net variant, not registered in the "
            f"{TRAINER_ENTRY_POINT_GROUP!r} entry-point group "
            f"({', '.join(sorted(registered)) or 'no package registers one'}), and not an existing JSON file; "
            f"use a variant name (`oxunet train --list-trainers`; e.g. nnUNetTrainer_250epochs), a JSON file "
            f"with TrainerConfig fields (and a 'name'), module:Class, or a registered name"
        )
    return TrainerConfig(name=name, **VARIANTS[name])


def load_trainer_config(spec: str | Path) -> TrainerConfig:
    """A built-in variant name, a JSON file (fields of :class:`TrainerConfig`, optional ``base``:
    a built-in name to start from), or ``module:Class`` / ``module:function`` (see :mod:`.plugins`)."""
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
    if ":" in text and text not in VARIANTS:
        from .plugins import load_trainer_plugin

        return load_trainer_plugin(text)
    return builtin_config(text)


# names kept for callers of the first version
BUILTIN_VARIANTS = VARIANTS
