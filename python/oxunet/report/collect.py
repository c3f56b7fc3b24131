"""Everything the report shows, read from a model folder (and the demo's result file when present).

A model folder is nnU-Net's ``<results>/<dataset>/<trainer>__<plans>__<configuration>`` with
``plans.json``, ``dataset.json`` (``dataset_fingerprint.json``) and ``fold_X/`` folders holding
``training_log.json`` and ``validation/summary.json``. Missing pieces are left empty: a report of a
fold still training shows its curves and no validation table.
"""

from __future__ import annotations

import json
import math
import re
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# per-case columns, in this order, whenever summary.json has them (HD95/ASSD/NSD only with --hd95 & co.)
METRIC_COLUMNS = ("Dice", "IoU", "HD95", "ASSD", "NSD")


class ReportError(RuntimeError):
    """The folder is not a model folder (no plans.json / dataset.json); the message names it."""


@dataclass
class CaseRow:
    fold: str
    case: str
    metrics: dict[str, dict[str, float]]  # label key -> metric -> value
    reference_file: str
    prediction_file: str

    def mean_dice(self) -> float:
        values = [m["Dice"] for m in self.metrics.values() if _finite(m.get("Dice"))]
        return sum(values) / len(values) if values else float("nan")


@dataclass
class Stage:
    name: str
    seconds: float | None
    peak_rss_mib: float | None = None  # the process's peak up to the end of the stage
    worker_peak_rss_mib: float | None = None  # its largest finished worker's, likewise


@dataclass
class ModelSummary:
    folder: Path
    dataset_json: dict[str, Any]
    plans: dict[str, Any]
    configuration: str
    trainer: str
    fingerprint: dict[str, Any] | None
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)  # fold -> training_log.json
    debug: dict[str, dict[str, Any]] = field(default_factory=dict)  # fold -> debug.json
    cases: list[CaseRow] = field(default_factory=list)
    means: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # fold -> label -> metric -> mean
    stages: list[Stage] = field(default_factory=list)

    @property
    def label_names(self) -> dict[str, str]:
        """summary.json label key ("1" or "(1, 2)") -> the dataset's name for it."""
        out = {}
        for name, value in self.dataset_json.get("labels", {}).items():
            key = str(tuple(value)) if isinstance(value, (list, tuple)) else str(value)
            out[key] = name
        return out

    @property
    def label_keys(self) -> list[str]:
        keys: list[str] = []
        for row in self.cases:
            keys += [k for k in row.metrics if k not in keys]
        return keys

    @property
    def metric_columns(self) -> list[str]:
        present = {m for row in self.cases for per in row.metrics.values() for m in per}
        return [m for m in METRIC_COLUMNS if m in present]


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory so far of this process, or (``children``) of its largest finished
    child process (worker pools, data loaders), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _read_json(path: Path) -> Any:
    # nnU-Net writes NaN into summary.json; json reads it
    return json.loads(path.read_text())


def _case_name(path: str, file_ending: str) -> str:
    name = Path(path).name
    return name[: -len(file_ending)] if file_ending and name.endswith(file_ending) else name.split(".")[0]


def _fold_key(folder: Path) -> tuple[int, str]:
    name = folder.name[len("fold_"):]
    return (int(name), name) if name.isdigit() else (10**6, name)


def collect(model_folder: str | Path, stages: list[Stage] | None = None,
            summaries: dict[str, str | Path] | None = None) -> ModelSummary:
    """``summaries``: fold -> a summary.json to use instead of ``fold_X/validation/summary.json``
    (the demo scores its own predictions of the fold's cases)."""
    folder = Path(model_folder).resolve()
    for required in ("plans.json", "dataset.json"):
        if not (folder / required).is_file():
            raise ReportError(f"{folder}: not a model folder ({required} missing; expected "
                              "<results>/<dataset>/<trainer>__<plans>__<configuration>)")
    parts = folder.name.split("__")
    trainer, configuration = (parts[0], parts[-1]) if len(parts) == 3 else (folder.name, "?")
    fingerprint = folder / "dataset_fingerprint.json"
    summary = ModelSummary(folder, _read_json(folder / "dataset.json"), _read_json(folder / "plans.json"),
                           configuration, trainer, _read_json(fingerprint) if fingerprint.is_file() else None)
    ending = summary.dataset_json.get("file_ending", "")
    for fold_dir in sorted((p for p in folder.glob("fold_*") if p.is_dir()), key=_fold_key):
        fold = fold_dir.name[len("fold_"):]
        if (fold_dir / "training_log.json").is_file():
            summary.logs[fold] = _read_json(fold_dir / "training_log.json")
        if (fold_dir / "debug.json").is_file():
            summary.debug[fold] = _read_json(fold_dir / "debug.json")
        val = Path((summaries or {}).get(fold, fold_dir / "validation" / "summary.json"))
        if val.is_file():
            data = _read_json(val)
            summary.means[fold] = data.get("mean", {})
            for entry in data.get("metric_per_case", []):
                summary.cases.append(CaseRow(fold, _case_name(entry["prediction_file"], ending), entry["metrics"],
                                             entry["reference_file"], entry["prediction_file"]))
    summary.stages = stages if stages is not None else training_stages(summary)
    return summary


def training_stages(summary: ModelSummary) -> list[Stage]:
    """Time per fold's training, from the epoch timestamps of its log (the demo passes its own stages)."""
    out = []
    for fold, log in summary.logs.items():
        seconds = sum(e.get("epoch_time_s") or 0.0 for e in log.get("epochs", []))
        out.append(Stage(f"training fold {fold} ({len(log.get('epochs', []))} epochs)", seconds))
    return out


def raw_image_for(summary: ModelSummary, case: str, raw_dir: Path | None) -> Path | None:
    """The first channel of ``case`` in the raw dataset (imagesTr, then imagesTs), when it can be found."""
    if raw_dir is None:
        return None
    name = summary.plans.get("dataset_name") or summary.folder.parent.name
    ending = summary.dataset_json.get("file_ending", ".nii.gz")
    for sub in ("imagesTr", "imagesTs"):
        candidate = Path(raw_dir) / name / sub / f"{case}_0000{ending}"
        if candidate.is_file():
            return candidate
    return None


def natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
