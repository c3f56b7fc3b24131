"""`oxunet demo` end to end on the synthetic default, with a short budget."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from oxunet.demo.synthetic import LABELS, demo_case, make_demo_dataset


def test_demo_cases_have_both_structures_and_contrast():
    rng = np.random.default_rng(3)
    image, seg = demo_case((32, 48, 48), rng)
    assert set(np.unique(seg)) == {0, 1, 2}
    # the core is bright, the shell dim, relative to tissue: learnable from intensity alone
    tissue = image[(seg == 0) & (image > 60)]
    assert image[seg == 1].mean() > tissue.mean() + 50
    assert image[seg == 2].mean() < tissue.mean() - 30


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


def test_demo_short_budget_learns_the_bright_structure(tmp_path):
    """The README's main job on a 20-iteration budget (about a minute on 2 cores): every step runs
    and the easy structure is found far above chance (its volume fraction, < 5 %)."""
    from oxunet.cli import main

    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "w"), "--epochs", "2", "--iters-per-epoch", "10",
                                  "--tta", "none", "--quiet"])
    assert r.exit_code == 0, r.output
    rows = _dice_rows(r.output)
    assert set(rows) == {"core", "shell", "mean"}
    assert rows["core"] > 0.5
    summary = json.loads((tmp_path / "w" / "evaluation" / "summary.json").read_text())
    assert summary["mean"]["1"]["Dice"] == pytest.approx(rows["core"], abs=1e-4)
    assert len(summary["metric_per_case"]) == 4  # fold 0 of 20 cases


@pytest.mark.slow
def test_demo_end_to_end_beats_chance(tmp_path):
    from oxunet.cli import main

    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "w"), "--epochs", "8", "--iters-per-epoch", "20",
                                  "--tta", "none", "--precision", "fp32", "--quiet"])
    assert r.exit_code == 0, r.output
    rows = _dice_rows(r.output)
    assert set(rows) >= {"core", "shell", "mean"}
    # chance: a prediction that ignores the image overlaps each structure by its volume fraction (< 5 %)
    assert float(rows["core"]) > 0.5
    assert float(rows["mean"]) > 0.3
    result = json.loads((tmp_path / "w" / "demo_result.json").read_text())
    assert result["dice"]["mean"] == pytest.approx(float(rows["mean"]), abs=1e-4)
    for what, path in result["artefacts"].items():
        assert Path(path).exists(), what
    assert (tmp_path / "w" / "evaluation" / "summary.json").is_file()
