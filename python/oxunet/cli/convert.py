"""Dataset conversion commands: ``oxunet convert-msd`` and ``oxunet import-masks``."""

from __future__ import annotations

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
