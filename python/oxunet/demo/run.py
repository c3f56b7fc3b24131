"""``oxunet demo``: the whole pipeline on one dataset, in minutes on a CPU.

verify → plan → preprocess (3d_fullres) → train fold 0 on a short budget → predict the fold's
validation cases from their raw images → evaluate against their labels → ``report.html``
(:mod:`oxunet.report`). Everything lands under one work folder laid out as nnU-Net's three roots
(raw / preprocessed / results) plus ``predictions`` and ``evaluation``, so every artefact can be
opened afterwards. The training seed is fixed (``DemoBudget.seed``): same seed, same numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..dataset import Paths, dataset_name, load_dataset_json, training_cases
from ..report.collect import peak_rss_mib
from .progress import PlainProgress
from .synthetic import make_demo_dataset
from ..errors import OxunetError

CONFIGURATION = "3d_fullres"


class DemoError(OxunetError, RuntimeError):
    """A demo step failed; the message names the step and the cause."""


@dataclass
class DemoBudget:
    """The short training budget (nnU-Net's defaults are 1000 epochs x 250 iterations)."""

    epochs: int = 10
    iterations_per_epoch: int = 20
    val_iterations: int = 2
    batch_size: int = 2
    num_workers: int = 1
    seed: int = 0  # the training seed: a fixed default makes the demo give the same numbers every run


@dataclass
class DemoResult:
    work_dir: Path
    dataset: str
    artefacts: dict[str, Path] = field(default_factory=dict)
    dice: dict[str, float] = field(default_factory=dict)  # per label name, plus "mean"
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # per step: the process's peak so far
    worker_peak_rss_mib: dict[str, float] = field(default_factory=dict)  # per step: its largest worker's so far


def _link_dataset(source: Path, raw_root: Path) -> str:
    """Makes ``source`` (a raw dataset folder) visible under ``raw_root`` without copying it."""
    if not (source / "dataset.json").is_file():
        raise DemoError(f"{source}: not a raw dataset folder (no dataset.json)")
    name = source.name
    if not name.startswith("Dataset"):
        raise DemoError(f"{source}: raw dataset folders are named DatasetXXX_Name")
    target = raw_root / name
    if not target.exists():
        raw_root.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source.resolve(), target_is_directory=True)
    return name


def run_demo(work_dir: str | Path, data: str | Path | None = None, budget: DemoBudget | None = None, *,
             device: str = "cpu", precision: str = "auto", tta: str = "all", num_processes: int | None = None,
             quiet: bool = False, log=print, progress=None) -> DemoResult:
    """Runs the pipeline and returns the Dice per label and where everything is.
    ``progress`` (:mod:`oxunet.demo.progress`) is told each step and each epoch; by default one
    line each goes to ``log``."""
    budget = budget or DemoBudget()
    progress = progress or PlainProgress(log)
    work = Path(work_dir).resolve()
    raw_root, pre_root = work / "raw", work / "preprocessed"
    paths = Paths(raw=raw_root, preprocessed=pre_root, results=work / "results")
    nproc = num_processes or max(1, min(4, os.cpu_count() or 1))
    timings: dict[str, float] = {}
    memory: dict[str, float] = {}
    workers: dict[str, float] = {}
    current: list[str] = []

    def peaks(key: str) -> None:
        memory[key], workers[key] = round(peak_rss_mib(), 1), round(peak_rss_mib(children=True), 1)

    def step(name: str, key: str, epochs: int = 0):
        if current:  # the previous step ends where this one starts
            peaks(current[-1])
        current.append(key)
        progress.step(name, epochs)
        return time.perf_counter()

    t = step("dataset", "dataset")
    if data is None:
        folder = make_demo_dataset(raw_root)
        name = folder.name
    else:
        name = _link_dataset(Path(data), raw_root)
    name = dataset_name(name, paths)
    raw_dir = raw_root / name
    info = load_dataset_json(raw_dir / "dataset.json")
    timings["dataset"] = time.perf_counter() - t

    from ..dataset.verify import verify_dataset

    t = step("verify", "verify")
    checked = verify_dataset(raw_dir, num_processes=nproc)
    if not checked.ok:
        shown = "; ".join(f"{p.case}: {p.message}" for p in checked.errors[:3])
        raise DemoError(f"verify: {raw_dir} has {len(checked.errors)} problem(s): {shown}")
    timings["verify"] = time.perf_counter() - t

    from ..planning import plan_experiment
    from ..preprocessing.run import preprocess_dataset

    t = step("plan", "plan")
    plans = plan_experiment(name, paths, num_processes=nproc, quiet=quiet)
    timings["plan"] = time.perf_counter() - t
    t = step("preprocess", "preprocess")
    preprocess_dataset(name, paths, plans_name=plans["plans_name"], configurations=[CONFIGURATION],
                       num_processes=nproc, quiet=quiet)
    timings["preprocess"] = time.perf_counter() - t

    from ..training.config import TrainerConfig
    from ..training.trainer import Trainer

    t = step(f"train fold 0 ({budget.epochs} epochs x {budget.iterations_per_epoch} iterations, batch {budget.batch_size})",
             "train", budget.epochs)
    progress.label_names = _label_names(info)
    config = TrainerConfig(name="oxunetDemo").replace(
        epochs=budget.epochs, iterations_per_epoch=budget.iterations_per_epoch, val_iterations=budget.val_iterations,
        batch_size=budget.batch_size, num_workers=budget.num_workers, precision=precision, seed=budget.seed)
    trainer = Trainer(name, CONFIGURATION, 0, paths=paths, config=config, plans_name=plans["plans_name"],
                      device=device, quiet=True, on_epoch_end=progress.epoch)
    from ..training.checkpoint import find_resume_checkpoint

    # resume an interrupted demo; a first run starts quietly (no "nothing to continue from" warning)
    resume = find_resume_checkpoint(trainer.fold_dir) is not None
    fold_dir = trainer.run(continue_training=resume, validate=False)
    model_dir = fold_dir.parent
    timings["train"] = time.perf_counter() - t

    # the fold's validation cases were never trained on: predict them from their raw images
    cases = training_cases(raw_dir, info)
    val_keys = list(trainer.val_keys)
    input_dir = work / "predict_input"
    shutil.rmtree(input_dir, ignore_errors=True)
    input_dir.mkdir(parents=True)
    reference_dir = work / "reference"
    shutil.rmtree(reference_dir, ignore_errors=True)
    reference_dir.mkdir()
    for case in val_keys:
        for image in cases[case]["images"]:
            (input_dir / Path(image).name).symlink_to(Path(image).resolve())
        label = Path(cases[case]["label"])
        (reference_dir / label.name).symlink_to(label.resolve())

    from ..inference import predict_folder

    t = step(f"predict {len(val_keys)} validation case(s)", "predict")
    pred_dir = work / "predictions"
    predict_folder(input_dir, pred_dir, model_dir, folds=[0], tta=tta, device=device, precision=precision, quiet=quiet)
    timings["predict"] = time.perf_counter() - t

    from ..evaluation import evaluate_folders

    t = step("evaluate", "evaluate")
    eval_file = work / "evaluation" / "summary.json"
    eval_file.parent.mkdir(exist_ok=True)
    labels = list(info.foreground_regions) if info.has_regions else list(info.foreground_labels)
    summary = evaluate_folders(reference_dir, pred_dir, labels, ignore_label=info.ignore_label,
                               file_ending=info.file_ending, output_file=eval_file, num_processes=nproc, quiet=quiet)
    timings["evaluate"] = time.perf_counter() - t
    peaks("evaluate")

    from ..report import Stage, write_report

    t = step("report", "report")
    stages = [Stage(k, v, memory.get(k), workers.get(k)) for k, v in timings.items()]
    report = write_report(model_dir, work / "report.html", raw_dir=raw_root, stages=stages,
                          summaries={"0": eval_file}, title=f"oxunet demo: {name}, fold 0")
    timings["report"] = time.perf_counter() - t
    peaks("report")
    progress.close()

    names = {str(v): k for k, v in info.raw["labels"].items() if not isinstance(v, (list, tuple))}
    dice = {names.get(str(k), str(k)): float(v["Dice"]) for k, v in summary["mean"].items()}
    dice["mean"] = float(summary["foreground_mean"]["Dice"])
    artefacts = {
        "raw dataset": raw_dir, "plans": pre_root / name / f"{plans['plans_name']}.json",
        "preprocessed": pre_root / name, "model folder": model_dir, "training log": fold_dir / "training_log.json",
        "predictions": pred_dir, "evaluation": eval_file, "report": report, "progress plot": fold_dir / "progress.png"}
    result = DemoResult(work, name, artefacts=artefacts, dice=dice, seconds=timings, peak_rss_mib=memory,
                        worker_peak_rss_mib=workers)
    (work / "demo_result.json").write_text(json.dumps(
        {"version": 1, "dataset": name, "seed": budget.seed, "dice": dice, "seconds": timings, "peak_rss_mib": memory,
         "worker_peak_rss_mib": workers,
         "artefacts": {k: str(v) for k, v in result.artefacts.items()}}, indent=1))
    return result


def _label_names(info) -> list[str]:
    """Names of the foreground labels (or regions) in the network's output order."""
    if info.has_regions:
        return [k for k, v in info.raw["labels"].items() if isinstance(v, (list, tuple))]
    names = {int(v): k for k, v in info.raw["labels"].items() if not isinstance(v, (list, tuple))}
    return [names.get(int(v), str(v)) for v in info.foreground_labels]
