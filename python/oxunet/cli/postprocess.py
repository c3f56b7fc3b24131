"""``oxunet postprocess determine|apply``: nnU-Net's ``nnUNetv2_determine_postprocessing`` and
``nnUNetv2_apply_postprocessing`` (reads our postprocessing.json or nnU-Net's .pkl safely)."""

from __future__ import annotations

import click

from .common import quiet_option


@click.group()
def postprocess() -> None:
    """Determine (on cross-validation predictions) or apply postprocessing."""


@postprocess.command()
@click.option("-i", "--input", "input_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Cross-validation predictions.")
@click.option("-ref", "--reference", "reference_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Ground-truth folder.")
@click.option("--plans-json", "-plans_json", "plans_json", type=click.Path(exists=True, dir_okay=False), help="[INPUT/plans.json]")
@click.option("--dataset-json", "-dataset_json", "dataset_json", type=click.Path(exists=True, dir_okay=False), help="[INPUT/dataset.json]")
@click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1))
@click.option("--remove-postprocessed", "--remove_postprocessed", is_flag=True, help="Do not keep INPUT/postprocessed.")
@click.option("--no-min-size", is_flag=True,
              help="Only nnU-Net's keep-largest rules: skip the search of a minimum component size per label/region.")
@quiet_option
def determine(input_dir, reference_dir, plans_json, dataset_json, num_processes, remove_postprocessed, no_min_size,
              quiet) -> None:
    """Decide postprocessing as nnU-Net does (keep-largest rules), plus a searched minimum component
    size per label/region (small components removed or relabelled); writes INPUT/postprocessing.json."""
    from ..evaluation import EvaluationError
    from ..postprocessing import PostprocessingError, determine_postprocessing

    try:
        doc = determine_postprocessing(input_dir, reference_dir, plans_json, dataset_json, num_processes,
                                       not remove_postprocessed, quiet=quiet, min_size_search=not no_min_size)
    except (PostprocessingError, EvaluationError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{len(doc['steps'])} step(s) accepted; foreground mean Dice "
               f"{doc['input_folder']['foreground_mean']['Dice']:.5f} -> {doc['postprocessed']['foreground_mean']['Dice']:.5f}")


@postprocess.command()
@click.option("-i", "--input", "input_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False))
@click.option("--pp-file", "-pp_pkl_file", "pp_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="postprocessing.json (ours or nnU-Net's) or nnU-Net's postprocessing.pkl (read with a restricted unpickler).")
@click.option("--plans-json", "-plans_json", "plans_json", type=click.Path(exists=True, dir_okay=False), help="[INPUT/plans.json]")
@click.option("--dataset-json", "-dataset_json", "dataset_json", type=click.Path(exists=True, dir_okay=False), help="[INPUT/dataset.json]")
@click.option("-np", "--num-processes", default=4, show_default=True, type=click.IntRange(1))
@quiet_option
def apply(input_dir, output_dir, pp_file, plans_json, dataset_json, num_processes, quiet) -> None:
    """Apply stored postprocessing to every segmentation of a folder."""
    import pickle

    from ..io import ImageReadError
    from ..postprocessing import PostprocessingError, apply_postprocessing_to_folder

    try:
        names = apply_postprocessing_to_folder(input_dir, output_dir, pp_file, plans_json, dataset_json, num_processes, quiet)
    except (PostprocessingError, ImageReadError, pickle.UnpicklingError) as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(f"postprocessed {len(names)} file(s) into {output_dir}")
