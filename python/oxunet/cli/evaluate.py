"""``oxunet evaluate GT PRED``: nnU-Net's ``nnUNetv2_evaluate_folder`` / ``nnUNetv2_evaluate_simple``
(summary.json identical to nnU-Net's), optional surface metrics and a several-raters mode."""

from __future__ import annotations

import math

import click

from .common import multi_value_command, quiet_option


def _fmt(v, name: str = "") -> str:
    if isinstance(v, float):
        if name.startswith("n_") and math.isfinite(v):
            return f"{v:.1f}"
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf"
        return f"{v:.4f}"
    return str(v)


def print_summary_table(summary: dict, title: str) -> None:
    """Per-label means and the foreground mean as a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    names = [m for m in ("Dice", "IoU", "HD95", "ASSD", "NSD", "n_ref", "n_pred") if m in summary["foreground_mean"]]
    table = Table(title=title)
    table.add_column("label/region", no_wrap=True)
    for m in names:
        table.add_column(m, justify="right", no_wrap=True)
    for key, values in summary["mean"].items():
        table.add_row(key, *(_fmt(values[m], m) for m in names))
    table.add_row("foreground mean", *(_fmt(summary["foreground_mean"][m], m) for m in names), style="bold")
    Console().print(table)


def _print_multi_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = ["Dice_mean", "Dice_std", "Dice_min", "Dice_max", "inter_rater_Dice"]
    cols += [f"{m}_mean" for m in ("HD95", "ASSD", "NSD") if f"{m}_mean" in result["foreground_mean"]]
    table = Table(title=f"{len(result['reference_dirs'])} references, {len(result['metric_per_case'])} cases")
    table.add_column("label/region", no_wrap=True)
    for c in cols:
        table.add_column(c, justify="right")
    for key, values in result["mean"].items():
        table.add_row(key, *(_fmt(values[c]) for c in cols))
    table.add_row("foreground mean", *(_fmt(result["foreground_mean"][c]) for c in cols), style="bold")
    Console().print(table)


@click.command(cls=multi_value_command("-l", "--labels", "--multi-reference"))
@click.argument("gt_folder", type=click.Path(exists=True, file_okay=False))
@click.argument("pred_folder", type=click.Path(exists=True, file_okay=False))
@click.option("-d", "--dataset", help="Dataset id/name: labels from its raw dataset.json, reader from its nnUNetPlans.json.")
@click.option("--dataset-json", "-djfile", "dataset_json", type=click.Path(exists=True, dir_okay=False), help="dataset.json (labels, regions, ignore label, file ending).")
@click.option("--plans-json", "-pfile", "plans_json", type=click.Path(exists=True, dir_okay=False), help="plans.json (image reader/writer).")
@click.option("-l", "--labels", "labels", multiple=True, type=int, help="Labels to evaluate (as nnUNetv2_evaluate_simple): -l 1 2")
@click.option("--ignore-label", "-il", "ignore_label", type=int, help="Ignore label (with -l).")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="Output JSON [PRED/summary.json].")
@click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1))
@click.option("--chill", is_flag=True, help="Evaluate only the predicted cases (do not require one per reference).")
@click.option("--hd95", "--distance-metrics", "distance_metrics", is_flag=True, help="Also HD95, ASSD and NSD (MONAI's definitions) on the real spacing.")
@click.option("--nsd-tolerance", default=1.0, show_default=True, type=float, help="NSD tolerance in mm.")
@click.option("--multi-reference", "multi_reference", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Further reference folders (other raters): per-case agreement and spread against GT_FOLDER and these.")
@click.option("--raw-dir", type=click.Path(file_okay=False), help="[$OXUNET_RAW or $nnUNet_raw] (with -d)")
@click.option("--preprocessed-dir", type=click.Path(file_okay=False), help="[$OXUNET_PREPROCESSED or $nnUNet_preprocessed] (with -d)")
@quiet_option
def evaluate(gt_folder, pred_folder, dataset, dataset_json, plans_json, labels, ignore_label, output, num_processes, chill,
             distance_metrics, nsd_tolerance, multi_reference, raw_dir, preprocessed_dir, quiet) -> None:
    """Evaluate predicted segmentations against references (nnU-Net's summary.json).

    Labels come from -d / --dataset-json (as nnUNetv2_evaluate_folder) or -l (as nnUNetv2_evaluate_simple).
    """
    import os
    from pathlib import Path

    from ..evaluation import (
        EvaluationError,
        evaluate_folder_from_dataset_json,
        evaluate_multi_reference,
        evaluate_simple,
        labels_from_dataset_json,
    )
    from ..io import ImageReadError

    if sum(bool(x) for x in (dataset, dataset_json, labels)) != 1:
        raise click.UsageError("give exactly one of -d DATASET, --dataset-json FILE or -l LABELS")
    if ignore_label is not None and not labels:
        raise click.UsageError("--ignore-label goes with -l (dataset.json declares its own ignore label)")
    if dataset:
        from ..dataset import dataset_name, resolve_paths

        paths = resolve_paths(raw_dir=raw_dir, preprocessed_dir=preprocessed_dir)
        name = dataset_name(dataset, paths)
        dataset_json = str(paths.require("raw") / name / "dataset.json")
        if plans_json is None and paths.preprocessed is not None:
            candidate = paths.preprocessed / name / "nnUNetPlans.json"
            plans_json = str(candidate) if candidate.is_file() else None
    extra = {"distance_metrics": distance_metrics, "nsd_tolerance_mm": nsd_tolerance, "quiet": quiet}
    try:
        if multi_reference:
            if labels:
                lab, ign, ending = list(labels), ignore_label, None
            else:
                lab, ign, ending, _ = labels_from_dataset_json(dataset_json)
            out = output or os.path.join(pred_folder, "summary_multi_reference.json")
            result = evaluate_multi_reference([gt_folder, *multi_reference], pred_folder, lab, ignore_label=ign,
                                              file_ending=ending, output_file=out, num_processes=num_processes,
                                              chill=chill, **extra)
            _print_multi_table(result)
            click.echo(f"wrote {out}", err=True)
            return
        import warnings

        with warnings.catch_warnings(record=True) as caught:  # label warnings: one line each, always shown
            warnings.simplefilter("always", UserWarning)
            if labels:
                summary = evaluate_simple(gt_folder, pred_folder, list(labels), output, num_processes, ignore_label,
                                          chill, **extra)
            else:
                summary = evaluate_folder_from_dataset_json(gt_folder, pred_folder, dataset_json, plans_json, output,
                                                            num_processes, chill, **extra)
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
    except (EvaluationError, ImageReadError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    print_summary_table(summary, f"{len(summary['metric_per_case'])} cases: {Path(pred_folder)}")
    click.echo(f"wrote {output or os.path.join(pred_folder, 'summary.json')}", err=True)
