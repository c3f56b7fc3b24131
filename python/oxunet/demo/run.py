"""``oxunet demo``: the whole pipeline on one dataset, in minutes on a CPU.

verify → plan → preprocess (3d_fullres) → train fold 0 on a short budget → predict the fold's
validation cases from their raw images → evaluate against their labels. Everything lands under
one work folder laid out as nnU-Net's three roots (raw / preprocessed / results) plus
``predictions`` and ``evaluation``, so every artefact can be opened afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..dataset import Paths, dataset_name, load_dataset_json, training_cases
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


@dataclass
class DemoResult:
    work_dir: Path
    dataset: str
    artefacts: dict[str, Path] = field(default_factory=dict)
    dice: dict[str, float] = field(default_factory=dict)  # per label name, plus "mean"
    seconds: dict[str, float] = field(default_factory=dict)


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
             quiet: bool = False, log=print) -> DemoResult:
    """Runs the pipeline and returns the Dice per label and where everything is.
    ``log`` receives one line per step (the CLI passes a stderr printer)."""
    budget = budget or DemoBudget()
    work = Path(work_dir).resolve()
    paths = Paths(raw=work / "raw", preprocessed=work / "preprocessed", results=work / "results")
    nproc = num_processes or max(1, min(4, os.cpu_count() or 1))
    timings: dict[str, float] = {}

    def step(name: str):
        log(f"[demo] {name} ...")
        return time.perf_counter()

    t = step("dataset")
    if data is None:
        folder = make_demo_dataset(paths.raw)
        name = folder.name
    else:
        name = _link_dataset(Path(data), paths.raw)
    name = dataset_name(name, paths)
    raw_dir = paths.raw / name
    info = load_dataset_json(raw_dir / "dataset.json")
    timings["dataset"] = time.perf_counter() - t

    from ..dataset.verify import verify_dataset

    t = step("verify")
    report = verify_dataset(raw_dir, num_processes=nproc)
    if not report.ok:
        shown = "; ".join(f"{p.case}: {p.message}" for p in report.errors[:3])
        raise DemoError(f"verify: {raw_dir} has {len(report.errors)} problem(s): {shown}")
    timings["verify"] = time.perf_counter() - t

    from ..planning import plan_experiment
    from ..preprocessing.run import preprocess_dataset

    t = step("plan")
    plans = plan_experiment(name, paths, num_processes=nproc, quiet=quiet)
    timings["plan"] = time.perf_counter() - t
    t = step("preprocess")
    preprocess_dataset(name, paths, plans_name=plans["plans_name"], configurations=[CONFIGURATION],
                       num_processes=nproc, quiet=quiet)
    timings["preprocess"] = time.perf_counter() - t

    from ..training.config import TrainerConfig
    from ..training.trainer import Trainer

    t = step(f"train fold 0 ({budget.epochs} epochs x {budget.iterations_per_epoch} iterations, batch {budget.batch_size})")
    config = TrainerConfig(name="oxunetDemo").replace(
        epochs=budget.epochs, iterations_per_epoch=budget.iterations_per_epoch, val_iterations=budget.val_iterations,
        batch_size=budget.batch_size, num_workers=budget.num_workers, precision=precision)
    trainer = Trainer(name, CONFIGURATION, 0, paths=paths, config=config, plans_name=plans["plans_name"],
                      device=device, quiet=True)
    fold_dir = trainer.run(continue_training=True, validate=False)
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

    t = step(f"predict {len(val_keys)} validation case(s)")
    pred_dir = work / "predictions"
    predict_folder(input_dir, pred_dir, model_dir, folds=[0], tta=tta, device=device, precision=precision, quiet=quiet)
    timings["predict"] = time.perf_counter() - t

    from ..evaluation import evaluate_folders

    t = step("evaluate")
    eval_file = work / "evaluation" / "summary.json"
    eval_file.parent.mkdir(exist_ok=True)
    labels = list(info.foreground_regions) if info.has_regions else list(info.foreground_labels)
    summary = evaluate_folders(reference_dir, pred_dir, labels, ignore_label=info.ignore_label,
                               file_ending=info.file_ending, output_file=eval_file, num_processes=nproc, quiet=quiet)
    timings["evaluate"] = time.perf_counter() - t

    names = {str(v): k for k, v in info.raw["labels"].items() if not isinstance(v, (list, tuple))}
    dice = {names.get(str(k), str(k)): float(v["Dice"]) for k, v in summary["mean"].items()}
    dice["mean"] = float(summary["foreground_mean"]["Dice"])
    result = DemoResult(work, name, dice=dice, seconds=timings, artefacts={
        "raw dataset": raw_dir, "plans": paths.preprocessed / name / f"{plans['plans_name']}.json",
        "preprocessed": paths.preprocessed / name, "model folder": model_dir, "training log": fold_dir / "training_log.json",
        "predictions": pred_dir, "evaluation": eval_file})
    (work / "demo_result.json").write_text(json.dumps(
        {"version": 1, "dataset": name, "dice": dice, "seconds": timings,
         "artefacts": {k: str(v) for k, v in result.artefacts.items()}}, indent=1))
    return result
