"""Mixed precision for training: ``--precision auto|fp32|bf16|fp16``.

Rules (intended deviation from nnU-Net, which uses fp16 AMP on CUDA and fp32 everywhere else):

* ``auto`` → ``fp16`` on CUDA (nnU-Net's AMP), ``bf16`` on CPUs with native bf16 instructions
  (``/proc/cpuinfo`` flag ``amx_bf16`` or ``avx512_bf16``), else ``fp32`` (also on MPS).
* ``bf16``: ``torch.autocast(device, bfloat16)``, no loss scaling (bf16 has fp32's exponent range).
* ``fp16``: ``torch.autocast(device, float16)`` plus a ``GradScaler`` used exactly as nnU-Net does on
  CUDA (scale → backward → unscale → clip → step → update). On CPU this needs a torch whose CPU
  autocast supports float16 and ``torch.amp.GradScaler("cpu")`` (torch ≥ 2.3); older torch raises
  :class:`PrecisionError` naming the alternative (``bf16`` or ``fp32``) instead of silently falling back.
* ``fp32``: no autocast (the parity tests pin this).
"""

from __future__ import annotations

from typing import Any

import torch

# One implementation of the precision rules, shared with prediction (imports flow training → inference);
# re-exported here because trainer code and tests import them from this module.
from ..inference.runtime import PRECISIONS, PrecisionError, autocast, cpu_has_native_bf16, resolve_precision

__all__ = ["PRECISIONS", "PrecisionError", "autocast", "check_precision", "cpu_has_native_bf16", "make_grad_scaler",
           "resolve_precision", "training_step"]


def check_precision(precision: str, device: torch.device | str) -> None:
    """Raise :class:`PrecisionError` when this torch build cannot autocast/scale ``precision`` on ``device``."""
    kind = torch.device(device).type
    if precision == "fp32":
        return
    if not torch.amp.is_autocast_available(kind):
        raise PrecisionError(f"precision {precision}: torch {torch.__version__} has no autocast for device {kind}; use fp32")
    if precision == "fp16" and kind == "cpu":
        try:
            with torch.autocast("cpu", dtype=torch.float16):
                torch.ones(1, 1, 2, 2).matmul(torch.ones(1, 1, 2, 2))
            torch.amp.GradScaler("cpu")
        except (RuntimeError, TypeError, AttributeError, ValueError) as e:
            raise PrecisionError(f"precision fp16 on CPU is not supported by torch {torch.__version__} ({e}); "
                                 "use bf16 or fp32") from None


def make_grad_scaler(precision: str, device: torch.device | str) -> Any:
    """A ``torch.amp.GradScaler`` for fp16 (as nnU-Net on CUDA), None otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def training_step(forward, loss_fn, optimizer: torch.optim.Optimizer, params, data: torch.Tensor, target: Any,
                  precision: str, device: torch.device | str, grad_scaler: Any = None, grad_clip: float = 12.0) -> torch.Tensor:
    """One optimiser step as nnU-Net's ``train_step``: autocast forward + loss, then (fp16) scale →
    backward → unscale → clip → step → update, or backward → clip → step. Returns the detached loss."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, device):
        out = forward(data)
        loss = loss_fn(out, target)
    params = list(params)
    if grad_scaler is not None:
        grad_scaler.scale(loss).backward()
        grad_scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        grad_scaler.step(optimizer)
        grad_scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
    return loss.detach()
