"""Training: losses (and, later, the trainer). Names load on first access so ``import oxunet.training`` stays light."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    name: ".losses"
    for name in (
        "LOSS_KINDS", "CrossEntropyLoss", "DeepSupervisionLoss", "DiceCELoss", "RegionDiceBCELoss", "SoftDiceLoss",
        "TopKLoss", "build_loss", "deep_supervision_scales", "default_deep_supervision_weights",
    )
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
