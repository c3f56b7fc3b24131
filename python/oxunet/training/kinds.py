"""Names the trainer configuration chooses from, torch-free so a config can be read and checked
without importing torch (the modules that build these things import this one, never the reverse)."""

from __future__ import annotations

# oxunet.training.losses.build_loss kinds
LOSS_KINDS = ("dice_ce", "dice", "ce", "topk", "dice_topk")

# oxunet.training.optim.build_optimizer: "adam" is nnUNetTrainerAdam's AdamW with amsgrad,
# "vanilla_adam" nnUNetTrainerVanillaAdam's torch.optim.Adam (L2 weight decay)
OPTIMIZERS = ("sgd", "adam", "adamw", "vanilla_adam")

# oxunet.training.schedule.lr_for_epoch
LR_SCHEDULES = ("poly", "cosine", "warmup_poly")

# 0: nearest, 1: linear (per label for segmentations), as the augmentation's spatial transform
INTERPOLATION_ORDERS = {0: "nearest", 1: "bilinear"}

NORMS = {"batch": "BatchNorm", "instance": "InstanceNorm"}


class FreezeError(ValueError):
    """A --freeze value that is neither 'encoder' nor a positive stage count."""


def parse_freeze(value: str | int | None) -> str | int | None:
    """``None``, ``'encoder'`` or a positive stage count (also given as a string)."""
    if value is None or value == "encoder":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) >= 1:
        return int(value)
    raise FreezeError(f"--freeze: expected 'encoder' or a positive number of encoder stages, got {value!r}")
