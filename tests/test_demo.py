"""`oxunet demo` end to end on the synthetic default, with a short budget."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from oxunet.demo.synthetic import LABELS, demo_case, make_demo_dataset


def test_demo_cases_have_both_structures_and_contrast():
    rng = np.random.default_rng(3)
    image, seg = demo_case((32, 48, 48), rng)
    assert set(np.unique(seg)) == {0, 1, 2}
    # tissue fills the volume and the core is brighter, the cyst darker, than all of it: both are
    # learnable from intensity alone (no band between a dark outside and the tissue)
    tissue = image[seg == 0]
    assert abs(np.median(tissue) - 100) < 5
    assert image[seg == 1].mean() > tissue.mean() + 60
    assert image[seg == 2].mean() < tissue.mean() - 50
    assert (seg == 1).sum() > 500 and (seg == 2).sum() > 500  # solid, several voxels in radius


def test_demo_dataset_layout(tmp_path):
    folder = make_demo_dataset(tmp_path, num_cases=3, shape=(8, 12, 12))
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["labels"] == LABELS and ds["numTraining"] == 3
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"demo_{i:03d}_0000.nii.gz" for i in range(3)]
    assert len(list((folder / "labelsTr").iterdir())) == 3


def test_demo_rejects_a_folder_that_is_not_a_dataset(tmp_path):
    from oxunet.cli import main

    (tmp_path / "notadataset").mkdir()
    r = CliRunner().invoke(main, ["demo", "--data", str(tmp_path / "notadataset"), "-o", str(tmp_path / "w"), "--quiet"])
    assert r.exit_code != 0
    assert "not a raw dataset folder" in r.output


def _dice_rows(output: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"│\s*(\w+)\s*│\s*([0-9.]+)\s*│", output)}


def test_demo_short_budget_learns_both_and_is_deterministic(tmp_path):
    """The README's main job on a 2 x 10-iteration budget: every step runs, both structures are
    found far above chance (their volume fraction, < 5 %), a log gets one line per epoch, the report
    and progress.png are written; retraining with the same seed gives the same numbers."""
    from oxunet.cli import main

    args = ["demo", "-o", str(tmp_path / "w"), "--epochs", "2", "--iters-per-epoch", "10", "--tta", "none", "--seed", "5"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    rows = _dice_rows(r.stdout)
    assert set(rows) == {"core", "cyst", "mean"}
    assert rows["core"] > 0.5 and rows["cyst"] > 0.5
    # no terminal: plain lines, one per step and one per epoch with loss and pseudo-Dice per label
    epochs = re.findall(r"\[demo\] epoch (\d)/2: train loss -?[0-9.]+, val loss -?[0-9.]+, pseudo-Dice core [0-9.]+ cyst [0-9.]+",
                        r.stderr)
    assert epochs == ["1", "2"]
    assert "[demo] report ..." in r.stderr
    w = tmp_path / "w"
    summary = json.loads((w / "evaluation" / "summary.json").read_text())
    assert summary["mean"]["1"]["Dice"] == pytest.approx(rows["core"], abs=1e-4)
    assert len(summary["metric_per_case"]) == 4  # fold 0 of 20 cases
    result = json.loads((w / "demo_result.json").read_text())
    assert result["seed"] == 5 and set(result["peak_rss_mib"]) >= {"train", "predict", "evaluate"}
    assert result["peak_rss_mib"]["train"] > 100 and set(result["worker_peak_rss_mib"]) == set(result["peak_rss_mib"])
    assert "largest worker so far (MiB)" in Path(result["artefacts"]["report"]).read_text()
    page = Path(result["artefacts"]["report"]).read_text()
    assert all(Path(c["prediction_file"]).name.split(".")[0] in page for c in summary["metric_per_case"])
    assert Path(result["artefacts"]["progress plot"]).stat().st_size > 10_000
    # same seed, trained again from scratch (the preprocessed data is reused): same losses, same Dice
    log = json.loads(Path(result["artefacts"]["training log"]).read_text())["epochs"]
    shutil.rmtree(w / "results")
    again = CliRunner().invoke(main, args + ["--quiet"])
    assert again.exit_code == 0, again.output
    assert json.loads(Path(result["artefacts"]["training log"]).read_text())["epochs"][-1]["train_loss"] == log[-1]["train_loss"]
    assert _dice_rows(again.stdout) == rows


def test_rich_progress_shows_steps_and_epochs():
    import io

    from rich.console import Console

    from oxunet.demo.progress import RichProgress
    from oxunet.training.trainer import EpochSummary

    out = io.StringIO()
    progress = RichProgress(Console(file=out, force_terminal=True, width=150))
    progress.label_names = ["core", "cyst"]
    progress.step("plan")
    progress.step("train fold 0", epochs=2)
    for epoch in range(2):
        progress.epoch(EpochSummary(epoch, -0.5 - epoch / 10, -0.6, [0.81, 0.7 + epoch / 10], 0.7, 0.01, 1.0))
    progress.close()
    text = out.getvalue()
    assert "✓" in text and "plan" in text and "2/2" in text
    assert "train fold 0: loss -0.600, pseudo-Dice core 0.810 cyst 0.800" in text


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_demo_every_label_reaches_0_8_for_any_seed(tmp_path, seed):
    """The full demo (default budget) with three seeds: every label's Dice >= 0.8."""
    from oxunet.cli import main

    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "w"), "--seed", str(seed), "--quiet"])
    assert r.exit_code == 0, r.output
    rows = _dice_rows(r.stdout)
    assert set(rows) == {"core", "cyst", "mean"}
    assert min(rows.values()) >= 0.8, rows
    result = json.loads((tmp_path / "w" / "demo_result.json").read_text())
    assert result["dice"]["mean"] == pytest.approx(rows["mean"], abs=1e-4)
    for what, path in result["artefacts"].items():
        assert Path(path).exists(), what
