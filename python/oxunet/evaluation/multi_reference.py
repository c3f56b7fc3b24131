"""One prediction set against several reference sets (several raters).

Every metric single-reference evaluation computes (nnU-Net's Dice, IoU, TP/FP/FN/TN, n_pred,
n_ref, and with ``distance_metrics`` HD95/ASSD/NSD), per case and label:

- ``<metric>_per_reference``: against each rater (in ``reference_dirs`` order);
- ``<metric>_mean`` / ``_std`` / ``_min`` / ``_max``: agreement and spread over the raters;
- ``inter_rater_<metric>``: the mean over pairs of raters of the metric between them (what a
  prediction can sensibly be expected to reach).

Aggregated as nnU-Net's summary: ``mean`` (NaN-skipping mean over cases) and ``foreground_mean``
(plain mean over labels) of each of those, plus ``per_reference``: the usual ``mean`` /
``foreground_mean`` against each rater alone. ``chill=False`` (default) requires a prediction for
every case of the first reference folder, as single-reference evaluation does.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Sequence

import numpy as np

from ..io import ImageIO, select_image_io
from .folder import DEFAULT_PROCESSES, EvaluationError, evaluate_case, infer_file_ending, list_files, summarize, write_json
from .metrics import OVERLAP_METRICS, SURFACE_METRICS, normalize_labels

STATS = ("mean", "std", "min", "max")


def _stats(values: list[float]) -> dict[str, float]:
    a = np.array(values, dtype=np.float64)
    if a.size == 0 or np.all(np.isnan(a)):
        return {s: float("nan") for s in STATS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in std (HD95 of an empty prediction)
        return {"mean": float(np.nanmean(a)), "std": float(np.nanstd(a)), "min": float(np.nanmin(a)),
                "max": float(np.nanmax(a))}


def _case_table(reference_files, prediction_file, reader, labels, ignore_label, metrics, nsd_tolerance_mm) -> dict:
    per_ref = [evaluate_case(f, prediction_file, reader, labels, ignore_label, metrics, nsd_tolerance_mm)["metrics"]
               for f in reference_files]
    pairs = [evaluate_case(a, b, reader, labels, ignore_label, metrics, nsd_tolerance_mm)["metrics"]
             for a, b in itertools.combinations(reference_files, 2)]
    out = {}
    for k in (str(x) for x in labels):
        entry: dict = {}
        for m in per_ref[0][k]:
            values = [float(r[k][m]) for r in per_ref]
            entry[f"{m}_per_reference"] = values
            entry.update({f"{m}_{s}": v for s, v in _stats(values).items()})
            entry[f"inter_rater_{m}"] = _stats([float(p[k][m]) for p in pairs])["mean"] if pairs else float("nan")
        out[k] = entry
    return {"case": os.path.basename(prediction_file), "prediction_file": prediction_file,
            "reference_files": list(reference_files), "metrics": out, "metrics_per_reference": per_ref}


def evaluate_multi_reference(
    reference_dirs: Sequence[str | os.PathLike],
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
    """Per-case agreement of ``prediction_dir`` with every folder in ``reference_dirs``, with
    means over cases per label and per reference (see the module docstring)."""
    from .._workers import map_cases

    if len(reference_dirs) < 2:
        raise EvaluationError("--multi-reference needs at least two reference folders")
    labels = normalize_labels(labels_or_regions)
    ref_dirs = [str(d) for d in reference_dirs]
    if file_ending is None:
        file_ending = infer_file_ending(ref_dirs[0])
    preds = list_files(prediction_dir, file_ending)
    if not chill:
        missing = sorted(set(list_files(ref_dirs[0], file_ending)) - set(preds))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise EvaluationError(f"{prediction_dir}: no prediction for {len(missing)} reference case(s): {shown} "
                                  "(use --chill to evaluate only the predicted cases)")
    if not preds:
        raise EvaluationError(f"{prediction_dir}: no predictions ending with {file_ending}")
    for d in ref_dirs:
        names = set(list_files(d, file_ending))
        no_ref = [n for n in preds if n not in names]
        if no_ref:
            raise EvaluationError(f"{d}: no reference for prediction(s) {', '.join(no_ref[:5])}")
    if image_reader is None:
        image_reader = select_image_io(file_ending, os.path.join(ref_dirs[0], preds[0]))
    metrics = OVERLAP_METRICS + (SURFACE_METRICS if distance_metrics else ())
    jobs = [([os.path.join(d, n) for d in ref_dirs], os.path.join(str(prediction_dir), n), image_reader, labels,
             ignore_label, metrics, nsd_tolerance_mm) for n in preds]
    per_case = map_cases(_case_table, jobs, num_processes, "evaluating (multi-reference)", quiet=quiet)
    keys = [str(x) for x in labels]
    # the per-reference lists stay per case; everything else is averaged as nnU-Net's summary
    view = [{"metrics": {k: {m: v for m, v in c["metrics"][k].items() if not m.endswith("_per_reference")}
                         for k in keys}} for c in per_case]
    aggregated = summarize(view, keys)
    per_reference = {}
    for i, d in enumerate(ref_dirs):
        against = [{"metrics": c["metrics_per_reference"][i]} for c in per_case]
        s = summarize(against, keys)
        per_reference[d] = {"mean": s["mean"], "foreground_mean": s["foreground_mean"]}
    for c in per_case:
        del c["metrics_per_reference"]  # kept in <metric>_per_reference
    result = {"reference_dirs": ref_dirs, "prediction_dir": str(prediction_dir), "metric_per_case": per_case,
              "mean": aggregated["mean"], "foreground_mean": aggregated["foreground_mean"], "per_reference": per_reference}
    if output_file is not None:
        write_json(result, output_file)
    return result
