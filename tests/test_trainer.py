"""Trainer, loader and config on a tiny synthetic dataset (patch 16³, 3 stages, 4–8 features)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from oxunet.dataset import resolve_paths
from oxunet.networks import load_nnunet_checkpoint
from oxunet.planning import plan_experiment
from oxunet.preprocessing.run import preprocess_dataset
from oxunet.training.config import TrainerConfig, TrainerConfigError, builtin_config, load_trainer_config
from oxunet.training.trainer import Trainer, TrainingError, poly_lr
from synthetic import make_dataset

NAME = "Dataset900_Tiny"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    make_dataset(root / "raw" / NAME, shapes=[(20, 24, 22)] * 5, spacings=[(1, 1, 1)] * 5)
    paths = resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=root / "res", environ={})
    plans = plan_experiment("900", paths, quiet=True, num_processes=1)
    c = plans["configurations"]["3d_fullres"]
    c["patch_size"], c["batch_size"] = [16, 16, 16], 2
    c["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 8]
    (root / "pre" / NAME / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))
    preprocess_dataset("900", paths, configurations=["3d_fullres"], num_processes=[1], quiet=True)
    return root


def _paths(root):
    return resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=root / "res", environ={})


def _cfg(**kw):
    base = dict(name="tiny", epochs=2, iterations_per_epoch=2, val_iterations=1, num_workers=0, precision="fp32", seed=7)
    base.update(kw)
    return TrainerConfig(**base)


def test_loader_shapes_and_forced_foreground(prepared):
    from oxunet.training.loader import epoch_loader

    tr = Trainer("900", "3d_fullres", 0, paths=_paths(prepared), config=_cfg(oversample_foreground_percent=0.5))
    tr._build()
    assert tr.train_spec.patch_size != (16, 16, 16)  # enlarged initial patch
    batches = list(epoch_loader(tr.train_spec, 6, seed=1, epoch=0))
    b = batches[0]
    assert b["data"].shape == (2, 1, 16, 16, 16) and b["data"].dtype == torch.float32
    assert isinstance(b["target"], list) and len(b["target"]) == 2
    assert b["target"][0].shape == (2, 1, 16, 16, 16) and b["target"][1].shape == (2, 1, 8, 8, 8)
    # sample 1 of each batch is forced: the validation loader (no augmentation) always shows foreground there
    vb = list(epoch_loader(tr.val_spec, 8, seed=3, epoch=0))
    assert all(int(v["target"][0][1].max()) > 0 for v in vb)
    # determinism: same (seed, epoch) → same batches, also through a worker
    again = list(epoch_loader(tr.train_spec, 2, seed=1, epoch=0, num_workers=1))
    assert torch.equal(again[0]["data"], batches[0]["data"]) and torch.equal(again[1]["data"], batches[1]["data"])


def test_poly_lr_values():
    assert poly_lr(0.01, 0, 1000) == 0.01
    assert poly_lr(0.01, 999, 1000) == pytest.approx(0.01 * (1 / 1000) ** 0.9)
    assert poly_lr(0.01, 500, 1000) == pytest.approx(0.01 * 0.5 ** 0.9)


def test_training_run_and_exact_resume(prepared, tmp_path):
    paths = _paths(prepared)
    res_a = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=tmp_path / "a", environ={})
    res_b = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=tmp_path / "b", environ={})
    fold_a = Trainer("900", "3d_fullres", 0, paths=res_a, config=_cfg(), quiet=True).run()
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"):
        ck = load_nnunet_checkpoint(fold_a / name)
        assert {"network_weights", "optimizer_state", "logging", "_best_ema", "current_epoch", "init_args",
                "trainer_name", "inference_allowed_mirroring_axes"} <= set(ck)
    log = json.loads((fold_a / "training_log.json").read_text())
    assert len(log["epochs"]) == 2 and log["epochs"][1]["lr"] == pytest.approx(poly_lr(0.01, 1, 2))
    assert (fold_a.parent / "plans.json").is_file() and (fold_a.parent / "dataset.json").is_file()
    summary = json.loads((fold_a / "validation" / "summary.json").read_text())
    assert {"foreground_mean", "mean", "metric_per_case"} <= set(summary)
    assert set(summary["metric_per_case"][0]["metrics"]["1"]) >= {"Dice", "IoU", "TP", "FP", "FN"}

    half = Trainer("900", "3d_fullres", 0, paths=res_b, config=_cfg(), quiet=True).run(stop_after_epochs=1)
    assert load_nnunet_checkpoint(half / "checkpoint_latest.pth")["current_epoch"] == 1
    assert not (half / "checkpoint_final.pth").exists()
    fold_b = Trainer("900", "3d_fullres", 0, paths=res_b, config=_cfg(), quiet=True).run(continue_training=True, validate=False)
    wa = load_nnunet_checkpoint(fold_a / "checkpoint_final.pth")["network_weights"]
    wb = load_nnunet_checkpoint(fold_b / "checkpoint_final.pth")["network_weights"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bad_inputs(prepared, tmp_path):
    paths = _paths(prepared)
    with pytest.raises(TrainingError, match="fold"):
        Trainer("900", "3d_fullres", "x", paths=paths, config=_cfg())
    with pytest.raises(TrainingError, match="3d_lowres"):
        Trainer("900", "3d_lowres", 0, paths=paths, config=_cfg())
    copy = tmp_path / "pre"
    shutil.copytree(prepared / "pre", copy)
    ds = copy / NAME / "nnUNetPlans_3d_fullres"
    shutil.rmtree(ds)
    with pytest.raises(TrainingError, match="preprocessed data"):
        Trainer("900", "3d_fullres", 0, paths=resolve_paths(preprocessed_dir=copy, results_dir=tmp_path, environ={}), config=_cfg())
    shutil.copytree(prepared / "pre" / NAME / "nnUNetPlans_3d_fullres", ds)
    dj = json.loads((copy / NAME / "dataset.json").read_text())
    dj["channel_names"] = {"0": "CT", "1": "CT"}
    (copy / NAME / "dataset.json").write_text(json.dumps(dj))
    with pytest.raises(TrainingError, match="do not match"):
        Trainer("900", "3d_fullres", 0, paths=resolve_paths(preprocessed_dir=copy, results_dir=tmp_path, environ={}), config=_cfg())


def test_config_variants(tmp_path):
    assert builtin_config("nnUNetTrainer_5epochs").epochs == 5
    assert builtin_config("nnUNetTrainerNoDeepSupervision").deep_supervision is False
    assert builtin_config("nnUNetTrainerDiceCELoss_noSmooth").loss_smooth == 0.0
    with pytest.raises(TrainerConfigError, match="unknown trainer"):
        builtin_config("nnUNetTrainerFoo")
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"name": "mine", "base": "nnUNetTrainerCELoss", "epochs": 3}))
    c = load_trainer_config(p)
    assert (c.name, c.loss, c.epochs) == ("mine", "ce", 3)
    p.write_text(json.dumps({"name": "mine", "epoch": 3}))
    with pytest.raises(TrainerConfigError, match="epoch"):
        load_trainer_config(p)


def test_cli_smoke(prepared, tmp_path):
    import click
    from click.testing import CliRunner

    from oxunet.cli.train import train

    group = click.Group(commands={"train": train})
    args = ["train", "900", "3d_fullres", "all", "--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1",
            "--num-workers", "0", "--device", "cpu", "--precision", "fp32", "--quiet", "--disable_checkpointing",
            "--preprocessed-dir", str(prepared / "pre"), "--results-dir", str(tmp_path)]
    r = CliRunner().invoke(group, args)
    assert r.exit_code == 0, r.output
    fold = tmp_path / NAME / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_all"
    assert str(fold) in r.output and (fold / "validation" / "summary.json").is_file()
    # --disable_checkpointing: only the final checkpoint, which validation and prediction load
    assert sorted(p.name for p in fold.glob("*.pth")) == ["checkpoint_final.pth"]
    # the final validation (re)writes the model folder's report, with this fold's validation cases in it
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    page = (fold.parent / "report.html").read_text()
    assert 'id="cases"' in page and 'alt="training curves of fold all"' in page
    assert all(Path(c["prediction_file"]).name.split(".")[0] in page for c in summary["metric_per_case"])
    r = CliRunner().invoke(group, ["train", "900", "3d_fullres", "7x", "--preprocessed-dir", str(prepared / "pre"),
                                   "--results-dir", str(tmp_path)])
    assert r.exit_code != 0 and "fold" in r.output
    r = CliRunner().invoke(group, ["train", "900", "3d_fullres", "0", "-tr", "nnUNetTrainerNope",
                                   "--preprocessed-dir", str(prepared / "pre"), "--results-dir", str(tmp_path)])
    assert r.exit_code != 0 and "unknown trainer" in r.output
