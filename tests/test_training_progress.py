"""progress.png: written from the logger's lists, decodes as a PNG; skipped cleanly without matplotlib."""

from __future__ import annotations

import sys

import numpy as np

from oxunet.training import progress_plot
from oxunet.training.progress_plot import write_progress_png


def _log(n: int) -> dict:
    return {"train_losses": list(np.linspace(0, -0.5, n)), "val_losses": [None] + list(np.linspace(0, -0.4, n - 1)),
            "mean_fg_dice": [float("nan")] + [0.1 * i for i in range(1, n)], "ema_fg_dice": [0.05 * i for i in range(n)],
            "lrs": [0.01 * (1 - i / n) ** 0.9 for i in range(n)], "epoch_start_timestamps": [10.0 * i for i in range(n)],
            "epoch_end_timestamps": [10.0 * i + 7 + i for i in range(n)], "dice_per_class_or_region": [[]] * n}


def test_progress_png_written_and_decodes(tmp_path):
    import matplotlib.image

    assert write_progress_png(_log(4), tmp_path)
    img = matplotlib.image.imread(tmp_path / "progress.png")
    assert img.shape[:2] == (1800, 1200)
    # not blank: the curves put several colours on the canvas
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 10
    assert not list(tmp_path.glob(".progress*"))  # no temporary left behind
    assert write_progress_png({k: [] for k in _log(1)}, tmp_path / "empty") is False


def test_without_matplotlib_one_log_line(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` raise ImportError
    monkeypatch.setattr(progress_plot, "_WARNED", False)
    lines: list[str] = []
    assert write_progress_png(_log(2), tmp_path, lines.append) is False
    assert write_progress_png(_log(3), tmp_path, lines.append) is False
    assert lines == ["matplotlib is not installed: progress.png is not written"]
    assert not (tmp_path / "progress.png").exists()
