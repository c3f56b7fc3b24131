"""Preprocessing a whole dataset, per configuration, in parallel over cases, resumable.

Output: ``<preprocessed>/DatasetXXX/<data_identifier>/`` (format: :mod:`.storage`) and the
training labels copied to ``<preprocessed>/DatasetXXX/gt_segmentations/`` (as nnU-Net does).

Unlike nnU-Net, which deletes the output folder and redoes every case, a rerun keeps the
cases that are complete, made from unchanged input files with the same plan, and redoes the
rest; ``clean=True`` starts from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from .._workers import map_cases
from ..dataset import Paths, dataset_name, load_dataset_json, resolve_paths, training_cases
from ..io import atomic_path
from . import storage
from .configuration import PlansError, PreprocessingPlan
from .pipeline import ClassKey, PreprocessingError, class_location_keys, preprocess_case

__all__ = ["ConfigurationReport", "DEFAULT_NUM_PROCESSES", "preprocess_dataset"]

DEFAULT_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
DEFAULT_NUM_PROCESSES = {"2d": 8, "3d_fullres": 4, "3d_lowres": 8}  # nnU-Net's; 4 for any other


@dataclass
class ConfigurationReport:
    """What happened to one configuration."""

    configuration: str
    folder: Path | None = None
    processed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped_reason: str | None = None


def _source_stat(files: Sequence[Path | None]) -> list:
    """Size and mtime of the input files: a case made from other bytes is redone on resume."""
    out = []
    for f in files:
        if f is None:
            continue
        st = os.stat(f)
        out.append([os.path.basename(f), st.st_size, st.st_mtime_ns])
    return out


def _process_one(case: str, image_files: list, label_file, plan: PreprocessingPlan,
                 class_keys: list[ClassKey], folder: str, source: list) -> str | None:
    """Worker: preprocess and store one case. Returns None, or the error text naming the case
    (returned, not raised, so that one bad case does not hide the others)."""
    try:
        data, seg, props = preprocess_case(image_files, label_file, None, plan, case=case, class_keys=class_keys)
        locations = props.pop("class_locations", None)
        storage.write_case(folder, case, data, seg, props, locations, source=source)
        return None  # nothing big travels back to the parent
    except Exception as e:  # noqa: BLE001 — reported per case by the driver
        return _describe(case, e)


def _describe(case: str, e: BaseException) -> str:
    from ..io import ImageReadError
    from .normalization import NormalizationError

    text = str(e)
    if not isinstance(e, (PreprocessingError, storage.StorageError, PlansError, ImageReadError, NormalizationError)):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__  # unexpected: keep the type
    return text if text.startswith(f"case {case}:") else f"case {case}: {text}"


def _num_processes_per_configuration(configurations: Sequence[str], num_processes) -> list[int]:
    if num_processes is None:
        return [DEFAULT_NUM_PROCESSES.get(c, 4) for c in configurations]
    if isinstance(num_processes, int):
        values = [num_processes]
    else:
        values = [int(n) for n in num_processes]
    if len(values) == 1:
        values = values * len(configurations)
    if len(values) != len(configurations):
        raise ValueError(
            f"num_processes: give one value or one per configuration ({len(configurations)}: "
            f"{', '.join(configurations)}), got {len(values)}"
        )
    if any(v < 1 for v in values):
        raise ValueError(f"num_processes: every value must be >= 1, got {values}")
    return values


def _copy_ground_truth(cases: dict, target: Path, file_ending: str) -> None:
    """Labels to ``gt_segmentations`` (only when the source is newer, as nnU-Net's copy_file(update=True))."""
    target.mkdir(parents=True, exist_ok=True)
    for case, entry in cases.items():
        src = entry["label"]
        dst = target / f"{case}{file_ending}"
        if dst.exists() and os.stat(dst).st_mtime_ns >= os.stat(src).st_mtime_ns:
            continue
        with atomic_path(dst) as tmp:
            shutil.copy2(src, tmp)


def preprocess_dataset(
    dataset: str | int,
    paths: Paths | None = None,
    plans_name: str = "nnUNetPlans",
    configurations: Sequence[str] = DEFAULT_CONFIGURATIONS,
    num_processes: int | Sequence[int] | None = None,
    clean: bool = False,
    quiet: bool = False,
) -> dict[str, ConfigurationReport]:
    """Preprocesses the training cases of `dataset` for each configuration of the plans.

    Parameters
    ----------
    dataset : id (4) or folder name (Dataset004_Hippocampus).
    paths : raw/preprocessed roots (default: from the environment, OXUNET_* then nnUNet_*).
    plans_name : plans file ``<preprocessed>/DatasetXXX/<plans_name>.json``.
    configurations : configurations to run; those absent from the plans are skipped with a note.
    num_processes : one value for all, or one per configuration; None = nnU-Net's defaults
        (2d 8, 3d_fullres 4, 3d_lowres 8, others 4). Capped at the number of CPUs.
    clean : delete each output folder first instead of resuming.
    quiet : no progress bars or notes.

    Raises :class:`PreprocessingError` listing every failed case (the others are stored; a
    rerun only redoes the failed ones), :class:`PlansError` for unusable plans.
    """
    from rich.console import Console

    console = Console(stderr=True, quiet=quiet)
    n_per_config = _num_processes_per_configuration(configurations, num_processes)
    paths = paths or resolve_paths()
    name = dataset_name(dataset, paths)
    raw_dir = paths.require("raw") / name
    out_root = paths.require("preprocessed") / name
    plans_file = out_root / f"{plans_name}.json"
    if not plans_file.is_file():
        raise FileNotFoundError(f"{plans_file}: plans not found (run planning first, or check --plans-name)")
    from ..planning.model import Plans

    plans = Plans.load(plans_file)  # parsed and checked once; errors name the file and the field
    info = load_dataset_json(raw_dir / "dataset.json")
    cases = training_cases(raw_dir, info)
    if not cases:
        raise FileNotFoundError(f"{raw_dir}: no training cases found")
    missing = [c for c, e in cases.items() if e["label"] is None or not Path(e["label"]).is_file()]
    if missing:
        raise PreprocessingError(f"{name}: no label file for case(s) {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")
    class_keys = class_location_keys(info)
    cpus = os.cpu_count() or 1

    reports: dict[str, ConfigurationReport] = {}
    for configuration, n in zip(configurations, n_per_config):
        report = reports[configuration] = ConfigurationReport(configuration)
        if configuration not in plans.configurations:
            report.skipped_reason = f"configuration {configuration!r} is not in {plans_file.name}"
            console.print(f"[yellow]note[/]: {report.skipped_reason}; skipping it")
            continue
        plan = PreprocessingPlan.from_plans(plans, configuration)
        folder = out_root / plan.data_identifier
        report.folder = folder
        signature = json.loads(json.dumps({"plan": plan.signature(), "class_keys": class_keys}, default=list))
        previous = storage.read_folder_info(folder)
        if clean and folder.is_dir():
            shutil.rmtree(folder)
        elif previous is None or previous.get("signature") != signature:
            stale = storage.list_cases(folder, complete_only=False)
            if stale:  # made with other plans (or unknown ones): they cannot be kept
                console.print(f"[yellow]note[/]: {folder} holds {len(stale)} case(s) made with other plans; redoing them")
                for case in stale:
                    storage.remove_case(folder, case)
        storage.remove_temporary_files(folder)
        storage.write_folder_info(folder, {"configuration": configuration, "plans_name": plans_name, "signature": signature})

        jobs = []
        for case, entry in cases.items():
            source = _source_stat([*entry["images"], entry["label"]])
            if storage.case_is_complete(folder, case, source):
                report.kept.append(case)
                continue
            jobs.append((case, [str(p) for p in entry["images"]], str(entry["label"]), plan, class_keys, str(folder), source))
        if report.kept:
            console.print(f"{name} {configuration}: {len(report.kept)} case(s) already done, {len(jobs)} to go")
        workers = max(1, min(n, cpus, len(jobs)))
        try:
            errors = map_cases(_worker_entry, [(workers, *j) for j in jobs], workers,
                               f"{name} {configuration}", quiet=quiet)
        except BrokenProcessPool:
            raise PreprocessingError(
                f"{name} {configuration}: a worker process died (most likely out of memory); the finished cases are "
                f"kept, rerun with fewer processes (-np) to continue"
            ) from None
        failed = [e for e in errors if e is not None]
        report.processed = [j[0] for j, e in zip(jobs, errors) if e is None]
        if failed:
            raise PreprocessingError(
                f"{name} {configuration}: {len(failed)} of {len(jobs)} case(s) failed (the others are stored; a "
                "rerun redoes only the failed ones):\n  " + "\n  ".join(failed)
            )

    _copy_ground_truth(cases, out_root / "gt_segmentations", info.file_ending)
    return reports


def _worker_entry(workers: int, *job) -> str | None:
    # share the cores between worker processes instead of each kernel using all of them
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        from ..kernels import set_num_threads

        set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    return _process_one(*job)
