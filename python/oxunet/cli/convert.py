"""Dataset conversion commands: ``oxunet convert-msd`` and ``oxunet import-masks``."""

from __future__ import annotations

import json

import click

from .common import processes_option, quiet_option, raw_dir_option


@click.command("convert-msd")
@click.option("-i", "--input", "source", required=True, type=click.Path(exists=True, file_okay=False), help="MSD task folder (TaskXX_Name).")
@click.option("-overwrite_id", "--target-id", type=int, default=None, help="Dataset id to use instead of the task number.")
@raw_dir_option
@processes_option
@quiet_option
def convert_msd_command(source: str, target_id: int | None, raw_dir: str | None, num_processes: int, quiet: bool) -> None:
    """Convert a Medical Segmentation Decathlon task (4D multi-channel NIfTI) into the raw layout."""
    from ..dataset import resolve_paths
    from ..dataset.convert_msd import ConversionError, convert_msd

    try:
        out = convert_msd(source, resolve_paths(raw_dir=raw_dir), target_id, num_processes, quiet)
    except (ConversionError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(str(out))


@click.command("import-masks")
@click.argument("source", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="New raw dataset folder, e.g. $OXUNET_RAW/Dataset010_Abdomen.")
@click.option("--labels", "label_order", required=True, help="Structure names in label order, comma-separated (label 1, 2, …).")
@click.option("--channel-names", default="CT", show_default=True, help="Channel names, comma-separated (select normalization).")
@click.option("--overlap", type=click.Choice(["error", "last-wins", "regions"]), default="error", show_default=True,
              help="What to do where masks overlap.")
@click.option("--image-glob", default="image*", show_default=True, help="Folder mode: the image file(s) inside each case folder.")
@click.option("--file-ending", default=".nii.gz", show_default=True, help="File ending of the written dataset.")
@processes_option
@quiet_option
def import_masks_command(source, output, label_order, channel_names, overlap, image_glob, file_ending, num_processes, quiet) -> None:
    """Build label maps from one mask file per structure.

    SOURCE is a folder with one sub-folder per case (image + <structure>.nii.gz/.nrrd/… masks)
    or a CSV with columns case,image,structure,mask.
    """
    import json
    from pathlib import Path

    from ..dataset.import_masks import ImportMasksError, cases_from_csv, cases_from_folders, import_masks

    try:
        src = Path(source)
        cases = cases_from_csv(src) if src.suffix.lower() == ".csv" else cases_from_folders(src, image_glob)
        summary = import_masks(
            cases, output, [s.strip() for s in label_order.split(",") if s.strip()],
            [s.strip() for s in channel_names.split(",") if s.strip()], overlap, file_ending, num_processes, quiet,
        )
    except ImportMasksError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps({"output": str(output), "labels": summary["labels"], "overlap_voxels": summary["overlap_voxels"]}, indent=2))


@click.command("convert-old-dataset")
@click.argument("input_folder", type=click.Path(exists=True, file_okay=False))
@click.argument("output_dataset_name")
@raw_dir_option
def convert_old_dataset_command(input_folder: str, output_dataset_name: str, raw_dir: str | None) -> None:
    """Convert an nnU-Net v1 task folder (TaskXXX_Name, give its path) into the raw folder
    OUTPUT_DATASET_NAME (DatasetXXX_Name), as nnUNetv2_convert_old_nnUNet_dataset."""
    from ..dataset import resolve_paths
    from ..dataset.convert_old import OldDatasetError, convert_old_dataset

    try:
        out = convert_old_dataset(input_folder, output_dataset_name, resolve_paths(raw_dir=raw_dir).require("raw"))
    except (OldDatasetError, FileNotFoundError, json.JSONDecodeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(str(out))
