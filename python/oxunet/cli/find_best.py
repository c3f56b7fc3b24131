"""``oxunet find-best``: nnU-Net's ``nnUNetv2_find_best_configuration``."""

from __future__ import annotations

import click

from .common import multi_value_command, quiet_option


@click.command("find-best", cls=multi_value_command("-c", "-tr", "-p", "-f"))
@click.argument("dataset_positional", required=False)
@click.option("-d", "--dataset", help="Dataset id or name (or positional, as nnU-Net).")
@click.option("-c", "--configurations", "configurations", multiple=True, help="[2d 3d_fullres 3d_lowres 3d_cascade_fullres]")
@click.option("-tr", "--trainers", "trainers", multiple=True, help="[nnUNetTrainer]")
@click.option("-p", "--plans", "plans", multiple=True, help="[nnUNetPlans]")
@click.option("-f", "--folds", "folds", multiple=True, help="[0 1 2 3 4]")
@click.option("--disable-ensembling", "--disable_ensembling", is_flag=True)
@click.option("--no-overwrite", "--no_overwrite", is_flag=True, help="Reuse merged/ensembled results already on disk.")
@click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1))
@click.option("--raw-dir", type=click.Path(file_okay=False), help="[$OXUNET_RAW or $nnUNet_raw]")
@click.option("--preprocessed-dir", type=click.Path(file_okay=False), help="[$OXUNET_PREPROCESSED or $nnUNet_preprocessed]")
@click.option("--results-dir", type=click.Path(file_okay=False), help="[$OXUNET_RESULTS or $nnUNet_results]")
@quiet_option
def find_best(dataset_positional, dataset, configurations, trainers, plans, folds, disable_ensembling, no_overwrite,
              num_processes, raw_dir, preprocessed_dir, results_dir, quiet) -> None:
    """Pick the best configuration/ensemble on cross-validation, decide its postprocessing and
    write the commands to reproduce it (inference_instructions.txt)."""
    from ..dataset import DatasetNotFoundError, resolve_paths
    from ..ensembling.find_best import DEFAULT_CONFIGURATIONS, FindBestError, find_best_configuration
    from ..evaluation import EvaluationError
    from ..postprocessing import PostprocessingError

    dataset = dataset or dataset_positional
    if not dataset:
        raise click.UsageError("give the dataset (-d 4 or positional)")
    fold_values = [int(f) if f.isdigit() else f for f in folds] or [0, 1, 2, 3, 4]
    try:
        find_best_configuration(
            dataset, tuple(configurations) or DEFAULT_CONFIGURATIONS, tuple(trainers) or ("nnUNetTrainer",),
            tuple(plans) or ("nnUNetPlans",), fold_values, not disable_ensembling, num_processes, not no_overwrite,
            resolve_paths(raw_dir, preprocessed_dir, results_dir), quiet=quiet,
        )
    except (FindBestError, EvaluationError, PostprocessingError, DatasetNotFoundError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


@click.command("accumulate-crossval-results", cls=multi_value_command("-f"))
@click.argument("dataset")
@click.option("-c", "--configuration", default="3d_fullres", show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Merged folder [MODEL_FOLDER/crossval_results_folds_<folds>]; must be empty if given.")
@click.option("-f", "--folds", "folds", multiple=True, help="[0 1 2 3 4]")
@click.option("-p", "--plans", "plans_name", default="nnUNetPlans", show_default=True)
@click.option("-tr", "--trainer", default="nnUNetTrainer", show_default=True)
@click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1))
@click.option("--raw-dir", type=click.Path(file_okay=False), help="[$OXUNET_RAW or $nnUNet_raw]")
@click.option("--preprocessed-dir", type=click.Path(file_okay=False), help="[$OXUNET_PREPROCESSED or $nnUNet_preprocessed]")
@click.option("--results-dir", type=click.Path(file_okay=False), help="[$OXUNET_RESULTS or $nnUNet_results]")
@quiet_option
def accumulate_crossval_results(dataset, configuration, output, folds, plans_name, trainer, num_processes, raw_dir,
                                preprocessed_dir, results_dir, quiet) -> None:
    """Copy the validation predictions of every fold into one folder and evaluate them
    (nnU-Net's nnUNetv2_accumulate_crossval_results); prints the folder."""
    from pathlib import Path

    from ..dataset import DatasetNotFoundError, dataset_name, resolve_paths
    from ..ensembling.find_best import FindBestError, accumulate_cv_results, folds_string, model_identifier
    from ..evaluation import EvaluationError

    paths = resolve_paths(raw_dir, preprocessed_dir, results_dir)
    fold_values = [int(f) if f.isdigit() else f for f in folds] or [0, 1, 2, 3, 4]
    try:
        name = dataset_name(dataset, paths)
        model_dir = paths.require("results") / name / model_identifier(trainer, plans_name, configuration)
        if not model_dir.is_dir():
            raise FindBestError(f"{model_dir}: no trained model folder")
        if output is None:
            merged = model_dir / f"crossval_results_folds_{folds_string(fold_values)}"
        else:
            merged = Path(output)
            if merged.is_dir() and any(merged.iterdir()):
                raise FindBestError(f"{merged}: exists and is not empty (nnU-Net refuses to overwrite it too)")
        # nnU-Net scores against the preprocessed copy of the labels; the raw labelsTr are the same files
        candidates = [paths.preprocessed / name / "gt_segmentations" if paths.preprocessed else None,
                      paths.raw / name / "labelsTr" if paths.raw else None]
        gt_dir = next((c for c in candidates if c is not None and c.is_dir()), None)
        if gt_dir is None:
            raise FindBestError(f"{name}: no reference segmentations (preprocessed gt_segmentations or raw labelsTr)")
        summary = accumulate_cv_results(model_dir, merged, fold_values, gt_dir, num_processes, True, quiet)
    except (FindBestError, EvaluationError, DatasetNotFoundError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(f"{len(summary['metric_per_case'])} case(s), foreground mean Dice "
                   f"{summary['foreground_mean']['Dice']:.5f}", err=True)
    click.echo(str(merged))
