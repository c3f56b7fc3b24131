"""``oxunet preprocess``: nnU-Net's preprocessing of the training cases, per configuration, resumable."""

from __future__ import annotations

import click

from .common import multi_value_command, quiet_option, raw_dir_option

@click.command(cls=multi_value_command("-d", "--dataset", "-c", "--configurations", "-np", "--num-processes"))
@click.option("-d", "--dataset", "datasets", multiple=True, required=True,
              help="Dataset id(s) or folder name(s): -d 4 5 (or repeat -d).")
@click.option("-p", "-plans_name", "--plans-name", "plans_name", default="nnUNetPlans", show_default=True,
              help="Plans file in the preprocessed dataset folder, without .json.")
@click.option("-c", "--configurations", "configurations", multiple=True,
              help="Configurations to preprocess: -c 2d 3d_fullres [default: 2d 3d_fullres 3d_lowres]. "
                   "Those missing from the plans are skipped.")
@click.option("-np", "--num-processes", "num_processes", multiple=True, type=click.IntRange(1),
              help="Worker processes: one value, or one per configuration (-np 8 4 8) "
                   "[default: 8 for 2d, 4 for 3d_fullres, 8 for 3d_lowres, 4 otherwise].")
@click.option("--clean", is_flag=True, help="Delete the output folders first instead of resuming.")
@raw_dir_option
@click.option("--preprocessed-dir", type=click.Path(file_okay=False),
              help="Preprocessed datasets root [$OXUNET_PREPROCESSED or $nnUNet_preprocessed].")
@quiet_option
def preprocess(datasets, plans_name, configurations, num_processes, clean, raw_dir, preprocessed_dir, quiet) -> None:
    """Preprocess training cases as nnU-Net does (crop, normalize, resample, class locations).

    Writes <preprocessed>/DatasetXXX/<data_identifier>/ and gt_segmentations/. A rerun keeps the
    cases already done (same plans, unchanged inputs) and redoes the rest; --clean starts over.
    """
    from rich.console import Console

    from ..dataset import resolve_paths
    from ..preprocessing import PlansError, PreprocessingError, StorageError
    from ..preprocessing.run import DEFAULT_CONFIGURATIONS, preprocess_dataset

    configs = list(configurations) or list(DEFAULT_CONFIGURATIONS)
    paths = resolve_paths(raw_dir=raw_dir, preprocessed_dir=preprocessed_dir)
    console = Console(stderr=True, quiet=quiet)
    for dataset in datasets:
        try:
            reports = preprocess_dataset(dataset, paths, plans_name=plans_name, configurations=configs,
                                         num_processes=list(num_processes) or None, clean=clean, quiet=quiet)
        except (LookupError, FileNotFoundError, ValueError, PlansError, PreprocessingError, StorageError) as e:
            raise click.ClickException(str(e)) from None
        for r in reports.values():
            if r.folder is not None:
                console.print(f"{dataset} {r.configuration}: {len(r.processed)} case(s) preprocessed, "
                              f"{len(r.kept)} kept -> {r.folder}")
