"""Segmentation losses with nnU-Net v2's definitions (nnunetv2.training.loss).

* labels (default): Dice + CE, soft Dice on softmax probabilities without the background channel;
* regions: Dice + BCE on sigmoid outputs, every channel counted;
* variants: CE only, Dice only, TopK-CE (mean of the top k % voxel losses), Dice + TopK;
* the ignore label masks voxels out of every term;
* :class:`DeepSupervisionLoss` sums the per-resolution losses with nnU-Net's weights.

Values equal nnunetv2's loss classes (tested to 1e-5). Deliberate differences, all where nnU-Net
would return NaN or crash: CE over a batch with no annotated voxel is 0 (nnU-Net: NaN in its
CE-only trainer), TopK keeps at least one voxel, Dice-only honours the ignore label (nnU-Net's
Dice-only trainer indexes out of range). Under DDP (:func:`enable_ddp_gather`) batch-Dice terms are
summed over the local batch, then all-gathered with gradient and summed over ranks (nnU-Net gathers
before summing, which needs equal per-rank batch sizes).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

Nonlin = Union[str, Callable[[torch.Tensor], torch.Tensor], None]

LOSS_KINDS = ("dice_ce", "dice", "ce", "topk", "dice_topk")


def softmax_channels(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the channel axis (a named function keeps the losses picklable)."""
    return torch.softmax(x, 1)


def _nonlin(spec: Nonlin) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if spec == "softmax":
        return softmax_channels
    if spec == "sigmoid":
        return torch.sigmoid
    if spec is None or callable(spec):
        return spec
    raise ValueError(f"nonlin must be 'softmax', 'sigmoid', None or a callable, got {spec!r}")


def _with_channel_axis(target: torch.Tensor, ndim: int) -> torch.Tensor:
    """Label maps may come as (b, x, y[, z]); the losses want (b, 1, x, y[, z])."""
    return target.unsqueeze(1) if target.ndim == ndim - 1 else target


class SoftDiceLoss(nn.Module):
    """Negative mean soft Dice (nnU-Net's MemoryEfficientSoftDiceLoss).

    Per (sample, channel) — or per channel over the whole batch with ``batch_dice`` — with
    ``I = sum(p*y*m)``, ``P = sum(p*m)``, ``G = sum(y*m)`` (mask ``m`` optional):
    ``dice = (2I + smooth) / max(P + G + smooth, 1e-8)``. A target of the same shape as the
    prediction is taken as one-hot (regions); otherwise it is a label map and one-hot encoded.
    """

    def __init__(self, nonlin: Nonlin = "softmax", batch_dice: bool = False, do_bg: bool = True, smooth: float = 1e-5):
        super().__init__()
        self.nonlin = nonlin
        self.apply_nonlin = _nonlin(nonlin)  # not `_apply`: that name is nn.Module.to()'s machinery
        self.batch_dice = batch_dice
        self.do_bg = do_bg
        self.smooth = float(smooth)
        self.ddp = False  # batch dice over all DDP ranks (enable_ddp_gather)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
        probs = self.apply_nonlin(logits) if self.apply_nonlin is not None else logits
        axes = tuple(range(2, probs.ndim))
        with torch.no_grad():  # the target side needs no gradient
            target = _with_channel_axis(target, probs.ndim)
            if target.shape == probs.shape:
                onehot = target.to(torch.float32)
            else:
                onehot = torch.zeros(probs.shape, device=probs.device, dtype=torch.float32)
                onehot.scatter_(1, target.long(), 1)
            if not self.do_bg:
                onehot = onehot[:, 1:]
            masked_gt = onehot if loss_mask is None else onehot * loss_mask
            sum_gt = masked_gt.sum(axes, dtype=torch.float32)
        if not self.do_bg:
            probs = probs[:, 1:]
        masked_probs = probs if loss_mask is None else probs * loss_mask
        intersect = (masked_probs * onehot).sum(axes, dtype=torch.float32)
        sum_pred = masked_probs.sum(axes, dtype=torch.float32)
        if self.batch_dice:
            intersect, sum_pred, sum_gt = (t.sum(0, dtype=torch.float32) for t in (intersect, sum_pred, sum_gt))
            if self.ddp:
                from .distributed import gather_sum

                intersect, sum_pred, sum_gt = gather_sum(intersect), gather_sum(sum_pred), gather_sum(sum_gt)
        dice = (2 * intersect + self.smooth) / (sum_gt + sum_pred + self.smooth).clamp_min(1e-8)
        return -dice.mean()


class CrossEntropyLoss(nn.Module):
    """Voxel-mean cross-entropy on logits; the target is a label map, float or int, with or without channel axis.

    With ``ignore_label`` those voxels are left out of the mean (0 when a batch has none annotated).
    """

    def __init__(self, ignore_label: int | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.ignore_label = ignore_label
        self.label_smoothing = float(label_smoothing)

    def voxel_losses(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unreduced per-voxel CE, 0 at ignored voxels."""
        target = _with_channel_axis(target, logits.ndim)[:, 0].long()
        ignore = -100 if self.ignore_label is None else int(self.ignore_label)
        return F.cross_entropy(logits, target, ignore_index=ignore, reduction="none",
                               label_smoothing=self.label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.ignore_label is None:
            target = _with_channel_axis(target, logits.ndim)[:, 0].long()
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        annotated = (_with_channel_axis(target, logits.ndim) != self.ignore_label).sum()
        # sum / count instead of mean: no NaN (and no host sync) when nothing is annotated
        return self.voxel_losses(logits, target).sum() / annotated.clamp_min(1)


class TopKLoss(CrossEntropyLoss):
    """Mean of the ``k`` % largest per-voxel CE values of the batch (ignored voxels count as 0)."""

    def __init__(self, ignore_label: int | None = None, k: float = 10.0, label_smoothing: float = 0.0):
        super().__init__(ignore_label, label_smoothing)
        if not 0 < k <= 100:
            raise ValueError(f"TopK percentage k must be in (0, 100], got {k}")
        self.k = float(k)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = self.voxel_losses(logits, target).reshape(-1)
        keep = max(1, int(losses.numel() * self.k / 100))
        return torch.topk(losses, keep, sorted=False).values.mean()


class DiceCELoss(nn.Module):
    """nnU-Net's DC_and_CE_loss for label maps: ``weight_ce * CE + weight_dice * SoftDice``.

    Dice runs on softmax probabilities without background. With ``topk_percent`` the CE term is
    :class:`TopKLoss` (nnU-Net's DC_and_topk_loss). With ``ignore_label`` the Dice term is masked and
    the CE term skips those voxels. A weight of 0 drops the term (CE-only / Dice-only).
    """

    def __init__(
        self,
        *,
        batch_dice: bool,
        smooth: float = 1e-5,
        do_bg: bool = False,
        ignore_label: int | None = None,
        weight_ce: float = 1.0,
        weight_dice: float = 1.0,
        topk_percent: float | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.ignore_label = ignore_label
        self.weight_ce = float(weight_ce)
        self.weight_dice = float(weight_dice)
        self.ce = (TopKLoss(ignore_label, topk_percent, label_smoothing) if topk_percent is not None
                   else CrossEntropyLoss(ignore_label, label_smoothing))
        self.dc = SoftDiceLoss("softmax", batch_dice=batch_dice, do_bg=do_bg, smooth=smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _with_channel_axis(target, logits.ndim)
        if target.shape[1] != 1:
            raise ValueError(f"DiceCELoss expects a label map with one channel, got target shape {tuple(target.shape)}")
        mask = None
        target_dice = target
        if self.ignore_label is not None:
            mask = target != self.ignore_label
            target_dice = torch.where(mask, target, 0)  # any valid class; masked out anyway
        loss: torch.Tensor | float = 0.0
        if self.weight_dice != 0:
            loss = loss + self.weight_dice * self.dc(logits, target_dice, loss_mask=mask)
        if self.weight_ce != 0:
            loss = loss + self.weight_ce * self.ce(logits, target)
        return cast(torch.Tensor, loss)  # a tensor unless both weights are 0


class RegionDiceBCELoss(nn.Module):
    """nnU-Net's DC_and_BCE_loss for regions: ``weight_bce * BCE + weight_dice * SoftDice`` on sigmoids.

    The target holds one binary channel per region; with ``use_ignore_label`` its last channel is
    the ignore mask (1 = ignored), which masks both terms.
    """

    def __init__(
        self,
        *,
        batch_dice: bool,
        smooth: float = 1e-5,
        use_ignore_label: bool = False,
        weight_bce: float = 1.0,
        weight_dice: float = 1.0,
    ):
        super().__init__()
        self.use_ignore_label = use_ignore_label
        self.weight_bce = float(weight_bce)
        self.weight_dice = float(weight_dice)
        self.dc = SoftDiceLoss("sigmoid", batch_dice=batch_dice, do_bg=True, smooth=smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask = None
        if self.use_ignore_label:
            ignore = target[:, -1:]
            mask = ~ignore if ignore.dtype == torch.bool else (1 - ignore).bool()
            target = target[:, :-1]
        if target.shape != logits.shape:
            extra = " plus the ignore channel" if self.use_ignore_label else ""
            raise ValueError(f"region target must have one channel per output{extra}: "
                             f"logits {tuple(logits.shape)}, target regions {tuple(target.shape)}")
        loss: torch.Tensor | float = 0.0
        if self.weight_dice != 0:
            loss = loss + self.weight_dice * self.dc(logits, target, loss_mask=mask)
        if self.weight_bce != 0:
            target = target.float()
            if mask is None:
                bce = F.binary_cross_entropy_with_logits(logits, target)
            else:
                voxel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
                bce = (voxel * mask).sum() / mask.sum().clamp_min(1e-8)
            loss = loss + self.weight_bce * bce
        return cast(torch.Tensor, loss)  # a tensor unless both weights are 0


def default_deep_supervision_weights(num_outputs: int) -> list[float]:
    """nnU-Net's weights: ``1/2**i`` per output (highest resolution first), lowest set to 0, sum 1."""
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    if num_outputs == 1:
        return [1.0]  # nnU-Net would zero its only term; keep it
    weights = [1 / 2**i for i in range(num_outputs)]
    weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def deep_supervision_scales(strides: Sequence[Sequence[int]]) -> list[list[float]]:
    """Relative size of each deep-supervision output: ``1 / cumprod(strides)``, all stages but the last."""
    scales, running = [], [1] * len(strides[0])
    for stride in strides[:-1]:
        running = [r * s for r, s in zip(running, stride)]
        scales.append([1 / r for r in running])
    return scales


class DeepSupervisionLoss(nn.Module):
    """``sum_i w_i * loss(outputs[i], targets[i])``; outputs highest resolution first, zero weights skipped."""

    def __init__(self, loss: nn.Module, weights: Sequence[float]):
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if not weights or any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(f"deep supervision weights must be >= 0 with at least one > 0, got {list(weights)}")
        self.loss = loss
        self.weights = weights

    def forward(self, outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(outputs, (list, tuple)) or not isinstance(targets, (list, tuple)):
            raise TypeError("deep supervision loss needs lists of outputs and targets "
                            "(is deep supervision switched off in the network?)")
        if len(outputs) != len(self.weights) or len(targets) != len(self.weights):
            raise ValueError(f"deep supervision loss has {len(self.weights)} weights but got "
                             f"{len(outputs)} outputs and {len(targets)} targets")
        total: torch.Tensor | float = 0.0
        for w, out, tgt in zip(self.weights, outputs, targets):
            if w != 0:
                total = total + w * self.loss(out, tgt)
        return cast(torch.Tensor, total)  # build_loss ensures one weight > 0


def build_loss(
    kind: str = "dice_ce",
    *,
    batch_dice: bool,
    is_regions: bool = False,
    ignore_label: int | None = None,
    num_outputs: int | None = None,
    deep_supervision_weights: Sequence[float] | None = None,
    smooth: float = 1e-5,
    topk_percent: float = 10.0,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """The training loss nnU-Net builds for ``kind`` (see ``LOSS_KINDS``).

    ``dice_ce`` is nnU-Net's default (Dice+BCE for regions). For regions, ``ignore_label`` only
    says whether the target carries an ignore channel. Deep supervision: ``num_outputs`` (decoder
    outputs, = n_stages - 1) wraps the loss with nnU-Net's default weights; ``deep_supervision_weights``
    gives them explicitly, highest resolution first, padded with zeros to ``num_outputs``
    (e.g. ``[0.7, 0.2, 0.1]``: only the three finest outputs). Neither given: a single-output loss.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSS_KINDS)}")
    if is_regions:
        if kind not in ("dice_ce", "dice"):
            raise ValueError(f"loss {kind!r} is for label maps; region-based training supports 'dice_ce' (Dice+BCE) and 'dice'")
        loss: nn.Module = RegionDiceBCELoss(batch_dice=batch_dice, smooth=smooth, use_ignore_label=ignore_label is not None,
                                            weight_bce=0.0 if kind == "dice" else 1.0)
    elif kind == "ce":
        loss = CrossEntropyLoss(ignore_label, label_smoothing)
    elif kind == "topk":
        loss = TopKLoss(ignore_label, topk_percent, label_smoothing)
    else:
        loss = DiceCELoss(batch_dice=batch_dice, smooth=smooth, ignore_label=ignore_label,
                          weight_ce=0.0 if kind == "dice" else 1.0, label_smoothing=label_smoothing,
                          topk_percent=topk_percent if kind == "dice_topk" else None)

    if deep_supervision_weights is None and num_outputs is None:
        return loss
    if deep_supervision_weights is None:
        weights = default_deep_supervision_weights(cast(int, num_outputs))  # not None on this branch
    else:
        weights = [float(w) for w in deep_supervision_weights]
        n = len(weights) if num_outputs is None else num_outputs
        if len(weights) > n:
            raise ValueError(f"{len(weights)} deep supervision weights for a network with {n} outputs")
        weights += [0.0] * (n - len(weights))
    return DeepSupervisionLoss(loss, weights)


def enable_ddp_gather(loss: nn.Module, enabled: bool = True) -> nn.Module:
    """Make every batch-Dice term inside ``loss`` span all DDP ranks (nnU-Net's ``ddp=True``)."""
    for m in loss.modules():
        if isinstance(m, SoftDiceLoss):
            m.ddp = bool(enabled)
    return loss
