"""Folder evaluation with nnU-Net's ``summary.json`` (``compute_metrics_on_folder``): same case
matching, same keys, same NaN rules, same JSON layout (sorted keys, indent 4, ``NaN``)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..dataset.dataset_json import all_label_values, foreground_regions, labels_have_regions
from ..io import ImageIO, atomic_path, select_image_io
from ..io.atomic import is_temporary
from .metrics import OVERLAP_METRICS, SURFACE_METRICS, compute_metrics, normalize_labels
from ..errors import EvaluationError  # noqa: F401 - this stage's error, re-exported

KNOWN_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".gipl", ".png", ".bmp", ".tiff", ".tif")
DEFAULT_PROCESSES = max(1, min(8, os.cpu_count() or 1))


def list_files(folder: str | os.PathLike, file_ending: str) -> list[str]:
    """Sorted file names in ``folder`` ending with ``file_ending`` (nnU-Net's ``subfiles``)."""
    folder = str(folder)
    if not os.path.isdir(folder):
        raise EvaluationError(f"{folder}: not a folder")
    # the hidden temporaries of an interrupted writer are not predictions
    return sorted(n for n in os.listdir(folder)
                  if n.endswith(file_ending) and not is_temporary(n) and os.path.isfile(os.path.join(folder, n)))


def infer_file_ending(folder: str | os.PathLike) -> str:
    """The most common known image ending among the files of ``folder``."""
    counts: dict[str, int] = {}
    for name in os.listdir(folder):
        if is_temporary(name):
            continue
        for ending in KNOWN_ENDINGS:
            if name.lower().endswith(ending):
                counts[ending] = counts.get(ending, 0) + 1
                break
    if not counts:
        raise EvaluationError(f"{folder}: no image files (looked for {', '.join(KNOWN_ENDINGS)})")
    return max(counts, key=lambda e: counts[e])


def write_json(obj, path: str | os.PathLike, sort_keys: bool = True) -> None:
    """JSON as nnU-Net's ``save_json`` writes it (indent 4, NaN/Infinity allowed), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, sort_keys=sort_keys, indent=4)


def _read_label_map(reader: ImageIO, path: str) -> tuple[np.ndarray, dict]:
    seg, props = reader.read_seg(path)
    return seg[0], props


def evaluate_case(
    reference_file: str,
    prediction_file: str,
    reader: ImageIO,
    labels_or_regions: Sequence,
    ignore_label: int | None,
    metrics: Sequence[str],
    nsd_tolerance_mm: float,
) -> dict:
    """One ``metric_per_case`` entry; raises EvaluationError naming the case on a shape/spacing mismatch."""
    ref, ref_props = _read_label_map(reader, reference_file)
    pred, pred_props = _read_label_map(reader, prediction_file)
    case = os.path.basename(prediction_file)
    if ref.shape != pred.shape:
        raise EvaluationError(
            f"case {case}: prediction shape {pred.shape} ({prediction_file}) differs from reference shape "
            f"{ref.shape} ({reference_file})"
        )
    spacing = [float(s) for s in ref_props.get("spacing", [1.0] * ref.ndim)]
    pred_spacing = pred_props.get("spacing")
    if pred_spacing is not None and not np.allclose(spacing, pred_spacing, rtol=1e-3, atol=1e-5):
        raise EvaluationError(
            f"case {case}: prediction spacing {tuple(pred_spacing)} differs from reference spacing {tuple(spacing)}"
        )
    issues = [f"{case}: {what} {text}" for what, arr in (("reference", ref), ("prediction", pred))
              for text in _label_issues(arr, labels_or_regions, ignore_label)]
    if any(m in SURFACE_METRICS for m in metrics) and ref.ndim == 3 and ref.shape[0] == 1:
        ref, pred, spacing = ref[0], pred[0], spacing[1:]  # a 2D image stored as (1, H, W)
    return {
        "metrics": compute_metrics(ref, pred, labels_or_regions, ignore_label, spacing, metrics, nsd_tolerance_mm),
        "prediction_file": prediction_file,
        "reference_file": reference_file,
        LABEL_ISSUES: issues,
    }


# per-case key carrying label warnings from the workers; removed before the summary is built
LABEL_ISSUES = "_label_issues"


def _label_issues(seg: np.ndarray, labels_or_regions: Sequence, ignore_label: int | None) -> list[str]:
    """Non-integer voxels and label values no class or region declares (scored as background)."""
    out = []
    if seg.dtype.kind == "f":
        bad = int(np.count_nonzero(seg != np.round(seg)))
        if bad:
            out.append(f"has {bad} non-integer voxel(s) (each is compared as stored: matching no class, it counts as background)")
    declared = {0} | ({int(ignore_label)} if ignore_label is not None else set())
    for r in labels_or_regions:
        declared.update(int(v) for v in (r if isinstance(r, (list, tuple)) else [r]))
    values, counts = np.unique(np.round(seg) if seg.dtype.kind == "f" else seg, return_counts=True)
    undeclared = [(int(v), int(c)) for v, c in zip(values, counts) if np.isfinite(v) and int(v) not in declared]
    if undeclared:
        shown = ", ".join(f"{v} ({c} voxels)" for v, c in undeclared[:5])
        out.append(f"has label values not declared in dataset.json: {shown} (scored as background)")
    return out


def _nanmean(values: list) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN classes give NaN, as in nnU-Net
        return float(np.nanmean(values))


def summarize(metric_per_case: list[dict], keys: Sequence[str]) -> dict:
    """``mean`` (NaN-skipping mean over cases) and ``foreground_mean`` (plain mean over the
    classes except "0") as nnU-Net computes them."""
    metric_names = list(metric_per_case[0]["metrics"][keys[0]].keys())
    means = {k: {m: _nanmean([c["metrics"][k][m] for c in metric_per_case]) for m in metric_names} for k in keys}
    foreground = {}
    for m in metric_names:
        values = [means[k][m] for k in keys if k != "0"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            foreground[m] = float(np.mean(values))
    return {"metric_per_case": metric_per_case, "mean": means, "foreground_mean": foreground}


def evaluate_folders(
    reference_dir: str | os.PathLike,
    prediction_dir: str | os.PathLike,
    labels_or_regions: Sequence,
    *,
    ignore_label: int | None = None,
    file_ending: str | None = None,
    image_reader: ImageIO | None = None,
    output_file: str | os.PathLike | None = None,
    num_processes: int = DEFAULT_PROCESSES,
    distance_metrics: bool = False,
    nsd_tolerance_mm: float = 1.0,
    chill: bool = False,
    quiet: bool = False,
) -> dict:
    """Evaluates every prediction in ``prediction_dir`` against the same-named reference file.

    Returns (and writes to ``output_file`` when given) nnU-Net's summary with JSON keys
    (``"1"``, ``"(1, 2)"``). ``chill=False`` requires a prediction for every reference case.
    ``distance_metrics=True`` adds HD95/ASSD/NSD (tolerance ``nsd_tolerance_mm``) next to
    nnU-Net's fields.
    """
    from .._workers import map_cases

    reference_dir, prediction_dir = str(reference_dir), str(prediction_dir)
    labels = normalize_labels(labels_or_regions)
    if not labels:
        raise EvaluationError("no labels or regions to evaluate")
    if output_file is not None and not str(output_file).endswith(".json"):
        raise EvaluationError(f"{output_file}: the output file must end with .json")
    if file_ending is None:
        file_ending = infer_file_ending(reference_dir)
    pred_names = list_files(prediction_dir, file_ending)
    ref_names = list_files(reference_dir, file_ending)
    if not chill:
        missing = sorted(set(ref_names) - set(pred_names))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise EvaluationError(
                f"{prediction_dir}: no prediction for {len(missing)} reference case(s): {shown} (use --chill to evaluate only the predicted cases)"
            )
    if not pred_names:
        raise EvaluationError(f"{prediction_dir}: no predictions ending with {file_ending}")
    no_ref = [n for n in pred_names if not os.path.isfile(os.path.join(reference_dir, n))]
    if no_ref:
        raise EvaluationError(f"{reference_dir}: no reference for prediction(s) {', '.join(no_ref[:5])}")
    if image_reader is None:
        image_reader = select_image_io(file_ending, os.path.join(reference_dir, ref_names[0]))
    metrics = OVERLAP_METRICS + (SURFACE_METRICS if distance_metrics else ())
    jobs = [
        (os.path.join(reference_dir, n), os.path.join(prediction_dir, n), image_reader, labels, ignore_label, metrics,
         nsd_tolerance_mm)
        for n in pred_names
    ]
    per_case = map_cases(evaluate_case, jobs, num_processes, "evaluating", quiet=quiet)
    issues = [text for c in per_case for text in c.pop(LABEL_ISSUES, [])]
    if issues:
        shown = "; ".join(issues[:5]) + (f"; and {len(issues) - 5} more" if len(issues) > 5 else "")
        warnings.warn(f"{len(issues)} label problem(s) in the evaluated files: {shown}", stacklevel=2)
    keys = [str(r) for r in labels]
    result = summarize(per_case, keys)
    if output_file is not None:
        write_json(result, output_file)
    return result


def labels_from_dataset_json(dataset_json: str | os.PathLike | dict) -> tuple[list, int | None, str, str | None]:
    """(labels or regions, ignore label, file ending, reader override) as nnU-Net's label
    manager derives them: foreground regions for region datasets, else foreground labels."""
    raw = dataset_json if isinstance(dataset_json, dict) else json.loads(Path(dataset_json).read_text())
    labels = raw.get("labels")
    if not isinstance(labels, dict) or "file_ending" not in raw:
        raise EvaluationError(f"{dataset_json if not isinstance(dataset_json, dict) else 'dataset.json'}: needs 'labels' and 'file_ending'")
    ignore = labels.get("ignore")
    parsed = {name: tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v)
              for name, v in labels.items() if name != "ignore"}
    if labels_have_regions(parsed):
        out = foreground_regions(parsed)
    else:
        out = [v for v in all_label_values(parsed) if v != 0]
    return out, (int(ignore) if ignore is not None else None), raw["file_ending"], raw.get("overwrite_image_reader_writer")


def _reader_from_plans(plans_json, file_ending: str, example: str) -> ImageIO:
    from ..io import io_class_by_name

    if plans_json is not None:
        plans = plans_json if isinstance(plans_json, dict) else json.loads(Path(plans_json).read_text())
        name = plans.get("image_reader_writer")
        cls = io_class_by_name(name) if name else None
        if cls is not None:
            return cls()
    return select_image_io(file_ending, example)


def evaluate_folder_from_dataset_json(
    reference_dir: str | os.PathLike,
    prediction_dir: str | os.PathLike,
    dataset_json: str | os.PathLike | dict,
    plans_json: str | os.PathLike | dict | None = None,
    output_file: str | os.PathLike | None = None,
    num_processes: int = DEFAULT_PROCESSES,
    chill: bool = False,
    **kwargs,
) -> dict:
    """nnU-Net's ``compute_metrics_on_folder2``: labels/regions, ignore label and file ending from
    dataset.json, reader from the plans (else from dataset.json / the file ending); output
    defaults to ``prediction_dir/summary.json``."""
    labels, ignore, ending, override = labels_from_dataset_json(dataset_json)
    refs = list_files(reference_dir, ending)
    if not refs:
        raise EvaluationError(f"{reference_dir}: no reference files ending with {ending}")
    example = os.path.join(str(reference_dir), refs[0])
    reader = select_image_io(ending, example, override) if override else _reader_from_plans(plans_json, ending, example)
    if output_file is None:
        output_file = os.path.join(str(prediction_dir), "summary.json")
    return evaluate_folders(
        reference_dir, prediction_dir, labels, ignore_label=ignore, file_ending=ending, image_reader=reader,
        output_file=output_file, num_processes=num_processes, chill=chill, **kwargs,
    )


def evaluate_simple(
    reference_dir: str | os.PathLike,
    prediction_dir: str | os.PathLike,
    labels: Sequence[int],
    output_file: str | os.PathLike | None = None,
    num_processes: int = DEFAULT_PROCESSES,
    ignore_label: int | None = None,
    chill: bool = False,
    **kwargs,
) -> dict:
    """nnU-Net's ``compute_metrics_on_folder_simple`` (``-l 1 2``): reader from the file ending,
    output defaults to ``prediction_dir/summary.json``."""
    if output_file is None:
        output_file = os.path.join(str(prediction_dir), "summary.json")
    return evaluate_folders(
        reference_dir, prediction_dir, labels, ignore_label=ignore_label, output_file=output_file,
        num_processes=num_processes, chill=chill, **kwargs,
    )


def load_summary(path: str | os.PathLike) -> dict:
    """A summary.json (ours or nnU-Net's) as written (string keys)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EvaluationError(f"{path}: cannot read the summary ({e})") from None
