"""Training: losses, data loader, trainer and its variants. Names load on first access so ``import oxunet.training`` stays light."""

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

_LAZY.update({name: ".config" for name in ("TrainerConfig", "TrainerConfigError", "builtin_config", "load_trainer_config",
                                            "variant_names", "BUILTIN_VARIANTS")})
_LAZY.update({name: ".trainer" for name in ("Trainer", "should_compile")})
_LAZY.update({name: ".fold" for name in ("FoldContext", "TrainingError", "read_fold_context")})
_LAZY.update({name: ".run_options" for name in ("RunOptions",)})
_LAZY.update({name: ".schedule" for name in ("poly_lr", "cosine_lr", "warmup_poly_lr", "lr_for_epoch")})
_LAZY.update({name: ".optim" for name in ("build_optimizer",)})
_LAZY.update({name: ".loop" for name in ("EpochSummary",)})
_LAZY.update({name: ".precision" for name in ("resolve_precision", "cpu_has_native_bf16", "PrecisionError", "training_step")})
_LAZY.update({name: ".loader" for name in ("LoaderSpec", "epoch_loader", "default_num_workers")})

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
