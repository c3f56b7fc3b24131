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
