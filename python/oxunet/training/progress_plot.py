"""``progress.png`` as nnU-Net draws it (``nnUNetLogger.plot_progress_png``): three panels —
train/val loss with pseudo-Dice and its EMA on a second axis, epoch duration, learning rate.

Deviations: a 12×18 inch figure at 100 dpi instead of 30×54 (the same panels at a fraction of the
rendering time), no seaborn styling; written atomically. matplotlib is optional: without it the
plot is skipped with one log line (:func:`write_progress_png` returns False).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_path

_WARNED = False


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def write_progress_png(log: dict[str, list], out_dir: str | Path, line=None) -> bool:
    """Draw ``log`` (the trainer logger's lists) to ``out_dir/progress.png``; ``line(text)`` reports
    a missing matplotlib once. Returns whether the file was written."""
    global _WARNED
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        if not _WARNED and line is not None:
            line("matplotlib is not installed: progress.png is not written")
        _WARNED = True
        return False
    n = min(len(log[k]) for k in ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice", "lrs",
                                  "epoch_start_timestamps", "epoch_end_timestamps"))
    if n == 0:
        return False
    x = list(range(n))
    # Figure + Agg canvas directly: no pyplot global state, no backend switch in the host process
    fig = Figure(figsize=(12, 18), dpi=100)
    FigureCanvasAgg(fig)
    ax_all = fig.subplots(3, 1)
    ax = ax_all[0]
    ax2 = ax.twinx()
    ax.plot(x, [_nan(v) for v in log["train_losses"][:n]], color="b", ls="-", label="loss_tr", linewidth=2)
    ax.plot(x, [_nan(v) for v in log["val_losses"][:n]], color="r", ls="-", label="loss_val", linewidth=2)
    ax2.plot(x, [_nan(v) for v in log["mean_fg_dice"][:n]], color="g", ls="dotted", label="pseudo dice", linewidth=2)
    ax2.plot(x, [_nan(v) for v in log["ema_fg_dice"][:n]], color="g", ls="-", label="pseudo dice (mov. avg.)", linewidth=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2.set_ylabel("pseudo dice")
    ax.legend(loc=(0, 1))
    ax2.legend(loc=(0.2, 1))
    ax = ax_all[1]
    durations = [e - s for s, e in zip(log["epoch_start_timestamps"][:n], log["epoch_end_timestamps"][:n])]
    ax.plot(x, durations, color="b", ls="-", label="epoch duration", linewidth=2)
    ax.set_ylim(0, max(max(durations), 1e-3) * 1.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("time [s]")
    ax.legend(loc=(0, 1))
    ax = ax_all[2]
    ax.plot(x, log["lrs"][:n], color="b", ls="-", label="learning rate", linewidth=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.legend(loc=(0, 1))
    fig.tight_layout()
    with atomic_path(Path(out_dir) / "progress.png") as tmp:
        fig.savefig(tmp, format="png")
    return True
