"""``oxunet ensemble``: nnU-Net's ``nnUNetv2_ensemble`` (average probability folders)."""

from __future__ import annotations

import click

from .common import multi_value_command, quiet_option


@click.command(cls=multi_value_command("-i", "--input"))
@click.option("-i", "--input", "input_dirs", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Prediction folders with <case>.npz (+ .json/.pkl properties): -i A B")
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False))
@click.option("--save-npz", "--save_npz", "save_npz", is_flag=True, help="Also write the averaged probabilities.")
@click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1))
@click.option("--dataset-json", "-dataset_json", "dataset_json", type=click.Path(exists=True, dir_okay=False), help="[first input/dataset.json]")
@click.option("--plans-json", "-plans_json", "plans_json", type=click.Path(exists=True, dir_okay=False), help="[first input/plans.json]")
@quiet_option
def ensemble(input_dirs, output_dir, save_npz, num_processes, dataset_json, plans_json, quiet) -> None:
    """Average the probabilities of several prediction folders into segmentations."""
    import pickle

    from ..ensembling import EnsembleError, ensemble_folders

    try:
        cases = ensemble_folders(list(input_dirs), output_dir, save_probabilities=save_npz, num_processes=num_processes,
                                 dataset_json=dataset_json, plans=plans_json, quiet=quiet)
    except (EnsembleError, pickle.UnpicklingError) as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(f"ensembled {len(cases)} case(s) from {len(input_dirs)} folders into {output_dir}")
