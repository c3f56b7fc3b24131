"""``oxunet verify``: check a raw dataset and report every problem at once."""

from __future__ import annotations

import sys

import click

from .common import dataset_option, processes_option, quiet_option, raw_dir_option


@click.command()
@dataset_option
@raw_dir_option
@processes_option
@quiet_option
def verify(dataset: str, raw_dir: str | None, num_processes: int, quiet: bool) -> None:
    """Verify a raw dataset: files, channels, shapes, spacings, NaNs, label values (exit 1 on errors)."""
    from rich.console import Console

    from ..dataset import dataset_name, resolve_paths
    from ..dataset.verify import verify_dataset

    paths = resolve_paths(raw_dir=raw_dir)
    try:
        folder = paths.require("raw") / dataset_name(dataset, paths)
    except (LookupError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    report = verify_dataset(folder, num_processes=num_processes)
    if not quiet or report.problems:
        report.render(Console(stderr=True))
    sys.exit(0 if report.ok else 1)
