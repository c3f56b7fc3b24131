"""The setup step only reads: read_fold_context (and the Trainer constructor) write nothing, not
even the default splits file, which the run writes."""

from __future__ import annotations

import json
import os
import shutil

from oxunet.dataset import resolve_paths
from oxunet.training.config import TrainerConfig
from oxunet.training.fold import read_fold_context
from oxunet.training.splits import kfold_splits
from oxunet.training.trainer import Trainer
from test_trainer import prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)


def _snapshot(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_setup_reads_only(prepared, tmp_path):  # noqa: F811
    pre = tmp_path / "pre"
    shutil.copytree(prepared / "pre", pre)
    splits = pre / "Dataset900_Tiny" / "splits_final.json"
    splits.unlink(missing_ok=True)
    paths = resolve_paths(preprocessed_dir=pre, results_dir=tmp_path / "res", environ={})
    before = _snapshot(tmp_path)
    ctx = read_fold_context("900", "3d_fullres", 1, paths)
    cfg = TrainerConfig(epochs=1, iterations_per_epoch=1, val_iterations=1, num_workers=0, precision="fp32", seed=1,
                        progress_plot=False)
    tr = Trainer("900", "3d_fullres", 1, paths=paths, config=cfg, quiet=True)
    assert _snapshot(tmp_path) == before and not (tmp_path / "res").exists()
    expected = kfold_splits(list(ctx.cases))[1]
    assert (list(ctx.train_keys), list(ctx.val_keys)) == (expected["train"], expected["val"])
    assert ctx.configuration.patch_size == (16, 16, 16) and ctx.num_input_channels == 1
    assert ctx.fold_dir == tmp_path / "res" / "Dataset900_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_1"
    tr.run(validate=False)
    assert json.loads(splits.read_text()) == kfold_splits(list(ctx.cases))  # the run wrote nnU-Net's default
    assert os.path.isfile(ctx.fold_dir / "checkpoint_final.pth")
