"""``oxunet report MODEL_FOLDER``: one self-contained HTML page about a trained model.

Dataset and plans summary (with the network drawn), training curves per fold, the validation
metrics of every case in a table that sorts in the browser, the worst cases as image / reference /
prediction overlays, and time and memory per stage. Pictures are embedded as data URIs, so the
file can be mailed or opened offline. Written by the command, at the end of ``oxunet demo`` and
after ``oxunet train``'s final validation.
"""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_path
from .collect import CaseRow, ModelSummary, ReportError, Stage, collect, peak_rss_mib, raw_image_for

__all__ = ["ModelSummary", "ReportError", "Stage", "collect", "peak_rss_mib", "write_report"]


def write_report(model_folder: str | Path, output: str | Path | None = None, *, raw_dir: str | Path | None = None,
                 stages: list[Stage] | None = None, summaries: dict[str, str | Path] | None = None,
                 worst_cases: int = 3, title: str | None = None) -> Path:
    """Writes the report (default ``MODEL_FOLDER/report.html``) and returns its path.
    ``raw_dir``: the raw root, to show the worst cases' images (without it their references are
    the background); ``stages``: time/memory rows (default: training time per fold);
    ``summaries``: per fold, a summary.json other than ``fold_X/validation/summary.json``."""
    from .figures import case_overlay, network_diagram, training_curves
    from .html import render_page

    summary = collect(model_folder, stages, summaries)
    names = [summary.label_names.get(k, k) for k in _output_label_keys(summary)]
    curves = {fold: training_curves(log, names, f"fold {fold}") for fold, log in summary.logs.items()}
    worst: list[tuple[CaseRow, str | None, int | None, str | None]] = []  # (row, picture, slice, problem)
    ranked = sorted((r for r in summary.cases if r.mean_dice() == r.mean_dice()), key=lambda r: r.mean_dice())
    for row in ranked[:worst_cases]:
        try:
            image = raw_image_for(summary, row.case, Path(raw_dir) if raw_dir else None)
            uri, z = case_overlay(image, row.reference_file, row.prediction_file)
            worst.append((row, uri, z, None))
        except Exception as e:  # a moved or unreadable file costs its picture, not the report
            worst.append((row, None, None, f"no picture: {e}"))
    page = render_page(summary, network_uri=network_diagram(summary), curves=curves, worst=worst, title=title)
    out = Path(output) if output else summary.folder / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return out


def _output_label_keys(summary: ModelSummary) -> list[str]:
    """summary.json keys of the network's foreground outputs (labels, or regions), in output order."""
    keys = []
    for name, value in summary.dataset_json.get("labels", {}).items():
        if isinstance(value, (list, tuple)):
            keys.append(str(tuple(value)))
        elif int(value) != 0 and name != "ignore":
            keys.append(str(value))
    return keys


def report_after_validation(model_folder: str | Path, log=None) -> Path | None:
    """The trainer's hook after a fold's final validation: (re)writes ``MODEL_FOLDER/report.html``
    with every fold validated so far. A failure is logged, never raised: the model is what matters."""
    from ..dataset import resolve_paths

    try:
        out = write_report(model_folder, raw_dir=resolve_paths().raw)
    except Exception as e:  # noqa: BLE001 (the report must not fail a finished training)
        if log is not None:
            log(f"report not written: {type(e).__name__}: {e}")
        return None
    if log is not None:
        log(f"report: {out}")
    return out
