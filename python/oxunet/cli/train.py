"""``oxunet train``: nnU-Net's ``nnUNetv2_train DATASET CONFIG FOLD`` (also ``-d/-c/-f``)."""

from __future__ import annotations

import json
import sys

import click

from .common import quiet_option


def _list_trainers(ctx, _param, value) -> None:
    if not value or ctx.resilient_parsing:
        return
    from ..training.variants import UNSUPPORTED, VARIANTS

    for name, changes in VARIANTS.items():
        click.echo(f"{name}  {json.dumps(changes) if changes else '(defaults)'}")
    for name, why in UNSUPPORTED.items():
        click.echo(f"{name}  not supported: {why}")
    from ..training.plugins import TRAINER_ENTRY_POINT_GROUP, registered_trainers

    for name, target in sorted(registered_trainers().items()):
        click.echo(f"{name}  registered ({TRAINER_ENTRY_POINT_GROUP}): {target}")
    ctx.exit()


@click.command()
@click.argument("positional", nargs=-1)
@click.option("-d", "--dataset", help="Dataset id or name (or the first positional argument).")
@click.option("-c", "--configuration", help="Configuration, e.g. 3d_fullres (or the second positional).")
@click.option("-f", "--fold", help="Fold 0-4 or 'all' (or the third positional).")
@click.option("-tr", "--trainer", default="nnUNetTrainer", show_default=True,
              help="nnU-Net variant name (nnUNetTrainer_250epochs, nnUNetTrainerNoMirroring, ...; see --list-trainers), "
              "a JSON TrainerConfig file, or module:Name (a TrainerConfig factory or a Trainer subclass).")
@click.option("--list-trainers", is_flag=True, expose_value=False, is_eager=True, callback=_list_trainers,
              help="List the trainer variant names and what each changes, then exit.")
@click.option("-p", "--plans", "plans_name", default="nnUNetPlans", show_default=True, help="Plans identifier.")
@click.option("--epochs", type=click.IntRange(1), help="Override the number of epochs (on --continue the poly "
              "schedule is recomputed over the new total).")
@click.option("--iters-per-epoch", type=click.IntRange(1), help="Training iterations per epoch (default 250).")
@click.option("--val-iters", type=click.IntRange(0), help="Validation iterations per epoch (default 50).")
@click.option("--batch-size", type=click.IntRange(1), help="Override the plan's batch size.")
@click.option("--device", type=click.Choice(["cuda", "cpu", "mps"]), default=None, help="Default: cuda if available, else cpu.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None)
@click.option("--continue", "--c", "continue_training", is_flag=True, help="Resume from final/latest/best checkpoint.")
@click.option("--num-workers", type=click.IntRange(0), help="Data-loading workers [$nnUNet_n_proc_DA, default 12]; 0 = in-process.")
@click.option("--pretrained", "--pretrained_weights", "pretrained", type=click.Path(dir_okay=False, exists=True),
              help="Initialise from a checkpoint (ours or nnU-Net's): every tensor that fits is loaded, each "
              "mismatch reported; seg layers are re-initialised when the label count differs and the first conv "
              "adapted to another input-channel count.")
@click.option("--num-gpus", "--num_gpus", type=click.IntRange(1), default=1, show_default=True,
              help="DDP ranks on this machine: one per GPU, or CPU processes (gloo) with --device cpu. The batch is "
              "the global batch, split as nnU-Net does. Under torchrun the ranks come from its environment.")
@click.option("--augment-on", type=click.Choice(["device", "workers"]), default=None,
              help="Where training augmentation runs: 'device' (whole batches where the network runs; workers only "
                   "read and crop) or 'workers' (per sample, nnU-Net's way). Default: device on CUDA, workers on CPU.")
@click.option("--freeze", help="'encoder' or N: freeze the encoder (or its first N stages) and train the rest.")
@click.option("--val", "only_val", is_flag=True, help="Only run the final validation (needs checkpoint_final.pth).")
@click.option("--val-best", "--val_best", is_flag=True, help="Run the final validation with checkpoint_best.pth instead "
              "of checkpoint_final.pth (after training, or alone with --val), as nnU-Net.")
@click.option("--disable-checkpointing", "--disable_checkpointing", "disable_checkpointing", is_flag=True,
              help="No checkpoint_best/latest.pth while training (quick tries); checkpoint_final.pth is still "
                   "written, since validation and prediction need it.")
@click.option("--npz", is_flag=True, help="Also save the validation probabilities (.npz + .json), needed by find-best's ensembles.")
@click.option("--preprocessed-dir", type=click.Path(file_okay=False), help="[$OXUNET_PREPROCESSED or $nnUNet_preprocessed]")
@click.option("--results-dir", type=click.Path(file_okay=False), help="[$OXUNET_RESULTS or $nnUNet_results]")
@quiet_option
def train(positional, dataset, configuration, fold, trainer, plans_name, epochs, iters_per_epoch, val_iters, batch_size,
          device, precision, continue_training, num_workers, pretrained, only_val, val_best, disable_checkpointing, npz,
          num_gpus, augment_on, freeze, preprocessed_dir, results_dir, quiet) -> None:
    """Train a configuration on one fold (nnU-Net's nnUNetTrainer), then validate it."""
    pos = list(positional)
    if len(pos) > 3:
        raise click.UsageError(f"expected at most DATASET CONFIG FOLD, got {pos}")
    values = [dataset, configuration, fold]
    for i, v in enumerate(pos):
        if values[i] is not None:
            raise click.UsageError(f"{['dataset', 'configuration', 'fold'][i]} given twice ({values[i]!r} and {v!r})")
        values[i] = v
    missing = [n for n, v in zip(("DATASET (-d)", "CONFIG (-c)", "FOLD (-f)"), values) if v is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    if continue_training and only_val:
        raise click.UsageError("--continue cannot be combined with --val")
    if continue_training and pretrained:
        raise click.UsageError("--continue cannot be combined with --pretrained")

    import torch

    from ..dataset import resolve_paths
    from ..training import distributed as ddp
    from ..training.config import TrainerConfigError, load_trainer_config
    from ..training.loader import worker_death_error
    from ..training.plugins import trainer_class_for
    from ..training.run_options import RunOptions
    from ..training.trainer import TrainingError

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    under_torchrun = ddp.env_world_size() > 1
    if under_torchrun and num_gpus > 1:
        raise click.UsageError("--num-gpus spawns ranks itself: do not combine it with torchrun (WORLD_SIZE is set)")
    if num_gpus > 1 and device == "cuda" and torch.cuda.device_count() < num_gpus:
        raise click.UsageError(f"--num-gpus {num_gpus}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    if num_gpus > 1 and device == "mps":
        raise click.UsageError("--num-gpus > 1 is not supported on mps")
    if under_torchrun:
        ddp.init_from_env(device)
        quiet = quiet or ddp.rank() != 0
    try:
        cfg = load_trainer_config(trainer).replace(epochs=epochs, iterations_per_epoch=iters_per_epoch,
                                                   val_iterations=val_iters, batch_size=batch_size, freeze=freeze)
        cfg.validate()
        options = RunOptions(device=device, quiet=quiet, continue_training=continue_training, pretrained=pretrained,
                             export_probabilities=npz, precision=precision, num_workers=num_workers,
                             augment_on=augment_on, checkpointing=not disable_checkpointing,
                             validation_checkpoint="checkpoint_best.pth" if val_best else "checkpoint_final.pth")
        paths = resolve_paths(preprocessed_dir=preprocessed_dir, results_dir=results_dir)
        progress = None if quiet or not sys.stderr.isatty() else _progress(cfg.epochs)
        trainer_cls = trainer_class_for(trainer)
        tr = trainer_cls(values[0], values[1], values[2], paths=paths, config=cfg, plans_name=plans_name,
                         options=options, on_epoch_end=progress)
        if not quiet:
            click.echo(f"results: {tr.fold_dir}", err=True)
        if only_val:
            if under_torchrun and ddp.rank() != 0:
                return  # the final validation runs on rank 0
            summary = tr.run_final_validation()
        elif num_gpus > 1:
            try:  # a batch smaller than the number of ranks fails here, before spawning
                ddp.split_batch(tr.global_batch_size, num_gpus, 0.0)
            except ValueError as e:
                raise TrainingError(str(e)) from None
            # every rank gets the same config and run options (--npz, --val-best, precision, workers...)
            kwargs = dict(paths=paths, config=cfg, plans_name=plans_name, options=options)
            try:
                ddp.launch(ddp.train_rank_with_class, num_gpus, trainer_cls, tuple(values), kwargs,
                           backend=ddp.backend_for(device))
            except Exception as e:  # a rank failed: its traceback was printed by torch.multiprocessing
                raise click.ClickException(f"DDP training failed on a rank: {e}") from None
            summary = __import__("json").loads((tr.fold_dir / "validation" / "summary.json").read_text())
        else:
            try:
                tr.run()
            except RuntimeError as e:  # torch's SIGCHLD handler raises a dead worker's error anywhere
                named = worker_death_error(e)
                if named is None:
                    raise
                raise named from None
            if under_torchrun and ddp.rank() != 0:
                return
            summary = __import__("json").loads((tr.fold_dir / "validation" / "summary.json").read_text())
    except (TrainingError, TrainerConfigError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        if under_torchrun and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    click.echo(f"{tr.fold_dir}")
    if not quiet:
        click.echo(f"Mean validation Dice: {summary['foreground_mean'].get('Dice')}", err=True)
        if (tr.output_root / "report.html").is_file():
            click.echo(f"report: {tr.output_root / 'report.html'}", err=True)


def _progress(total: int):
    from rich.console import Console

    console = Console(stderr=True)

    def show(s) -> None:
        dice = ", ".join(f"{d:.3f}" for d in s.pseudo_dice)
        console.print(f"epoch {s.epoch + 1}/{total}  lr {s.lr:.2e}  train {s.train_loss:.4f}  val {s.val_loss:.4f}  "
                      f"pseudo dice [{dice}]  ema {s.ema:.4f}  {s.seconds:.1f}s")

    return show
