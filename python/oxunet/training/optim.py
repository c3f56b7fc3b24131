"""The optimizer a TrainerConfig names, with nnU-Net's hyper-parameters per variant."""

from __future__ import annotations

from typing import Iterable

import torch

from .config import TrainerConfig


def build_optimizer(config: TrainerConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``sgd``: nnUNetTrainer's SGD (momentum 0.99, Nesterov); ``adam``: nnUNetTrainerAdam's AdamW with
    amsgrad; ``adamw``: plain AdamW; ``vanilla_adam``: nnUNetTrainerVanillaAdam's Adam (L2 decay)."""
    c = config
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, c.initial_lr, weight_decay=c.weight_decay, momentum=c.momentum,
                               nesterov=c.nesterov)
    if c.optimizer == "adam":
        return torch.optim.AdamW(params, lr=c.initial_lr, weight_decay=c.weight_decay, amsgrad=True)
    if c.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=c.initial_lr, weight_decay=c.weight_decay)
    if c.optimizer == "vanilla_adam":
        return torch.optim.Adam(params, lr=c.initial_lr, weight_decay=c.weight_decay)
    raise ValueError(f"unknown optimizer {c.optimizer!r}")  # TrainerConfig.validate keeps this unreachable
