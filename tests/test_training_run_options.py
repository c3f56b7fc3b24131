"""RunOptions reach every rank: `--npz --num-gpus 2` writes the validation .npz files (it wrote none
before the trainer was split), identical to what one process writes from the same checkpoint."""

from __future__ import annotations

import shutil

import click
import numpy as np
import pytest
from click.testing import CliRunner

from oxunet.cli.train import train
from oxunet.dataset import resolve_paths
from oxunet.training import distributed as ddp
from oxunet.training.config import TrainerConfig
from oxunet.training.run_options import RunOptions
from oxunet.training.trainer import Trainer
from test_trainer import NAME, prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)

FOLD = f"{NAME}/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0"
BASE = ["--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
        "--precision", "fp32", "--quiet"]


def _cli(prepared, results, *extra):  # noqa: F811
    group = click.Group(commands={"train": train})
    r = CliRunner().invoke(group, ["train", "900", "3d_fullres", "0", *BASE, *extra, "--preprocessed-dir",
                                   str(prepared / "pre"), "--results-dir", str(results)])
    assert r.exit_code == 0, r.output
    return results / FOLD


def test_rank_entry_receives_the_run_options(prepared, tmp_path):  # noqa: F811
    # the function every spawned rank runs, here in-process (world size 1): --npz reaches validation
    cfg = TrainerConfig(name="nnUNetTrainer", epochs=1, iterations_per_epoch=1, val_iterations=1, num_workers=0,
                        precision="fp32", seed=3, progress_plot=False)
    paths = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=tmp_path, environ={})
    options = RunOptions(device="cpu", quiet=True, export_probabilities=True)
    ddp.train_rank_with_class(Trainer, ("900", "3d_fullres", 0), dict(paths=paths, config=cfg, options=options))
    fold = tmp_path / FOLD
    val_cases = sorted(p.name for p in (fold / "validation").glob("*.nii.gz"))
    assert val_cases and sorted(p.name for p in (fold / "validation").glob("*.npz")) == [
        c.replace(".nii.gz", ".npz") for c in val_cases]


@pytest.mark.slow  # spawns two gloo ranks (~70 s on the loaded 2-core machine)
def test_npz_with_two_gloo_ranks_matches_one_process(prepared, tmp_path):  # noqa: F811
    fold = _cli(prepared, tmp_path / "ddp", "--npz", "--num-gpus", "2")
    npz = sorted((fold / "validation").glob("*.npz"))
    assert npz, "--npz --num-gpus 2 wrote no .npz files"
    # the same checkpoint validated by one process
    single = tmp_path / "one" / FOLD
    single.mkdir(parents=True)
    shutil.copy(fold / "checkpoint_final.pth", single / "checkpoint_final.pth")
    for name in ("plans.json", "dataset.json"):
        shutil.copy(fold.parent / name, single.parent / name)
    _cli(prepared, tmp_path / "one", "--npz", "--val")
    for f in npz:
        a, b = np.load(f), np.load(single / "validation" / f.name)
        assert np.array_equal(a["probabilities"], b["probabilities"]), f.name
