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
from ..errors import DatasetError


@dataclass(frozen=True)
class Problem:
    case: str  # case identifier, or "dataset" for dataset-level problems
    severity: str  # "error", "warning" or "info"
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
        if not self.errors and not self.warnings:
            for p in self.problems:
                console.print(f"{p.case}: {p.message}")
            console.print(f"[green]{self.dataset_dir.name}: {self.num_cases} cases verified, no problems[/green]")
            return
        table = Table(title=f"{self.dataset_dir.name}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        table.add_column("case")
        table.add_column("severity")
        table.add_column("problem")
        for p in sorted(self.problems, key=lambda p: (p.case != "dataset", p.case, p.severity)):
            colour = {"error": "red", "warning": "yellow"}.get(p.severity, "blue")
            table.add_row(p.case, f"[{colour}]{p.severity}[/{colour}]", p.message)
        console.print(table)


class DatasetVerificationError(DatasetError, RuntimeError):
    """Raised by callers (planning) that refuse a dataset with errors."""


# a case whose spacing differs from the dataset's median by more than this factor on an
# axis is named (a wrong header, e.g. mm vs m, blows up resampling)
SPACING_OUTLIER_FACTOR = 10.0


@dataclass(frozen=True)
class CaseStats:
    """What the dataset-level checks need from one case."""

    spacing: tuple[float, ...]
    shape: tuple[int, ...]
    has_foreground: bool | None  # None when the label could not be read


def _check_case(case: str, entry: dict, info: DatasetInfo, reader_name: str) -> tuple[list[Problem], CaseStats | None]:
    """All per-case checks (every one of them, not stopping at the first problem); runs in a
    worker process."""
    from ..io import io_class_by_name
    from ..io.integrity import incomplete_reason

    out: list[Problem] = []
    files = list(entry["images"]) + ([entry["label"]] if entry.get("label") is not None else [])
    for f in files:
        reason = incomplete_reason(f)
        if reason:
            out.append(Problem(case, "error", f"{Path(f).name}: {reason}"))
    io_class = io_class_by_name(reader_name)
    if io_class is None:  # the name comes from a reader already selected, so this is a bug
        raise DatasetError(f"unknown image reader {reader_name!r}")
    io = io_class()
    try:
        data, props = io.read_images(entry["images"])
    except ImageReadError as e:
        return out + [Problem(case, "error", str(e))], None
    if data.shape[0] != info.num_channels:
        out.append(Problem(case, "error", f"{data.shape[0]} channel(s) in the images, dataset.json declares {info.num_channels}"))
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(data.size - finite.sum() - n_nan)
        out.append(Problem(case, "error", f"images contain {n_nan} NaN and {n_inf} inf voxel(s)"))
    del finite
    spacing = tuple(float(v) for v in props["spacing"])
    shape = tuple(int(v) for v in data.shape[1:])
    if not all(np.isfinite(v) and v > 0 for v in spacing):
        out.append(Problem(case, "error", f"spacing {spacing} is not positive and finite"))
    label = entry.get("label")
    if label is None:
        return out, CaseStats(spacing, shape, None)
    try:
        seg, seg_props = io.read_seg(label)
    except ImageReadError as e:
        return out + [Problem(case, "error", str(e))], CaseStats(spacing, shape, None)
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
    finite_seg = np.isfinite(seg)
    if not finite_seg.all():
        out.append(Problem(case, "error", f"label {name} contains {int(seg.size - finite_seg.sum())} NaN/inf voxel(s)"))
        seg = np.where(finite_seg, seg, 0)
    del finite_seg
    values = np.unique(seg)
    non_integer = values[values != np.round(values)]
    if non_integer.size:
        out.append(Problem(case, "error", f"label {name} has non-integer values {non_integer[:5].tolist()}"))
    allowed = set(info.all_labels) | ({info.ignore_label} if info.ignore_label is not None else set())
    unexpected = sorted(int(v) for v in np.round(values) if int(v) not in allowed)
    if unexpected:
        out.append(Problem(case, "error", f"label {name} has values {unexpected} not declared in dataset.json {sorted(allowed)}"))
    background = {0} | ({info.ignore_label} if info.ignore_label is not None else set())
    has_fg = any(int(v) not in background for v in np.round(values))
    return out, CaseStats(spacing, shape, has_fg)


def _dataset_checks(report: "VerifyReport", stats: dict[str, CaseStats]) -> None:
    """Checks across cases: spacing outliers, 2D cases in a 3D dataset, foreground."""
    if not stats:
        return
    spacings = {c: s.spacing for c, s in stats.items()}
    ndims = {len(sp) for sp in spacings.values()}
    if len(ndims) == 1:
        median = np.median(np.array(list(spacings.values())), axis=0)
        for case, sp in spacings.items():
            ratio = [max(v / m, m / v) if v > 0 and m > 0 else np.inf for v, m in zip(sp, median)]
            if max(ratio) > SPACING_OUTLIER_FACTOR:
                axis = int(np.argmax(ratio))
                report.add(case, "warning",
                           f"spacing {tuple(round(v, 4) for v in sp)} differs from the dataset median "
                           f"{tuple(round(float(m), 4) for m in median)} by {ratio[axis]:.0f}x on axis {axis} "
                           "(a wrong header? resampling follows it)")
    # 2D cases in a 3D dataset: a singleton spatial axis where the typical case has none
    shapes = {c: s.shape for c, s in stats.items()}
    flat = {c for c, sh in shapes.items() if len(sh) == 3 and min(sh) == 1}
    if flat and len(flat) < len(shapes):
        three_d = [sh for c, sh in shapes.items() if c not in flat and len(sh) == 3]
        if three_d:
            for case in sorted(flat):
                report.add(case, "error", f"a 2D image (shape {shapes[case]}) in a 3D dataset (e.g. {three_d[0]})")
    with_label = {c: s.has_foreground for c, s in stats.items() if s.has_foreground is not None}
    if with_label and not any(with_label.values()):
        report.add("dataset", "error", f"no foreground in any of the {len(with_label)} label file(s): there is nothing to learn")
    else:
        empty = sorted(c for c, fg in with_label.items() if not fg)
        if empty:
            shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            report.add("dataset", "info", f"{len(empty)} of {len(with_label)} case(s) have no foreground: {shown}")


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
        # every file check runs (no stopping at the first); only complete cases are read
        complete = True
        missing = [str(p) for p in entry["images"] if not Path(p).is_file()]
        if missing:
            report.add(case, "error", f"image file(s) missing: {', '.join(missing)}")
            complete = False
        if info.explicit_cases is None:
            found = [Path(p).name[len(case) + 1 : len(case) + 5] for p in entry["images"]]
            if found != expected_channels:
                report.add(case, "error", f"channel files {found} found, expected {expected_channels} (one per channel_names entry)")
                complete = False
        label = entry.get("label")
        if label is None or not Path(label).is_file():
            report.add(case, "error", f"label file {label} is missing")
            complete = False
        if complete:
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
    stats = {}
    for (case, _), (problems, case_stats) in zip(jobs, results):
        report.problems.extend(problems)
        if case_stats is not None:
            stats[case] = case_stats
    _dataset_checks(report, stats)
    return report
