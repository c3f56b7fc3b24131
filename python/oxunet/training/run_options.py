"""How one training run is executed, as opposed to what it trains (TrainerConfig): every DDP rank
receives the same RunOptions, so flags such as ``--npz`` reach the rank that validates.

Torch-free. New options are new fields with a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..inference.runtime import PRECISIONS

VALIDATION_CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    quiet: bool = False
    continue_training: bool = False
    pretrained: str | None = None  # checkpoint to initialise from (oxunet.training.transfer)
    validate: bool = True  # run the final validation once the last epoch is done
    export_probabilities: bool = False  # --npz: .npz/.json next to each validation case
    validation_checkpoint: str = "checkpoint_final.pth"  # --val-best: checkpoint_best.pth
    stop_after_epochs: int | None = None  # end this call early (the run can be continued)
    # None: the TrainerConfig's value
    precision: str | None = None
    compile: bool | None = None
    num_workers: int | None = None
    augment_on: str | None = None  # "device" | "workers" (oxunet.training.device_augment)

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"run options: precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.validation_checkpoint not in VALIDATION_CHECKPOINTS:
            raise ValueError(f"run options: validation_checkpoint must be one of {VALIDATION_CHECKPOINTS}, "
                             f"got {self.validation_checkpoint!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"run options: num_workers must be >= 0, got {self.num_workers}")
        if self.continue_training and self.pretrained:
            raise ValueError("--continue cannot be combined with --pretrained")

    def replace(self, **changes: Any) -> "RunOptions":
        return dataclasses.replace(self, **changes)

    def apply_to(self, config):
        """``config`` with this run's precision / compile / workers / augment_on where they are set."""
        return config.replace(precision=self.precision, compile=self.compile, num_workers=self.num_workers,
                              augment_on=self.augment_on)
