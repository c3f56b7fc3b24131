"""The report's pictures, each returned as a ``data:image/png;base64,...`` URI so the HTML file
needs nothing beside it: training curves and the network (matplotlib), worst-case overlays
(:mod:`oxunet.overlay`, no plotting library)."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .collect import ModelSummary


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return png_uri(buf.getvalue())


def _values(epochs: list[dict], key: str) -> list[float]:
    return [float("nan") if e.get(key) is None else float(e[key]) for e in epochs]


def training_curves(log: dict[str, Any], label_names: Sequence[str], title: str) -> str | None:
    """Loss (train/val) beside pseudo-Dice per label and its EMA, for one fold's training_log.json."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = log.get("epochs") or []
    if not epochs:
        return None
    x = [e["epoch"] for e in epochs]
    fig = Figure(figsize=(10, 3.4), dpi=90)
    FigureCanvasAgg(fig)
    loss_ax, dice_ax = fig.subplots(1, 2)
    loss_ax.plot(x, _values(epochs, "train_loss"), "b-", label="train loss")
    loss_ax.plot(x, _values(epochs, "val_loss"), "r-", label="validation loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_title(f"{title}: loss", fontsize=10)
    loss_ax.legend(fontsize=8)
    per_label = [e.get("pseudo_dice") or [] for e in epochs]
    n = max((len(p) for p in per_label), default=0)
    for k in range(n):
        name = label_names[k] if k < len(label_names) else f"label {k + 1}"
        dice_ax.plot(x, [p[k] if k < len(p) and p[k] is not None else math.nan for p in per_label], ":", label=name)
    dice_ax.plot(x, _values(epochs, "ema_fg_dice"), "g-", lw=2, label="mean (EMA)")
    dice_ax.set_ylim(0, 1.02)
    dice_ax.set_xlabel("epoch")
    dice_ax.set_title(f"{title}: pseudo-Dice", fontsize=10)
    dice_ax.legend(fontsize=8)
    fig.tight_layout()
    return _figure_uri(fig)


def network_diagram(summary: ModelSummary) -> str | None:
    from ..networks.diagram import network_figure

    try:
        fig = network_figure(summary.plans, [summary.configuration], str(summary.folder / "plans.json"))
    except Exception:  # an unusual plan must not stop the report: the table still lists it
        return None
    return _figure_uri(fig)


def _most_different_slice(reference: np.ndarray, prediction: np.ndarray) -> int:
    """An axis-0 slice showing the errors: among the slices with at least half the largest
    disagreement, the one with most foreground (an edge slice with a few wrong voxels shows
    little); without disagreement the one with most reference foreground, else the middle."""
    wrong = (reference != prediction).reshape(reference.shape[0], -1).sum(1)
    foreground = ((reference > 0) | (prediction > 0)).reshape(reference.shape[0], -1).sum(1)
    if wrong.max() > 0:
        candidates = np.flatnonzero(wrong * 2 >= wrong.max())
        return int(candidates[np.argmax(foreground[candidates])])
    if foreground.max() > 0:
        return int(foreground.argmax())
    return reference.shape[0] // 2


def case_overlay(image_file: Path | None, reference_file: str, prediction_file: str) -> tuple[str, int]:
    """Image | image + reference | image + prediction at the slice where they disagree most.
    Without the raw image the reference's labels serve as grey background. Returns (uri, slice)."""
    from ..overlay import encode_png, load_volume, render_overlay

    reference, spacing = load_volume(reference_file)
    prediction, _ = load_volume(prediction_file)
    reference, prediction = np.rint(reference).astype(np.int32), np.rint(prediction).astype(np.int32)
    image = load_volume(image_file)[0] if image_file is not None else reference.astype(np.float32)
    if image.shape != reference.shape or prediction.shape != reference.shape:
        raise ValueError(f"shapes differ: image {image.shape}, reference {reference.shape}, prediction {prediction.shape}")
    z = _most_different_slice(reference, prediction)
    tiles = [render_overlay(image, label, slices=[z], spacing=spacing, min_tile=160)
             for label in (None, reference, prediction)]
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    return png_uri(encode_png(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))), z
