"""Faults leave nothing behind (issue 12, item 4): a SIGKILLed training, checkpoint save,
prediction or evaluation is picked up by the next run with a result equal to an uninterrupted
run; --continue without a checkpoint says so; a bad checkpoint on --continue is one line; a dead
data-loading worker stops training with one message."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from inference_models import tiny_project, write_model_folder
from synthetic import make_dataset

NAME = "Dataset920_Faults"
HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "python")


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(extra)
    return env


def _oxunet(*args, **kw):
    return subprocess.run([sys.executable, "-m", "oxunet.cli", *args], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 600), env=_env(), **kw)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
        assert time.time() - t0 < timeout, "timed out waiting for the moment to kill"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*") if ".tmp-" in p.name)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from oxunet.dataset import resolve_paths
    from oxunet.planning import plan_experiment
    from oxunet.preprocessing.run import preprocess_dataset

    root = tmp_path_factory.mktemp("faults")
    make_dataset(root / "raw" / NAME, shapes=[(20, 24, 22)] * 5, spacings=[(1, 1, 1)] * 5)
    paths = resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=root / "res", environ={})
    plans = plan_experiment("920", paths, quiet=True, num_processes=1)
    c = plans["configurations"]["3d_fullres"]
    c["patch_size"], c["batch_size"] = [16, 16, 16], 2
    c["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 8]
    (root / "pre" / NAME / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))
    preprocess_dataset("920", paths, configurations=["3d_fullres"], num_processes=[1], quiet=True)
    cfg = dict(name="faults", epochs=3, iterations_per_epoch=3, val_iterations=1, num_workers=0, precision="fp32",
               seed=11, progress_plot=False)
    (root / "cfg.json").write_text(json.dumps(cfg))
    return root


def _train_args(root: Path, results: Path, *extra) -> list[str]:
    return ["train", "920", "3d_fullres", "0", "-tr", str(root / "cfg.json"), "--device", "cpu", "--quiet",
            "--preprocessed-dir", str(root / "pre"), "--results-dir", str(results), *extra]


def _fold(results: Path) -> Path:
    return results / NAME / "faults__nnUNetPlans__3d_fullres" / "fold_0"  # trainer name: the config's


SLOW_SAVE = """
import sys, time, torch
from oxunet.training.checkpoint import save_checkpoint
class Slow:  # pickled after torch has opened the temporary: the kill lands mid-write
    def __reduce__(self):
        print("writing", flush=True)
        time.sleep(120)
        return (int, (0,))
save_checkpoint(sys.argv[1], {"network_weights": {"w": torch.zeros(1000)}, "slow": Slow()})
"""


def test_train_continue_after_sigkill_equals_uninterrupted(prepared, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    done = _oxunet(*_train_args(prepared, a))
    assert done.returncode == 0, done.stderr
    # a real training run killed once its first checkpoint exists
    proc = subprocess.Popen([sys.executable, "-m", "oxunet.cli", *_train_args(prepared, b)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: (_fold(b) / "checkpoint_latest.pth").is_file())
    # and a checkpoint save killed mid-write: its temporary stays behind
    saver = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(_fold(b) / "checkpoint_latest.pth")], env=_env(),
                             stdout=subprocess.PIPE, text=True)
    assert saver.stdout.readline().strip() == "writing"
    _kill_when(saver, lambda: True)
    left = _temporaries(_fold(b))
    assert [p.name for p in left] == [f".checkpoint_latest.pth.tmp-{saver.pid}"]

    resumed = _oxunet(*_train_args(prepared, b, "--continue"))
    assert resumed.returncode == 0, resumed.stderr
    assert _temporaries(_fold(b)) == []
    from oxunet.networks import load_nnunet_checkpoint

    wa = load_nnunet_checkpoint(_fold(a) / "checkpoint_final.pth")["network_weights"]
    wb = load_nnunet_checkpoint(_fold(b) / "checkpoint_final.pth")["network_weights"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_continue_without_checkpoint_says_so(prepared, tmp_path):
    out = _oxunet(*_train_args(prepared, tmp_path, "--continue", "--epochs", "1", "--iters-per-epoch", "1"))
    assert out.returncode == 0, out.stderr
    assert "--continue: no checkpoint in" in out.stderr and "starting from scratch" in out.stderr
    assert str(_fold(tmp_path)) in out.stderr


def test_truncated_or_refused_checkpoint_on_continue_is_one_line(prepared, tmp_path):
    fold = _fold(tmp_path)
    fold.mkdir(parents=True)
    good = tmp_path / "good.pth"
    torch.save({"network_weights": {"w": torch.zeros(10000)}}, good)
    (fold / "checkpoint_latest.pth").write_bytes(good.read_bytes()[:3000])
    out = _oxunet(*_train_args(prepared, tmp_path, "--continue"))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "checkpoint_latest.pth" in lines[0] and "not a readable torch checkpoint" in lines[0]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"network_weights": {}, "x": Evil()}, fold / "checkpoint_latest.pth")
    out = _oxunet(*_train_args(prepared, tmp_path, "--continue"))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "checkpoint_latest.pth: refused to load" in lines[0] and "pwned" not in out.stdout


def test_dead_loader_worker_stops_training_with_one_message(prepared, tmp_path):
    import psutil

    cfg = json.loads((prepared / "cfg.json").read_text())
    cfg.update(iterations_per_epoch=100000, epochs=1, num_workers=1)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    args = _train_args(prepared, tmp_path)
    args[args.index("-tr") + 1] = str(tmp_path / "cfg.json")
    proc = subprocess.Popen([sys.executable, "-m", "oxunet.cli", *args], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        workers = []
        while not workers:
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() - t0 < 180, "no loader worker appeared"
            workers = [c for c in psutil.Process(proc.pid).children(recursive=True) if c.status() != "zombie"]
            time.sleep(0.2)
        time.sleep(1.0)
        workers[0].send_signal(signal.SIGKILL)
        t_kill = time.time()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.time() - t_kill < 30
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, err
    assert f"pid {workers[0].pid}" in lines[0] and "data-loading worker" in lines[0] and "memory" in lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_predict")
    proj = tiny_project(root)
    model_dir = write_model_folder(root / "model", proj["plans"], proj["dataset_json"], "3d_fullres", folds=(0,),
                                   nnunet=False)
    inputs = root / "in"
    inputs.mkdir()
    for f in sorted((proj["raw"] / "imagesTr").iterdir()):
        shutil.copy(f, inputs / f.name)
    return {"model": model_dir, "inputs": inputs, "labels": proj["raw"] / "labelsTr"}


def _predict_args(model, out: Path, *extra):
    return ["predict", "-i", str(model["inputs"]), "-o", str(out), "-m", str(model["model"]), "-f", "0",
            "--device", "cpu", "--precision", "fp32", "--quiet", "-npp", "0", "-nps", "0", *extra]


def test_predict_continue_and_evaluate_after_sigkill(model, tmp_path):
    import SimpleITK as sitk

    full, part = tmp_path / "full", tmp_path / "part"
    assert _oxunet(*_predict_args(model, full)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "oxunet.cli", *_predict_args(model, part)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: part.is_dir() and any(p.name.endswith(".nii.gz") and not p.name.startswith(".")
                                                   for p in part.iterdir()))
    # what a kill during an export leaves: the killed process's hidden temporary
    (part / f".case_003.tmp-{proc.pid}.nii.gz").write_bytes(b"half an image")
    done_before = sorted(p.name for p in part.glob("case_*.nii.gz"))
    assert 0 < len(done_before) < 4
    evaluate = ["evaluate", str(model["labels"]), str(part), "-djfile", str(model["model"] / "dataset.json"),
                "-pfile", str(model["model"] / "plans.json"), "--quiet"]
    # evaluate ignores the temporary: it scores the finished cases instead of refusing the folder
    ev = _oxunet(*evaluate, "--chill")
    assert ev.returncode == 0, ev.stderr
    scored = [Path(c["prediction_file"]).name for c in json.loads((part / "summary.json").read_text())["metric_per_case"]]
    assert scored == done_before
    out = _oxunet(*_predict_args(model, part, "--continue"))
    assert out.returncode == 0, out.stderr
    assert _temporaries(part) == []
    for f in sorted(full.glob("case_*.nii.gz")):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(part / f.name)))
        assert np.array_equal(a, b), f.name


def test_evaluate_after_sigkill_leaves_a_usable_folder(model, tmp_path):
    pred = tmp_path / "pred"
    assert _oxunet(*_predict_args(model, pred)).returncode == 0
    evaluate = ["evaluate", str(model["labels"]), str(pred), "-djfile", str(model["model"] / "dataset.json"),
                "-pfile", str(model["model"] / "plans.json"), "--quiet"]
    first = _oxunet(*evaluate)
    assert first.returncode == 0, first.stderr
    expected = json.loads((pred / "summary.json").read_text())
    (pred / "summary.json").unlink()
    proc = subprocess.Popen([sys.executable, "-m", "oxunet.cli", *evaluate], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(2.0)  # mid-run (imports, reading) or done: either way the next run must work
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (pred / f".summary.tmp-{proc.pid}.json").write_text("{\"half\": ")
    again = _oxunet(*evaluate)
    assert again.returncode == 0, again.stderr
    assert json.loads((pred / "summary.json").read_text()) == expected


@pytest.mark.parametrize("torch_text, pids, how", [
    ("DataLoader worker (pid 4242) is killed by signal: Killed. ", "pid 4242", "was killed by signal Killed"),
    ("DataLoader worker (pid(s) 4242, 4243) exited unexpectedly", "pid 4242, 4243", "exited unexpectedly"),
    ("DataLoader worker (pid(s) 77) exited unexpectedly", "pid 77)", "exited unexpectedly"),
])
def test_worker_death_names_the_pids_in_both_torch_messages(torch_text, pids, how):
    from oxunet.training.loader import worker_death_error

    err = worker_death_error(RuntimeError(torch_text))
    assert pids in str(err) and how in str(err) and "memory" in str(err)
    assert worker_death_error(RuntimeError("CUDA out of memory")) is None
