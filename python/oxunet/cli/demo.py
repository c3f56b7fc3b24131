"""``oxunet demo``: verify → plan → preprocess → train → predict → evaluate → report on a small dataset."""

from __future__ import annotations

import click

from .common import quiet_option


@click.command()
@click.option("--data", type=click.Path(file_okay=False, exists=True),
              help="A raw dataset folder (e.g. Dataset004_Hippocampus); default: a synthetic one.")
@click.option("-o", "--work-dir", type=click.Path(file_okay=False), default="oxunet-demo", show_default=True,
              help="Where raw/preprocessed/results/predictions go (reruns resume).")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--iters-per-epoch", type=click.IntRange(1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=2, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Training seed: the same seed gives the same numbers on the same machine.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "mps"]), default=None, help="Default: cuda if available, else cpu.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--tta", default="all", show_default=True, help="Mirroring at prediction: all, none or axes (e.g. 0,1).")
@click.option("-np", "--num-processes", type=click.IntRange(1), help="Workers for verify/plan/preprocess/evaluate.")
@quiet_option
def demo(data, work_dir, epochs, iters_per_epoch, batch_size, seed, device, precision, tta, num_processes, quiet) -> None:
    """Run the whole pipeline in a few minutes and print the Dice table.

    Trains fold 0 with a short budget, predicts the fold's validation cases from their raw
    images and evaluates them against their labels."""
    from rich.console import Console
    from rich.table import Table

    err = Console(stderr=True, quiet=quiet)
    out = Console()
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    from ..demo import DemoBudget, DemoError, run_demo
    from ..demo.progress import PlainProgress, RichProgress

    budget = DemoBudget(epochs=epochs, iterations_per_epoch=iters_per_epoch, batch_size=batch_size, seed=seed)
    terminal = err.is_terminal and not quiet
    # a terminal gets live bars; a log gets one line per step and per epoch
    progress = RichProgress(err) if terminal else PlainProgress(lambda text: err.print(text, highlight=False, markup=False, soft_wrap=True))
    try:
        result = run_demo(work_dir, data, budget, device=device, precision=precision, tta=tta,
                          num_processes=num_processes, quiet=True, progress=progress)
    except DemoError as e:
        progress.close()
        raise click.ClickException(str(e)) from None
    out.print(f"{result.dataset}: Dice on the validation cases of fold 0")
    table = Table()
    table.add_column("label")
    table.add_column("Dice", justify="right")
    for label, value in result.dice.items():
        table.add_row(label, f"{value:.4f}")
    out.print(table)
    for what, path in result.artefacts.items():  # plain lines: paths must never be cut
        click.echo(f"{what + ':':14} {path}")
    err.print("time per step: " + ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
              + f"; total {sum(result.seconds.values()):.0f}s", soft_wrap=True)
