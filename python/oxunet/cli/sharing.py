"""Model sharing commands: ``oxunet export-model``, ``install-model`` and ``move-plans``
(nnU-Net's export_model_to_zip, install_pretrained_model_from_zip, move_plans_between_datasets)."""

from __future__ import annotations

import click

from .common import multi_value_command, quiet_option

_results_dir = click.option("--results-dir", type=click.Path(file_okay=False), help="Results root [$OXUNET_RESULTS or $nnUNet_results].")


@click.command("export-model", cls=multi_value_command("-c", "--configurations", "-f", "--folds", "-chk", "--chk", "--checkpoints"))
@click.option("-d", "--dataset", help="Dataset id or folder name.")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Zip file to write (--format zip) or folder (--format onnx).")
@click.option("--format", "fmt", type=click.Choice(["zip", "onnx"]), default="zip", show_default=True,
              help="zip: nnU-Net's model zip. onnx: per fold the network as ONNX (fold_N.onnx, opset 18, dynamic batch "
                   "and spatial axes where possible) plus oxunet_model.json with the plans, dataset.json, mirror axes "
                   "and folds; runs with `oxunet predict -m FOLDER --backend onnxruntime|openvino`.")
@click.option("-m", "--model", "model_dir", type=click.Path(file_okay=False),
              help="--format onnx: a trained-model folder (TRAINER__PLANS__CONFIG) instead of -d/-c/-tr/-p.")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(17, 23), help="--format onnx: ONNX opset.")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True,
              help="--format onnx: torch.export-based (torch's recommended) or the TorchScript tracer (faster).")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="--format onnx: also write fold_N.int8.onnx (int8 post-training quantisation, QDQ, calibrated on "
                   "--calibration); runs with `oxunet predict --backend openvino|onnxruntime --precision int8`.")
@click.option("--calibration", "calibration_dir", type=click.Path(file_okay=False, exists=True),
              help="--quantize: folder of raw images in nnU-Net naming (CASE_0000.nii.gz ...) to calibrate on, "
                   "preprocessed with the model's plans; use training cases, not the cases you will evaluate on.")
@click.option("--calibration-cases", default=16, show_default=True, type=click.IntRange(1),
              help="--quantize: how many cases of --calibration (first by name).")
@click.option("-c", "--configurations", multiple=True,
              help="Configurations: -c 2d 3d_fullres [default: those of 3d_lowres 3d_fullres 2d 3d_cascade_fullres that were trained].")
@click.option("-tr", "--trainer", default="nnUNetTrainer", show_default=True, help="Trainer name in the model folder name.")
@click.option("-p", "--plans", default="nnUNetPlans", show_default=True, help="Plans identifier.")
@click.option("-f", "--folds", multiple=True, help="Folds: -f 0 1 2 3 4 or -f all [default: 0 1 2 3 4].")
@click.option("-chk", "--chk", "--checkpoints", "checkpoints", multiple=True, help="Checkpoint file names [default: checkpoint_final.pth].")
@click.option("--not-strict", "--not_strict", is_flag=True, help="Skip missing configurations and folds instead of failing.")
@click.option("--exp-cv-preds", "--exp_cv_preds", "crossval_predictions", is_flag=True,
              help="Also export the cross-validation predictions.")
@click.option("--no-validation", is_flag=True, help="Leave out validation/summary.json.")
@click.option("--raw-dir", type=click.Path(file_okay=False), hidden=True)
@_results_dir
@quiet_option
def export_model(dataset, output, fmt, model_dir, opset, exporter, quantize, calibration_dir, calibration_cases,
                 configurations, trainer, plans, folds, checkpoints,
                 not_strict, crossval_predictions, no_validation, raw_dir, results_dir, quiet) -> None:
    """Zip trained model folders (plans, dataset.json, fingerprint, fold checkpoints) for sharing,
    or (--format onnx) write one configuration's folds as ONNX files for runtimes without torch.

    The zip installs with `oxunet install-model` and with nnU-Net's install_pretrained_model_from_zip.
    """
    from ..dataset import resolve_paths
    from ..sharing import ModelSharingError, export_model as export

    if fmt == "onnx":
        _export_onnx(dataset, output, model_dir, configurations, trainer, plans, folds, checkpoints, opset, exporter,
                     results_dir, quiet, quantize=quantize, calibration_dir=calibration_dir,
                     calibration_cases=calibration_cases)
        return
    if quantize or calibration_dir:
        raise click.UsageError("--quantize / --calibration need --format onnx")
    if model_dir is not None or dataset is None:
        raise click.UsageError("--format zip takes -d DATASET (and -c/-tr/-p), not -m")

    try:
        names = export(dataset, output, resolve_paths(raw_dir=raw_dir, results_dir=results_dir),
                       configurations=list(configurations) or None, trainer=trainer, plans=plans,
                       folds=list(folds) or [0, 1, 2, 3, 4], checkpoints=list(checkpoints) or ["checkpoint_final.pth"],
                       strict=not not_strict, include_validation=not no_validation,
                       crossval_predictions=crossval_predictions)
    except (ModelSharingError, LookupError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        models = sorted({"/".join(n.split("/")[:2]) for n in names if n.count("/") >= 2})
        click.echo(f"{len(names)} file(s) from {', '.join(models)}", err=True)
    click.echo(output)


def _export_onnx(dataset, output, model_dir, configurations, trainer, plans, folds, checkpoints, opset, exporter,
                 results_dir, quiet, *, quantize=None, calibration_dir=None, calibration_cases=16) -> None:
    from ..inference import InferenceError
    from ..inference.onnx_export import export_onnx

    if model_dir is None:
        if not dataset or len(configurations) != 1:
            raise click.UsageError("--format onnx takes -m MODEL_FOLDER, or -d DATASET with one -c CONFIGURATION")
        from ..dataset import DatasetNotFoundError, dataset_name, resolve_paths

        paths = resolve_paths(results_dir=results_dir)
        try:
            model_dir = paths.require("results") / dataset_name(dataset, paths) / f"{trainer}__{plans}__{configurations[0]}"
        except (FileNotFoundError, DatasetNotFoundError) as e:
            raise click.ClickException(str(e)) from None
    elif dataset or configurations:
        raise click.UsageError("-m cannot be combined with -d/-c")
    if len(checkpoints) > 1:
        raise click.UsageError("--format onnx exports one checkpoint per fold")
    if quantize and not calibration_dir:
        raise click.UsageError("--quantize int8 needs --calibration DIR (raw training images to calibrate on)")
    fold_list = [f if f == "all" else int(f) for f in folds] or None
    try:
        manifest = export_onnx(model_dir, output, fold_list, checkpoints[0] if checkpoints else "checkpoint_final.pth",
                               opset=opset, exporter=exporter, quantize=quantize, calibration_dir=calibration_dir,
                               calibration_cases=calibration_cases)
    except InferenceError as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        import json

        m = json.loads(manifest.read_text())
        worst = max(e["max_relative_difference"] for e in m["folds"])
        axes = "dynamic batch and spatial axes" if m["input"]["dynamic_spatial_axes"] else "fixed patch"
        click.echo(f"{len(m['folds'])} fold(s) as ONNX opset {opset} ({axes}); max relative difference to torch "
                   f"{worst:.1e}", err=True)
        if "quantization" in m:
            agree = min(e["int8"]["calibration_argmax_agreement"] for e in m["folds"])
            click.echo(f"int8 models calibrated on {len(m['quantization']['calibration']['cases'])} case(s); "
                       f"argmax agreement with fp32 on the calibration windows >= {agree:.4f}", err=True)
    click.echo(manifest)


@click.command("install-model")
@click.argument("zip_file", metavar="ZIP", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace existing files that differ.")
@_results_dir
@quiet_option
def install_model(zip_file, overwrite, results_dir, quiet) -> None:
    """Install a model zip (from `oxunet export-model` or nnU-Net) into the results folder.

    Entries that would land outside <results>/DatasetXXX_Name/ are refused before anything is written.
    """
    import warnings

    from ..dataset import resolve_paths
    from ..sharing import ModelSharingError, install_model as install

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            models = install(zip_file, resolve_paths(results_dir=results_dir), overwrite=overwrite)
    except (ModelSharingError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    for m in models:
        click.echo(str(m))


@click.command("move-plans")
@click.option("-s", "--source", required=True, help="Source dataset id or name (its plans are used).")
@click.option("-t", "--target", required=True, help="Target dataset id or name.")
@click.option("-sp", "--source-plans", required=True, help="Source plans identifier, e.g. nnUNetPlans.")
@click.option("-tp", "--target-plans", help="New plans identifier [default: the source one; a new name such as "
                                            "nnUNetPlans_pretrain avoids clashing with the target's own plans].")
@click.option("--raw-dir", type=click.Path(file_okay=False), help="Raw datasets root [$OXUNET_RAW or $nnUNet_raw].")
@click.option("--preprocessed-dir", type=click.Path(file_okay=False), help="Preprocessed root [$OXUNET_PREPROCESSED or $nnUNet_preprocessed].")
@quiet_option
def move_plans(source, target, source_plans, target_plans, raw_dir, preprocessed_dir, quiet) -> None:
    """Copy a dataset's plans to another dataset (pretrain on one, fine-tune on the other), as
    nnU-Net's move_plans_between_datasets; prints the new plans file."""
    from ..dataset import resolve_paths
    from ..sharing import ModelSharingError, move_plans as move

    try:
        out = move(source, target, source_plans, resolve_paths(raw_dir=raw_dir, preprocessed_dir=preprocessed_dir), target_plans)
    except (ModelSharingError, LookupError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(f"next: oxunet preprocess -d {target} -p {target_plans or source_plans}", err=True)
    click.echo(str(out))
