"""``oxunet predict``: nnU-Net's ``nnUNetv2_predict`` (-d/-c/-tr/-p) and ``nnUNetv2_predict_from_modelfolder`` (-m)."""

from __future__ import annotations

from pathlib import Path

import click

from ..constants import SLIDING_WINDOW_STEP_SIZE
from .common import multi_value_command, quiet_option


@click.command(cls=multi_value_command("-f", "--folds"))
@click.option("-i", "--input", "input_dir", required=True, type=click.Path(file_okay=False),
              help="Folder of raw images CASE_XXXX<ending> (nnU-Net layout), or of DICOM series (searched "
                   "recursively; one case per SeriesInstanceUID, slices ordered by position).")
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("-m", "--model", "model_dir", type=click.Path(file_okay=False),
              help="Trained-model folder (TRAINER__PLANS__CONFIG, ours or nnU-Net v2's), or an ONNX export of one, "
                   "instead of -d/-c/-tr/-p.")
@click.option("-d", "--dataset", help="Dataset id or name (with -c).")
@click.option("-c", "--configuration", help="Configuration, e.g. 3d_fullres.")
@click.option("-tr", "--trainer", default="nnUNetTrainer", show_default=True, help="Trainer name.")
@click.option("-p", "--plans", "plans_name", default="nnUNetPlans", show_default=True, help="Plans identifier.")
@click.option("-f", "--folds", multiple=True, help="Folds, e.g. -f 0 1 2 3 4 or -f all [default: every fold_N present].")
@click.option("-chk", "--checkpoint", default="checkpoint_final.pth", show_default=True, help="Checkpoint file name.")
@click.option("--step-size", "-step_size", "step_size", default=SLIDING_WINDOW_STEP_SIZE, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--tta", default="all", show_default=True, help="Mirroring TTA: all, none, or axes like 0,1,2.")
@click.option("--disable-tta", "--disable_tta", "disable_tta", is_flag=True, help="Same as --tta none.")
@click.option("--save-probabilities", "--save_probabilities", "save_probabilities", is_flag=True,
              help="Also write CASE.npz (probabilities) and CASE.json (properties).")
@click.option("--output-format", "output_formats", multiple=True, type=click.Choice(["nifti", "dicom-seg", "rtstruct"]),
              help="DICOM input: also write CASE_seg.dcm (DICOM-SEG, highdicom) and/or CASE_rtstruct.dcm (RTSTRUCT) "
                   "per series, referencing it, with the dataset's label names; repeatable. The segmentation in the "
                   "model's file format is always written.")
@click.option("--save-uncertainty", is_flag=True,
              help="Also write CASE_entropy (normalised entropy of the averaged probabilities, 0..1) and, with several "
                   "folds or TTA, CASE_disagreement (variance of the members' probabilities, summed over classes); "
                   "per-case summaries go to prediction_report.json.")
@click.option("--probabilities-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Type of the saved probabilities (float16 halves the .npz files).")
@click.option("--prev-stage", "-prev_stage_predictions", "prev_stage", type=click.Path(file_okay=False),
              help="Folder with the previous stage's segmentations (cascade).")
@click.option("--part-id", "-part_id", "part_id", default=0, show_default=True, type=click.IntRange(0))
@click.option("--num-parts", "-num_parts", "num_parts", default=1, show_default=True, type=click.IntRange(1))
@click.option("--continue", "--continue_prediction", "continue_prediction", is_flag=True,
              help="Skip cases whose outputs exist.")
@click.option("--device", "-device", "device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--precision", default="auto", show_default=True,
              type=click.Choice(["auto", "fp32", "bf16", "fp16", "int8"]),
              help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32. int8: the int8 models of an ONNX "
                   "export made with --quantize int8 (--backend openvino or onnxruntime).")
@click.option("--backend", type=click.Choice(["torch", "onnxruntime", "openvino"]), default=None,
              help="What runs the network (CPU for the ONNX runtimes; preprocessing, aggregation and export are the "
                   "same Rust kernels): torch (default for a trained-model folder), onnxruntime (default for a folder "
                   "from `oxunet export-model --format onnx`) or openvino. A trained-model folder with an ONNX runtime "
                   "is converted when loaded. --precision: onnxruntime fp32/int8; openvino fp32/bf16/fp16 hints or int8.")
@click.option("--streaming", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Slab-wise export as the sliding window finishes slabs (bounded memory for many classes / large "
                   "volumes); only where it equals the whole-volume export exactly. auto: when the logits exceed "
                   "1 GiB ($OXUNET_PREDICT_MEMORY_BUDGET bytes).")
@click.option("--export-on", type=click.Choice(["auto", "device", "cpu"]), default="auto", show_default=True,
              help="Where resampling, aggregation and export run: device (torch, next to the network; the default on "
                   "CUDA) or cpu (the Rust kernels).")
@click.option("--tta-batch", default="auto", show_default=True,
              help="Mirrored copies of a window per network call: auto (on the CPU as many as fit 1 GiB of "
                   "first-stage activations, e.g. all 8 for small patches; 1 on GPUs) or a number (1: nnU-Net's one "
                   "at a time). The same members either way; fewer, larger calls run faster on CPUs.")
@click.option("-npp", "--num-processes-preprocessing", "npp", default=None, type=click.IntRange(0),
              help="Background preprocessing threads [default: 2; 1 on machines with 2 cores or fewer].")
@click.option("-nps", "--num-processes-export", "nps", default=None, type=click.IntRange(0),
              help="Background export threads [default: 2; 1 on machines with 2 cores or fewer].")
@click.option("--verbose", "nnunet_verbose", is_flag=True, hidden=True, help="nnU-Net's; no effect here (warns).")
@click.option("--disable_progress_bar", "nnunet_no_bar", is_flag=True, hidden=True, help="nnU-Net's; no effect here (warns).")
@click.option("--not_on_device", "nnunet_not_on_device", is_flag=True, hidden=True,
              help="nnU-Net's: aggregation and export off the device (= --export-on cpu).")
@click.option("--results-dir", type=click.Path(file_okay=False), help="[$OXUNET_RESULTS or $nnUNet_results]")
@quiet_option
def predict(input_dir, output_dir, model_dir, dataset, configuration, trainer, plans_name, folds, checkpoint, step_size,
            tta, disable_tta, save_probabilities, output_formats, save_uncertainty, probabilities_dtype, prev_stage,
            part_id, num_parts, continue_prediction, device, precision, backend, streaming, export_on, tta_batch,
            npp, nps, nnunet_verbose, nnunet_no_bar, nnunet_not_on_device, results_dir, quiet) -> None:
    """Predict a folder of raw images with a trained model."""
    from .common import warn_ignored

    warn_ignored("predict", {"--verbose": nnunet_verbose, "--disable_progress_bar": nnunet_no_bar})
    if nnunet_not_on_device:  # nnU-Net's perform_everything_on_device=False: aggregation in host memory
        if export_on == "device":
            raise click.UsageError("--not_on_device contradicts --export-on device")
        export_on = "cpu"
    if model_dir is None:
        if not dataset or not configuration:
            raise click.UsageError("give -m MODEL_FOLDER, or -d DATASET and -c CONFIGURATION")
        from ..dataset import DatasetNotFoundError, dataset_name, resolve_paths

        paths = resolve_paths(results_dir=results_dir)
        try:
            root = paths.require("results")
            name = dataset_name(dataset, paths)
        except (FileNotFoundError, DatasetNotFoundError) as e:
            raise click.ClickException(str(e)) from None
        model_dir = root / name / f"{trainer}__{plans_name}__{configuration}"
    elif dataset or configuration:
        raise click.UsageError("-m cannot be combined with -d/-c")
    if part_id >= num_parts:
        raise click.UsageError(f"--part-id {part_id} must be smaller than --num-parts {num_parts}")
    fold_list = None
    if folds:
        fold_list = []
        for f in folds:
            if f != "all" and not f.isdigit():
                raise click.UsageError(f"-f: expected fold numbers or 'all', got {f!r}")
            fold_list.append(f if f == "all" else int(f))
    if tta not in ("all", "none"):
        try:
            tta = tuple(int(a) for a in tta.replace(",", " ").split())
        except ValueError:
            raise click.UsageError(f"--tta: expected all, none or axes like 0,1,2; got {tta!r}") from None

    if tta_batch != "auto":
        if not tta_batch.isdigit() or int(tta_batch) < 1:
            raise click.UsageError(f"--tta-batch: expected auto or a number >= 1, got {tta_batch!r}")
        tta_batch = int(tta_batch)
    from ..inference import InferenceError, predict_folder
    from ..inference.runtime import PrecisionError

    if fold_list is None and Path(model_dir).is_dir():
        from ..inference.model_folder import default_folds

        fold_list, note = default_folds(model_dir, checkpoint)
        fold_list = fold_list or None  # none usable: let the loader explain
        if not quiet:
            click.echo(note, err=True)

    try:
        report = predict_folder(input_dir, output_dir, model_dir, fold_list, checkpoint=checkpoint, step_size=step_size,
                                tta="none" if disable_tta else tta, save_probabilities=save_probabilities,
                                save_uncertainty=save_uncertainty, output_formats=("nifti", *output_formats),
                                device=device, precision=precision, prev_stage_dir=prev_stage, part_id=part_id,
                                num_parts=num_parts, overwrite=not continue_prediction,
                                num_processes_preprocessing=npp, num_processes_export=nps, quiet=quiet,
                                probabilities_dtype=probabilities_dtype,
                                streaming={"auto": "auto", "on": True, "off": False}[streaming], export_on=export_on,
                                tta_batch=tta_batch, **({"backend": backend} if backend else {}))
    except (InferenceError, PrecisionError) as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(f"{len(report['cases'])} case(s) predicted into {output_dir} in {report['seconds']:.1f} s "
                   f"(peak memory {report['peak_rss_bytes'] / 2**30:.2f} GiB); report: prediction_report.json")
