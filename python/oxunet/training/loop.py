"""The epoch loop: training and validation steps, nnU-Net's online pseudo-Dice and its EMA, the
per-epoch log line, checkpoints (best / latest) and progress.png.

:func:`run_epochs` drives a built :class:`~.trainer.Trainer`; batches come from
``trainer.batches(...)`` (the one place a batch is fetched, and may be augmented on the device,
before ``train_step`` / ``validation_step``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .distributed import all_gather_objects
from .schedule import lr_for_epoch

if TYPE_CHECKING:
    from .trainer import Trainer


@dataclass
class EpochSummary:
    epoch: int
    train_loss: float
    val_loss: float
    pseudo_dice: list[float]
    ema: float
    lr: float
    seconds: float
    mean_fg_dice: float = float("nan")
    started: float = 0.0  # time.time() at the epoch's start


def online_tp_fp_fn(output: torch.Tensor, target: torch.Tensor, is_regions: bool, ignore_label: int | None):
    """nnU-Net's validation_step statistics from the highest-resolution output (background dropped for labels)."""
    axes = [0] + list(range(2, output.ndim))
    if is_regions:
        pred = (torch.sigmoid(output) > 0.5).float()
        if ignore_label is not None:
            mask = (1 - target[:, -1:]).float()
            target = target[:, :-1]
        else:
            mask = None
    else:
        pred = torch.zeros_like(output).scatter_(1, output.argmax(1, keepdim=True), 1)
        t = target.long()
        if ignore_label is not None:
            mask = (t != ignore_label).float()
            t = torch.where(t == ignore_label, torch.zeros_like(t), t)
        else:
            mask = None
        target = torch.zeros_like(output).scatter_(1, t, 1)
    target = target.float()
    if mask is not None:
        pred, target = pred * mask, target * mask
    tp = (pred * target).sum(axes)
    fp = (pred * (1 - target)).sum(axes)
    fn = ((1 - pred) * target).sum(axes)
    if not is_regions:
        tp, fp, fn = tp[1:], fp[1:], fn[1:]
    return tp.cpu().numpy(), fp.cpu().numpy(), fn.cpu().numpy()


def pseudo_dice(tps: list, fps: list, fns: list) -> tuple[list[float], float]:
    """Per-class Dice of the summed tp/fp/fn and the mean over classes that have any (NaN when none)."""
    if not tps:
        return [], float("nan")
    tp, fp, fn = sum(tps), sum(fps), sum(fns)
    dice = [float(2 * a / (2 * a + b + d)) if (2 * a + b + d) > 0 else float("nan") for a, b, d in zip(tp, fp, fn)]
    mean_fg = float(np.nanmean(dice)) if not all(math.isnan(x) for x in dice) else float("nan")
    return dice, mean_fg


def next_ema(previous: list, mean_fg: float) -> float:
    """nnU-Net's ``ema_fg_dice``: 0.9 × previous + 0.1 × this epoch's (the first epoch's value as is)."""
    if not previous or previous[-1] is None or math.isnan(previous[-1]):
        return mean_fg
    return 0.9 * previous[-1] + 0.1 * mean_fg


def _gathered(values: list) -> list:
    """Every rank's list, concatenated (identity without DDP; nnU-Net's all_gather_object)."""
    return [x for part in all_gather_objects(values) for x in part]


def run_epoch(trainer: "Trainer", epoch: int) -> EpochSummary:
    """One epoch's training iterations and validation iterations, with metrics over every rank."""
    c = trainer.config
    t0 = time.time()
    lr = lr_for_epoch(c, epoch)
    for g in trainer.optimizer.param_groups:
        g["lr"] = lr
    trainer.network.train()
    if c.freeze is not None:
        from .transfer import set_frozen_eval

        set_frozen_eval(trainer.network, c.freeze)
    losses = [trainer.train_step(b) for b in trainer.batches(epoch, validation=False)]
    trainer.network.eval()
    val_losses, tps, fps, fns = [], [], [], []
    if c.val_iterations > 0:
        for b in trainer.batches(epoch, validation=True):
            loss, tp, fp, fn = trainer.validation_step(b)
            val_losses.append(loss)
            tps.append(tp)
            fps.append(fp)
            fns.append(fn)
    losses, val_losses = _gathered(losses), _gathered(val_losses)
    parts = [x for x in all_gather_objects((sum(tps), sum(fps), sum(fns)) if tps else None) if x is not None]
    dice, mean_fg = pseudo_dice([x[0] for x in parts], [x[1] for x in parts], [x[2] for x in parts])
    ema = next_ema(trainer.log.log["ema_fg_dice"], mean_fg)
    val_loss = float(np.mean(val_losses)) if val_losses else float("nan")
    t1 = time.time()
    return EpochSummary(epoch, float(np.mean(losses)), val_loss, dice, ema, lr, t1 - t0, mean_fg, t0)


def log_epoch(trainer: "Trainer", s: EpochSummary) -> None:
    L = trainer.log
    L.append("train_losses", s.train_loss)
    L.append("val_losses", s.val_loss)
    L.append("dice_per_class_or_region", s.pseudo_dice)
    L.append("mean_fg_dice", s.mean_fg_dice)
    L.append("ema_fg_dice", s.ema)
    L.append("lrs", s.lr)
    L.append("epoch_start_timestamps", s.started)
    L.append("epoch_end_timestamps", s.started + s.seconds)
    L.line(f"epoch {s.epoch}: lr {s.lr:.6g} train_loss {s.train_loss:.4f} val_loss {s.val_loss:.4f} pseudo dice "
           f"{[round(d, 4) for d in s.pseudo_dice]} ema {s.ema:.4f} time {s.seconds:.1f}s")


def run_epochs(trainer: "Trainer", stop_after_epochs: int | None = None) -> bool:
    """Epochs from ``trainer.current_epoch`` to the configured total, each logged and checkpointed;
    False when ``stop_after_epochs`` ended the call early."""
    from .progress_plot import write_progress_png

    c = trainer.config
    done = 0
    while trainer.current_epoch < c.epochs:
        if stop_after_epochs is not None and done >= stop_after_epochs:
            return False
        s = run_epoch(trainer, trainer.current_epoch)
        log_epoch(trainer, s)
        trainer.current_epoch = s.epoch + 1
        keep = trainer.options.checkpointing  # --disable_checkpointing: only checkpoint_final.pth
        if not math.isnan(s.ema) and (trainer.best_ema is None or s.ema > trainer.best_ema):
            trainer.best_ema = s.ema
            if keep:
                trainer.save_checkpoint("checkpoint_best.pth")
        if keep and (trainer.current_epoch % c.checkpoint_interval == 0 or trainer.current_epoch == c.epochs):
            trainer.save_checkpoint("checkpoint_latest.pth")
        trainer.log.write_json()
        if c.progress_plot and trainer.is_main:
            write_progress_png(trainer.log.log, trainer.fold_dir, trainer.log.line)
        done += 1
        if trainer.on_epoch_end is not None and trainer.is_main:
            trainer.on_epoch_end(s)
    return True
