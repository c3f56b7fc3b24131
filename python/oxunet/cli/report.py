"""``oxunet report MODEL_FOLDER``: one self-contained HTML page about a trained model."""

from __future__ import annotations

import click

from .common import raw_dir_option


@click.command()
@click.argument("model_folder", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="HTML file to write [MODEL_FOLDER/report.html].")
@raw_dir_option
@click.option("--worst", default=3, show_default=True, type=click.IntRange(0), help="How many worst cases to picture.")
def report(model_folder, output, raw_dir, worst) -> None:
    """Write MODEL_FOLDER's report: dataset and plans, training curves, per-case validation
    metrics (sortable), the worst cases as overlays, time and memory per stage.

    Pictures are embedded: the file opens offline and can be sent on its own. The raw root
    (--raw-dir, $OXUNET_RAW or $nnUNet_raw) is only needed to show the worst cases' images.
    """
    from ..dataset import resolve_paths
    from ..report import ReportError, write_report

    raw = resolve_paths(raw_dir=raw_dir).raw
    try:
        click.echo(str(write_report(model_folder, output, raw_dir=raw, worst_cases=worst)))
    except ReportError as e:
        raise click.ClickException(str(e)) from None
