"""Learning-rate schedules as functions of the epoch (torch-free), as nnU-Net's schedulers step them
(``lr_scheduler.step(current_epoch)`` at the start of every epoch)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TrainerConfig


def poly_lr(initial_lr: float, epoch: int, max_epochs: int, exponent: float = 0.9) -> float:
    """nnU-Net's PolyLRScheduler: ``initial × (1 − epoch / max_epochs) ** exponent``."""
    return initial_lr * (1 - epoch / max_epochs) ** exponent


def cosine_lr(initial_lr: float, epoch: int, max_epochs: int) -> float:
    """torch's CosineAnnealingLR(T_max=max_epochs, eta_min=0) in closed form (nnUNetTrainerCosAnneal)."""
    return initial_lr * (1 + math.cos(math.pi * epoch / max_epochs)) / 2


def warmup_poly_lr(initial_lr: float, epoch: int, max_epochs: int, warmup_epochs: int, exponent: float = 0.9) -> float:
    """nnUNetTrainer_warmup: Lin_incr_LRScheduler (``initial / warmup × (epoch + 1)``) for the first
    ``warmup_epochs``, then PolyLRScheduler_offset (poly over the remaining epochs)."""
    if epoch < warmup_epochs:
        return initial_lr / warmup_epochs * (1 + epoch)
    return initial_lr * (1 - (epoch - warmup_epochs) / (max_epochs - warmup_epochs)) ** exponent


def lr_for_epoch(config: "TrainerConfig", epoch: int) -> float:
    """The learning rate ``config`` uses in ``epoch``; continuing with more epochs recomputes it over
    the new total (nnU-Net behaves the same)."""
    c = config
    if c.lr_schedule == "cosine":
        return cosine_lr(c.initial_lr, epoch, c.epochs)
    if c.lr_schedule == "warmup_poly":
        return warmup_poly_lr(c.initial_lr, epoch, c.epochs, c.warmup_epochs, c.poly_exponent)
    return poly_lr(c.initial_lr, epoch, c.epochs, c.poly_exponent)
