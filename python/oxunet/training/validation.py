"""Final validation of a fold, as nnU-Net's ``perform_actual_validation``, from a fold context and a
checkpoint: only the network is built (from the architecture the checkpoint records).

Each validation case is predicted from its preprocessed data by the real predictor (sliding
window, step 0.5, Gaussian, mirroring over the trainer's allowed axes), exported to the original
geometry as ``fold_X/validation/<case><ending>`` (plus ``.npz``/``.json`` probabilities with
``--npz``, which find-best's ensembles need) and scored against the raw ground truth copied to
``<preprocessed>/<dataset>/gt_segmentations`` with nnU-Net's ``summary.json`` fields.

Cascade (:mod:`oxunet.training.cascade`): a cascade stage appends the previous stage's one-hot
segmentation to each case's data; a stage with next stages (``3d_lowres``) also resamples each
case's logits to the next stage's preprocessed shape and saves the segmentation to
``predicted_next_stage/<next>/<case>.npz`` (a case whose next-stage preprocessed data is missing is
skipped with a log line, as nnU-Net).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ..constants import SLIDING_WINDOW_STEP_SIZE
from ..networks import load_nnunet_checkpoint
from ..preprocessing.storage import StorageError, open_case
from .cascade import (PREDICTED_NEXT_STAGE, CascadeError, logits_to_next_stage, load_stage_segmentation,
                      next_stage_names, one_hot_foreground, save_stage_segmentation)
from ..errors import TrainingError

if TYPE_CHECKING:
    from .fold import FoldContext


class ValidationError(TrainingError):
    """The fold cannot be validated (no checkpoint, no ground truth); the message says which."""


def validate_fold(ctx: "FoldContext", checkpoint: str | Path, *, device: str = "cpu", precision: str = "fp32",
                  save_probabilities: bool = False, log: Callable[[str], None] | None = None,
                  num_processes: int = 2) -> dict:
    """Predicts the fold's validation cases with ``checkpoint`` (a path, or a file name in the fold
    folder), exports them to ``fold_X/validation`` and writes ``summary.json``; returns the summary."""
    from ..evaluation import evaluate_folders
    from ..inference import Predictor

    ck_path = Path(checkpoint)
    if not ck_path.is_absolute() and ck_path.parent == Path("."):
        ck_path = ctx.fold_dir / ck_path
    if not ck_path.is_file():
        raise ValidationError(f"{ck_path}: no checkpoint to validate (train first)")
    gt_dir = ctx.pre_dir / "gt_segmentations"
    if not gt_dir.is_dir():
        raise ValidationError(f"{gt_dir}: ground truth missing (rerun `oxunet preprocess`, which copies it)")
    ck = load_nnunet_checkpoint(ck_path, map_location="cpu")
    axes = ck.get("inference_allowed_mirroring_axes")
    mirror_axes = tuple(int(a) for a in axes) if axes is not None else None
    ours = ck.get("oxunet") or {}
    weights = ck["network_weights"]
    del ck
    info, plans, config = ctx.info, ctx.plans, ctx.configuration_name
    next_stages = _next_stages(ctx)
    predictor = Predictor.from_networks(
        ctx.plans_model, config, info.raw, [weights], mirror_axes, device=device, precision=precision, step_size=SLIDING_WINDOW_STEP_SIZE,
        quiet=True, architecture=ours.get("architecture"),  # only the network is built, as it was trained
        # next stages need the network-space logits, which a streamed export never holds
        **({"streaming": False} if next_stages else {}))
    out_dir = ctx.fold_dir / "validation"
    out_dir.mkdir(parents=True, exist_ok=True)
    ending = info.file_ending
    try:
        for case in ctx.val_keys:
            target = out_dir / f"{case}{ending}"
            todo_next = [(n, d) for n, d in next_stages if not (d["out"] / f"{case}.npz").is_file()]
            if (target.is_file() and (not save_probabilities or (out_dir / f"{case}.npz").is_file())
                    and not todo_next):
                continue  # resumable: an interrupted validation keeps what it exported
            h = open_case(ctx.data_dir, case)
            data = h.data
            if ctx.prev_stage_dir is not None:  # cascade: previous stage's seg, already in this stage's space
                prev = load_stage_segmentation(ctx.prev_stage_dir, case, h.shape)
                data = np.concatenate([np.asarray(data, np.float32), one_hot_foreground(prev, info.foreground_labels)])
            with torch.no_grad():
                staged = predictor.run_network(data, h.properties, save_probabilities)
            logits = staged["logits"]
            for name, d in todo_next:
                try:
                    shape = open_case(d["data_dir"], case).shape
                except (StorageError, FileNotFoundError):
                    if log is not None:
                        log(f"predicting next stage {name} failed for case {case}: its preprocessed data is "
                            f"missing in {d['data_dir']} (run `oxunet preprocess -c {name}` first)")
                    continue
                seg = logits_to_next_stage(logits, shape, plans, config, info, h.properties)
                save_stage_segmentation(d["out"], case, seg)
            predictor.finish(staged, h.properties, target, save_probabilities, save_probabilities)
    except CascadeError as e:
        raise ValidationError(str(e)) from None
    labels = list(info.foreground_regions) if info.has_regions else list(info.foreground_labels)
    # gt_segmentations holds every training case: score the predicted ones, as nnU-Net (chill)
    return evaluate_folders(gt_dir, out_dir, labels, ignore_label=info.ignore_label, file_ending=ending,
                            output_file=out_dir / "summary.json", num_processes=num_processes, chill=True,
                            quiet=True)


def _next_stages(ctx: "FoldContext") -> list[tuple[str, dict]]:
    """(name, {data_dir, out}) of every configuration fed by this one (nnU-Net's next_stage_names)."""
    from ..planning import resolve_configuration

    out = []
    for name in next_stage_names(ctx.plans, ctx.configuration_name):
        cfg = resolve_configuration(ctx.plans, name)
        out.append((name, {"data_dir": ctx.pre_dir / cfg["data_identifier"],
                           "out": ctx.output_root / PREDICTED_NEXT_STAGE / name}))
    return out
