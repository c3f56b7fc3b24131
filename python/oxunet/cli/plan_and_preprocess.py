"""``oxunet plan-and-preprocess``: fingerprint, plan and preprocess in one go, as
``nnUNetv2_plan_and_preprocess`` (its flag spellings accepted)."""

from __future__ import annotations

import click

from .common import multi_value_command, quiet_option, raw_dir_option


@click.command("plan-and-preprocess",
               cls=multi_value_command("-d", "--dataset", "-c", "--configurations", "-np", "--num-processes"))
@click.option("-d", "--dataset", "datasets", multiple=True, required=True, help="Dataset id(s) or folder name(s): -d 4 5.")
@click.option("-pl", "--planner", default="default", show_default=True, help="default, ResEncM, ResEncL, ResEncXL (or nnU-Net's class names).")
@click.option("-gpu_memory_target", "--gpu-memory-gb", "gpu_memory_gb", type=click.FloatRange(min=0, min_open=True),
              help="GPU memory to plan for, in GB.")
@click.option("-overwrite_plans_name", "-p", "--plans-name", "plans_name", help="Plans name [preset default, e.g. nnUNetPlans].")
@click.option("-overwrite_target_spacing", "--target-spacing", "target_spacing", nargs=3, type=float,
              help="Fullres target spacing (array axis order).")
@click.option("-c", "--configurations", "configurations", multiple=True,
              help="Configurations to preprocess [default: 2d 3d_fullres 3d_lowres].")
@click.option("-np", "--num-processes", "num_processes", multiple=True, type=click.IntRange(1),
              help="Preprocessing workers: one value or one per configuration [default: 8 4 8].")
@click.option("-npfp", "--fingerprint-processes", "fingerprint_processes", default=8, show_default=True,
              type=click.IntRange(1), help="Workers for fingerprint extraction.")
@click.option("--verify/--no-verify", "--verify_dataset_integrity", "verify", default=None,
              help="Verify the raw dataset (every image read in full, NaN/inf, labels, spacing outliers, foreground) "
                   "and refuse it on errors; warnings are printed. Default: whenever the fingerprint is extracted.")
@click.option("--clean", is_flag=True, help="Re-extract the fingerprint and re-preprocess everything.")
@click.option("--no-pp", "--no_pp", "no_preprocessing", is_flag=True, help="Only fingerprint and plan.")
@raw_dir_option
@click.option("--preprocessed-dir", type=click.Path(file_okay=False), help="Preprocessed root [$OXUNET_PREPROCESSED or $nnUNet_preprocessed].")
@quiet_option
def plan_and_preprocess(datasets, planner, gpu_memory_gb, plans_name, target_spacing, configurations, num_processes,
                        fingerprint_processes, verify, clean, no_preprocessing, raw_dir, preprocessed_dir, quiet) -> None:
    """Extract the fingerprint, plan the experiment and preprocess the training cases."""
    from rich.console import Console

    from ..dataset import resolve_paths
    from ..dataset.verify import DatasetVerificationError
    from ..planning import plan_experiment
    from ..preprocessing import PlansError, PreprocessingError, StorageError
    from ..preprocessing.run import DEFAULT_CONFIGURATIONS, preprocess_dataset

    console = Console(stderr=True, quiet=quiet)
    paths = resolve_paths(raw_dir=raw_dir, preprocessed_dir=preprocessed_dir)
    for dataset in datasets:
        try:
            plans = plan_experiment(dataset, paths, planner=planner, gpu_memory_gb=gpu_memory_gb, plans_name=plans_name,
                                    overwrite_target_spacing=list(target_spacing) if target_spacing else None,
                                    num_processes=fingerprint_processes, verify=verify, quiet=quiet, clean=clean)
            console.print(f"{dataset}: planned {', '.join(plans['configurations'])} ({plans['plans_name']})")
            if no_preprocessing:
                continue
            reports = preprocess_dataset(dataset, paths, plans_name=plans["plans_name"],
                                         configurations=list(configurations) or list(DEFAULT_CONFIGURATIONS),
                                         num_processes=list(num_processes) or None, clean=clean, quiet=quiet)
        except (LookupError, FileNotFoundError, ValueError, PlansError, PreprocessingError, StorageError,
                DatasetVerificationError) as e:
            raise click.ClickException(str(e)) from None
        for r in reports.values():
            if r.folder is not None:
                console.print(f"{dataset} {r.configuration}: {len(r.processed)} case(s) preprocessed, {len(r.kept)} kept -> {r.folder}")
