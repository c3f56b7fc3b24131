"""nnU-Net's knobs: nnUNet_compile / nnUNet_n_proc_DA, and the --val / --val-best plumbing."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from oxunet.cli.train import train
from oxunet.training.loader import default_num_workers
from oxunet.training.trainer import Trainer, should_compile
from test_trainer import prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)


def test_compile_rule_as_nnunet(monkeypatch):
    # nnU-Net's _do_i_compile: never on CPU / MPS; on CUDA on by default, off with nnUNet_compile=false/0/f...
    assert should_compile(None, "cpu", {"nnUNet_compile": "true"}) is False
    assert should_compile(True, "cpu", {}) is False
    assert should_compile(None, "mps", {"nnUNet_compile": "1"}) is False
    assert should_compile(None, "cuda", {}) is True
    assert should_compile(None, "cuda", {"nnUNet_compile": "T"}) is True
    for off in ("false", "0", "f", "no"):
        assert should_compile(None, "cuda", {"nnUNet_compile": off}) is False
    assert should_compile(False, "cuda", {"nnUNet_compile": "true"}) is False  # an explicit config wins
    assert should_compile(True, "cuda", {"nnUNet_compile": "false"}) is True


def test_n_proc_da(monkeypatch):
    monkeypatch.setenv("nnUNet_n_proc_DA", "1")
    assert default_num_workers() == 1
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    assert default_num_workers() == 0
    monkeypatch.delenv("nnUNet_n_proc_DA")
    assert default_num_workers() == min(12, __import__("os").cpu_count())


def test_val_flags_choose_the_checkpoint(prepared, tmp_path, monkeypatch):  # noqa: F811
    calls = []
    summary = {"foreground_mean": {"Dice": 0.5}}
    # the flags reach the trainer as its RunOptions (which DDP ranks receive too)
    monkeypatch.setattr(Trainer, "run_final_validation",
                        lambda self, ck=None: calls.append(("val", ck or self.options.validation_checkpoint)) or summary)
    monkeypatch.setattr(Trainer, "run", lambda self, **kw: calls.append(("run", self.options.validation_checkpoint)))
    group = click.Group(commands={"train": train})
    base = ["train", "900", "3d_fullres", "0", "--device", "cpu", "--quiet", "--preprocessed-dir", str(prepared / "pre"),
            "--results-dir", str(tmp_path)]
    fold = tmp_path / "Dataset900_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "validation").mkdir()
    (fold / "validation" / "summary.json").write_text('{"foreground_mean": {"Dice": 0.5}}')
    for extra, expected in ((["--val"], ("val", "checkpoint_final.pth")), (["--val", "--val_best"], ("val", "checkpoint_best.pth")),
                            (["--val-best"], ("run", "checkpoint_best.pth")), ([], ("run", "checkpoint_final.pth"))):
        calls.clear()
        r = CliRunner().invoke(group, base + extra)
        assert r.exit_code == 0, r.output
        assert calls == [expected], extra
    r = CliRunner().invoke(group, base + ["--val", "--continue"])
    assert r.exit_code != 0 and "cannot be combined" in r.output


def test_run_final_validation_is_the_validation(prepared, tmp_path):  # noqa: F811
    from oxunet.dataset import resolve_paths
    from oxunet.training.config import TrainerConfig

    paths = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=tmp_path, environ={})
    tr = Trainer("900", "3d_fullres", 0, paths=paths, config=TrainerConfig(name="t", num_workers=0), quiet=True)
    with pytest.raises(Exception, match="checkpoint_best.pth: no checkpoint to validate"):
        tr.run_final_validation("checkpoint_best.pth")
