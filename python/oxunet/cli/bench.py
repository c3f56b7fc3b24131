"""``oxunet bench``: the kernel benchmarks (source checkout) and ``bench train`` (ships in the package)."""

from __future__ import annotations

import click


@click.group(invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Kernels: small inputs, a smoke run in seconds.")
@click.option("--only", default="", help="Kernels: run only cases whose name contains this text.")
@click.option("--repeat", default=3, show_default=True, help="Kernels: timed runs per measurement (median).")
@click.pass_context
def bench(ctx: click.Context, quick: bool, only: str, repeat: int) -> None:
    """Benchmarks. Without a subcommand: the Rust kernels against NumPy, nnunetv2, cc3d and MONAI
    (needs a source checkout). `oxunet bench train`: nnU-Net's benchmark trainers."""
    if ctx.invoked_subcommand is not None:
        return
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "benches" / "kernels.py"
    if not script.is_file():
        raise click.ClickException(f"benches/kernels.py not found next to the package ({script}); the kernel "
                                   "benchmarks need a source checkout (`oxunet bench train` does not)")
    sys.argv = [str(script), "--repeat", str(repeat)] + (["--quick"] if quick else []) + (["--only", only] if only else [])
    runpy.run_path(str(script), run_name="__main__")


def _workers(ctx, param, value) -> tuple[int, ...]:
    out = []
    for item in value or ():
        for part in str(item).replace(",", " ").split():
            if not part.isdigit():
                raise click.BadParameter(f"expected worker counts (integers >= 0), got {part!r}")
            out.append(int(part))
    return tuple(out)


@bench.command("train")
@click.option("-d", "--dataset", required=True, help="Dataset id or name (preprocessed).")
@click.option("-c", "--configuration", default="3d_fullres", show_default=True)
@click.option("-f", "--fold", default="0", show_default=True)
@click.option("-p", "--plans", "plans_name", default="nnUNetPlans", show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=5, show_default=True, help="Timed epochs per setting.")
@click.option("--iterations", type=click.IntRange(1), default=250, show_default=True, help="Training steps per epoch.")
@click.option("--num-workers", "-np", "num_workers", multiple=True, callback=_workers,
              help="Data-loading workers; several values (e.g. '2,4,8,16') time each. Default: $nnUNet_n_proc_DA or 12.")
@click.option("--no-data-loading", "mode", flag_value="synthetic",
              help="Only synthetic batches already on the device (nnUNetTrainerBenchmark_5epochs_noDataLoading).")
@click.option("--data-loading-only", "mode", flag_value="real", help="Only the real data pipeline.")
@click.option("--device", type=click.Choice(["cuda", "cpu", "mps"]), default=None, help="Default: cuda if available.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile (default: nnU-Net's rule).")
@click.option("--augment-on", type=click.Choice(["device", "workers"]), default=None)
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--pin-memory/--no-pin-memory", "pin_memory", default=None,
              help="Pinned host memory for the batches (default: on with CUDA).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Result JSON (default: "
              "RESULTS/DATASET/nnUNetTrainerBenchmark_5epochs__PLANS__CONF/fold_F/benchmark_result.json).")
@click.option("--preprocessed-dir", type=click.Path(file_okay=False))
@click.option("--results-dir", type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True)
def bench_train_command(dataset, configuration, fold, plans_name, epochs, iterations, num_workers, mode, device,
                        precision, compile_, augment_on, batch_size, pin_memory, output, preprocessed_dir, results_dir, quiet):
    """Fastest training epoch with the real data pipeline and with batches already on the device
    (nnU-Net's nnUNetTrainerBenchmark_5epochs and _noDataLoading), written to benchmark_result.json."""
    import torch

    from ..bench.train import bench_train
    from ..dataset import resolve_paths
    from ..training.loader import default_num_workers
    from ..training.trainer import TrainingError

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    workers = num_workers or (default_num_workers(),)
    try:
        res = bench_train(dataset, configuration, fold, paths=resolve_paths(preprocessed_dir=preprocessed_dir,
                                                                            results_dir=results_dir),
                          epochs=epochs, iterations=iterations, num_workers=workers,
                          data_loading=mode != "synthetic", no_data_loading=mode != "real", device=device,
                          precision=precision, compile=compile_, augment_on=augment_on, batch_size=batch_size,
                          plans_name=plans_name, quiet=quiet, output=output, pin_memory=pin_memory,
                          log=lambda m: click.echo(m, err=True))
    except (TrainingError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(res["output_file"])
