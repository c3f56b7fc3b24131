"""Dataset verification: every check nnU-Net's ``--verify_dataset_integrity`` makes, and more,
collected into one report (all problems at once, each naming the case and file) instead of
stopping at the first."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import ImageReadError, select_image_io
from .cases import training_cases
from .dataset_json import DatasetInfo, DatasetJsonError, load_dataset_json


@dataclass(frozen=True)
class Problem:
    case: str  # case identifier, or "dataset" for dataset-level problems
    severity: str  # "error" or "warning"
    message: str


@dataclass
class VerifyReport:
    dataset_dir: Path
    problems: list[Problem] = field(default_factory=list)
    num_cases: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, case: str, severity: str, message: str) -> None:
        self.problems.append(Problem(case, severity, message))

    def render(self, console=None) -> None:
        """Prints the report as a rich table (problems sorted by case)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=True)
        if not self.problems:
            console.print(f"[green]{self.dataset_dir.name}: {self.num_cases} cases verified, no problems[/green]")
            return
        table = Table(title=f"{self.dataset_dir.name}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        table.add_column("case")
        table.add_column("severity")
        table.add_column("problem")
        for p in sorted(self.problems, key=lambda p: (p.case != "dataset", p.case, p.severity)):
            colour = "red" if p.severity == "error" else "yellow"
            table.add_row(p.case, f"[{colour}]{p.severity}[/{colour}]", p.message)
        console.print(table)


class DatasetVerificationError(RuntimeError):
    """Raised by callers (planning) that refuse a dataset with errors."""


def _check_case(case: str, entry: dict, info: DatasetInfo, reader_name: str) -> list[Problem]:
    """All per-case checks; runs in a worker process."""
    from ..io import io_class_by_name

    out: list[Problem] = []
    io = io_class_by_name(reader_name)()
    try:
        data, props = io.read_images(entry["images"])
    except ImageReadError as e:
        return [Problem(case, "error", str(e))]
    if data.shape[0] != info.num_channels:
        out.append(Problem(case, "error", f"{data.shape[0]} channel(s) in the images, dataset.json declares {info.num_channels}"))
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(data.size - finite.sum() - n_nan)
        out.append(Problem(case, "error", f"images contain {n_nan} NaN and {n_inf} inf voxel(s)"))
    del finite
    label = entry.get("label")
    if label is None:
        return out
    try:
        seg, seg_props = io.read_seg(label)
    except ImageReadError as e:
        return out + [Problem(case, "error", str(e))]
    name = Path(label).name
    if seg.shape[1:] != data.shape[1:]:
        out.append(Problem(case, "error", f"shape mismatch: images {tuple(data.shape[1:])}, label {name} {tuple(seg.shape[1:])}"))
    if not np.allclose(seg_props["spacing"], props["spacing"]):
        out.append(
            Problem(case, "error", f"spacing mismatch: images {tuple(props['spacing'])}, label {name} {tuple(seg_props['spacing'])}")
        )
    a, b = props.get("sitk_stuff"), seg_props.get("sitk_stuff")
    if a and b:
        if not np.allclose(a["origin"], b["origin"], atol=1e-3):
            out.append(Problem(case, "warning", f"origin differs between images and label {name} (check alignment with an overlay)"))
        if not np.allclose(a["direction"], b["direction"], atol=1e-3):
            out.append(Problem(case, "warning", f"direction differs between images and label {name} (check alignment with an overlay)"))
    if not np.isfinite(seg).all():
        out.append(Problem(case, "error", f"label {name} contains NaN/inf"))
        return out
    values = np.unique(seg)
    non_integer = values[values != np.round(values)]
    if non_integer.size:
        out.append(Problem(case, "error", f"label {name} has non-integer values {non_integer[:5].tolist()}"))
    allowed = set(info.all_labels) | ({info.ignore_label} if info.ignore_label is not None else set())
    unexpected = sorted(int(v) for v in np.round(values) if int(v) not in allowed)
    if unexpected:
        out.append(Problem(case, "error", f"label {name} has values {unexpected} not declared in dataset.json {sorted(allowed)}"))
    return out


def verify_dataset(dataset_dir: str | Path, num_processes: int = 4) -> VerifyReport:
    """Checks a raw dataset folder; returns the report (never raises for data problems)."""
    dataset_dir = Path(dataset_dir)
    report = VerifyReport(dataset_dir)
    try:
        info = load_dataset_json(dataset_dir / "dataset.json")
    except DatasetJsonError as e:
        report.add("dataset", "error", str(e))
        return report

    declared = sorted(set(info.all_labels) | ({info.ignore_label} if info.ignore_label is not None else set()))
    if declared != list(range(len(declared))):
        report.add("dataset", "error", f"labels must be consecutive integers from 0, dataset.json declares {declared}")

    if info.explicit_cases is None:
        for sub in ("imagesTr", "labelsTr"):
            if not (dataset_dir / sub).is_dir():
                report.add("dataset", "error", f"folder {sub}/ is missing")
    cases = training_cases(dataset_dir, info)
    report.num_cases = len(cases)
    if len(cases) != info.num_training:
        report.add("dataset", "error", f"numTraining is {info.num_training} but {len(cases)} case(s) were found")
    if not cases:
        report.add("dataset", "error", f"no training cases found (images named CASE_0000{info.file_ending})")
        return report

    # Files: missing labels/images, wrong channel files, stray labels.
    expected_channels = [f"{i:04d}" for i in range(info.num_channels)]
    runnable = {}
    for case, entry in cases.items():
        missing = [str(p) for p in entry["images"] if not Path(p).is_file()]
        if missing:
            report.add(case, "error", f"image file(s) missing: {', '.join(missing)}")
            continue
        if info.explicit_cases is None:
            found = [Path(p).name[len(case) + 1 : len(case) + 5] for p in entry["images"]]
            if found != expected_channels:
                report.add(case, "error", f"channel files {found} found, expected {expected_channels} (one per channel_names entry)")
                continue
        label = entry.get("label")
        if label is None or not Path(label).is_file():
            report.add(case, "error", f"label file {label} is missing")
            continue
        runnable[case] = entry
    if info.explicit_cases is None and (dataset_dir / "labelsTr").is_dir():
        stray = sorted(
            p.name for p in (dataset_dir / "labelsTr").iterdir()
            if p.name.endswith(info.file_ending) and p.name[: -len(info.file_ending)] not in cases
        )
        for name in stray:
            report.add("dataset", "error", f"labelsTr/{name} has no images in imagesTr/")

    if not runnable:
        return report
    first = next(iter(runnable.values()))["images"][0]
    try:
        reader = select_image_io(info.file_ending, first, info.image_reader_writer)
    except ImageReadError as e:
        report.add("dataset", "error", str(e))
        return report
    reader_name = type(reader).__name__
    jobs = list(runnable.items())
    if num_processes <= 1 or len(jobs) == 1:
        results = [_check_case(c, e, info, reader_name) for c, e in jobs]
    else:
        with ProcessPoolExecutor(max_workers=min(num_processes, len(jobs), os.cpu_count() or 1)) as pool:
            results = list(pool.map(_check_case, [c for c, _ in jobs], [e for _, e in jobs], [info] * len(jobs), [reader_name] * len(jobs), chunksize=8))
    for problems in results:
        report.problems.extend(problems)
    return report
