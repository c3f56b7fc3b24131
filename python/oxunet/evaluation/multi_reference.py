"""One prediction set against several reference sets (several raters).

Per case and label: the prediction's Dice against each rater, their mean / std / min / max
(agreement and spread), and the mean pairwise Dice between the raters themselves (inter-rater
agreement: what a prediction can sensibly be expected to reach)."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Sequence

import numpy as np

from ..io import ImageIO, select_image_io
from .folder import DEFAULT_PROCESSES, EvaluationError, infer_file_ending, list_files, write_json
from .metrics import compute_metrics, normalize_labels


def _dice_table(reference_files, prediction_file, reader, labels, ignore_label) -> dict:
    pred = reader.read_seg(prediction_file)[0][0]
    refs = [reader.read_seg(f)[0][0] for f in reference_files]
    case = os.path.basename(prediction_file)
    for f, r in zip(reference_files, refs):
        if r.shape != pred.shape:
            raise EvaluationError(f"case {case}: reference {f} has shape {r.shape}, prediction {pred.shape}")
    keys = [str(x) for x in labels]
    vs_pred = [compute_metrics(r, pred, labels, ignore_label) for r in refs]
    pairs = [compute_metrics(a, b, labels, ignore_label) for a, b in itertools.combinations(refs, 2)]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k in keys:
            d = np.array([m[k]["Dice"] for m in vs_pred], dtype=np.float64)
            inter = np.array([m[k]["Dice"] for m in pairs], dtype=np.float64)
            out[k] = {
                "Dice_per_reference": [float(x) for x in d],
                "Dice_mean": float(np.nanmean(d)),
                "Dice_std": float(np.nanstd(d)),
                "Dice_min": float(np.nanmin(d)) if not np.all(np.isnan(d)) else float("nan"),
                "Dice_max": float(np.nanmax(d)) if not np.all(np.isnan(d)) else float("nan"),
                "inter_rater_Dice": float(np.nanmean(inter)) if inter.size else float("nan"),
            }
    return {"case": case, "prediction_file": prediction_file, "reference_files": list(reference_files), "metrics": out}


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
    quiet: bool = False,
) -> dict:
    """Per-case agreement of ``prediction_dir`` with every folder in ``reference_dirs`` (cases
    present in all of them), with per-label means over cases."""
    from .._workers import map_cases

    if len(reference_dirs) < 2:
        raise EvaluationError("--multi-reference needs at least two reference folders")
    labels = normalize_labels(labels_or_regions)
    ref_dirs = [str(d) for d in reference_dirs]
    if file_ending is None:
        file_ending = infer_file_ending(ref_dirs[0])
    preds = list_files(prediction_dir, file_ending)
    per_ref = [set(list_files(d, file_ending)) for d in ref_dirs]
    for d, names in zip(ref_dirs, per_ref):
        missing = [n for n in preds if n not in names]
        if missing:
            raise EvaluationError(f"{d}: no reference for prediction(s) {', '.join(missing[:5])}")
    if not preds:
        raise EvaluationError(f"{prediction_dir}: no predictions ending with {file_ending}")
    if image_reader is None:
        image_reader = select_image_io(file_ending, os.path.join(ref_dirs[0], preds[0]))
    jobs = [([os.path.join(d, n) for d in ref_dirs], os.path.join(str(prediction_dir), n), image_reader, labels,
             ignore_label) for n in preds]
    per_case = map_cases(_dice_table, jobs, num_processes, "evaluating (multi-reference)", quiet=quiet)
    keys = [str(x) for x in labels]
    mean = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k in keys:
            mean[k] = {
                m: float(np.nanmean([c["metrics"][k][m] for c in per_case]))
                for m in ("Dice_mean", "Dice_std", "Dice_min", "Dice_max", "inter_rater_Dice")
            }
    result = {"reference_dirs": ref_dirs, "prediction_dir": str(prediction_dir), "metric_per_case": per_case, "mean": mean}
    if output_file is not None:
        write_json(result, output_file)
    return result
