"""Soft Dice (foreground classes) + focal cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DiceFocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0, smooth: float = 1e-5):
        super().__init__()
        self.gamma, self.smooth = gamma, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].long() if target.ndim == logits.ndim else target.long()
        logp = F.log_softmax(logits, 1)
        logp_true = logp.gather(1, labels[:, None])[:, 0]
        focal = (-(1 - logp_true.exp()) ** self.gamma * logp_true).mean()
        probs = logp.exp()[:, 1:]
        onehot = torch.zeros_like(logits).scatter_(1, labels[:, None], 1)[:, 1:]
        axes = tuple(range(2, logits.ndim))
        inter, total = (probs * onehot).sum(axes), (probs + onehot).sum(axes)
        dice = (2 * inter + self.smooth) / (total + self.smooth).clamp_min(1e-8)
        return focal - dice.mean()
