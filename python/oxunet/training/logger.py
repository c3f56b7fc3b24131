"""Per-epoch training log: ``training_log.json`` (versioned, rewritten atomically each epoch) and a
human-readable ``training_log_<timestamp>.txt`` (appended)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ..io import atomic_path

LOG_KEYS = ("train_losses", "val_losses", "dice_per_class_or_region", "mean_fg_dice", "ema_fg_dice", "lrs",
            "epoch_start_timestamps", "epoch_end_timestamps")
LOG_VERSION = 1


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


class TrainingLogger:
    """nnU-Net's ``nnUNetLogger`` lists (one value per epoch), saved in checkpoints as ``logging``."""

    def __init__(self, fold_dir: Path, quiet: bool = False, enabled: bool = True):
        self.fold_dir = Path(fold_dir)
        self.log: dict[str, list] = {k: [] for k in LOG_KEYS}
        self.quiet = quiet
        self.enabled = enabled  # False on DDP ranks other than 0: nothing is written
        self.extra: dict[str, Any] = {}  # run-level JSON entries (e.g. "pretrained": the transfer report)
        stamp = time.strftime("%Y_%-m_%-d_%H_%M_%S")
        self.text_path = self.fold_dir / f"training_log_{stamp}.txt"

    def load(self, logging: dict[str, list], epochs_done: int) -> None:
        self.log = {k: list(logging.get(k, []))[:epochs_done] for k in LOG_KEYS}

    def append(self, key: str, value: Any) -> None:
        self.log[key].append(value)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        with open(self.text_path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {text}\n")

    def write_json(self) -> None:
        if not self.enabled:
            return
        epochs = []
        L = self.log
        for i in range(len(L["train_losses"])):
            epochs.append({
                "epoch": i,
                "train_loss": L["train_losses"][i],
                "val_loss": L["val_losses"][i] if i < len(L["val_losses"]) else None,
                "pseudo_dice": L["dice_per_class_or_region"][i] if i < len(L["dice_per_class_or_region"]) else None,
                "mean_fg_dice": L["mean_fg_dice"][i] if i < len(L["mean_fg_dice"]) else None,
                "ema_fg_dice": L["ema_fg_dice"][i] if i < len(L["ema_fg_dice"]) else None,
                "lr": L["lrs"][i],
                "epoch_time_s": L["epoch_end_timestamps"][i] - L["epoch_start_timestamps"][i]
                if i < len(L["epoch_end_timestamps"]) else None,
            })
        with atomic_path(self.fold_dir / "training_log.json") as tmp:
            Path(tmp).write_text(json.dumps({"version": LOG_VERSION, **self.extra, "epochs": _plain(epochs)}, indent=1))
