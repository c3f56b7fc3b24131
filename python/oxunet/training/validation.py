"""Final validation of a fold, as nnU-Net's ``perform_actual_validation``.

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

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..networks import load_nnunet_checkpoint
from ..preprocessing.storage import StorageError, open_case
from .cascade import (PREDICTED_NEXT_STAGE, logits_to_next_stage, load_stage_segmentation, next_stage_names,
                      one_hot_foreground, save_stage_segmentation)
from ..errors import TrainingError

if TYPE_CHECKING:
    from .trainer import Trainer


class ValidationError(TrainingError):
    """The fold cannot be validated (no checkpoint, no ground truth); the message says which."""


def validate_fold(trainer: "Trainer", checkpoint: str = "checkpoint_final.pth", save_probabilities: bool = False,
                  num_processes: int = 2) -> dict:
    from ..evaluation import evaluate_folders
    from ..inference import Predictor

    ck_path = trainer.fold_dir / checkpoint
    if not ck_path.is_file():
        raise ValidationError(f"{ck_path}: no checkpoint to validate (train first)")
    gt_dir = trainer.pre_dir / "gt_segmentations"
    if not gt_dir.is_dir():
        raise ValidationError(f"{gt_dir}: ground truth missing (rerun `oxunet preprocess`, which copies it)")
    weights = load_nnunet_checkpoint(ck_path, map_location="cpu")["network_weights"]
    info = trainer.info
    plans, config = trainer.plans, trainer.configuration_name
    next_stages = _next_stages(trainer)
    predictor = Predictor.from_networks(
        plans, config, info.raw, [weights], trainer.inference_allowed_mirroring_axes,
        device=str(trainer.device), precision=trainer.precision, step_size=0.5, quiet=True,
        # next stages need the network-space logits, which a streamed export never holds
        **({"streaming": False} if next_stages else {}))
    out_dir = trainer.fold_dir / "validation"
    out_dir.mkdir(parents=True, exist_ok=True)
    ending = info.file_ending
    prev_dir = getattr(trainer, "prev_stage_dir", None)
    for case in trainer.val_keys:
        target = out_dir / f"{case}{ending}"
        todo_next = [(n, d) for n, d in next_stages if not (d["out"] / f"{case}.npz").is_file()]
        if (target.is_file() and (not save_probabilities or (out_dir / f"{case}.npz").is_file())
                and not todo_next):
            continue  # resumable: an interrupted validation keeps what it exported
        h = open_case(trainer.data_dir, case)
        data = h.data
        if prev_dir is not None:  # cascade: previous stage's seg, already in this stage's preprocessed space
            prev = load_stage_segmentation(prev_dir, case, h.shape)
            data = np.concatenate([np.asarray(data, np.float32), one_hot_foreground(prev, info.foreground_labels)])
        with torch.no_grad():
            staged = predictor.run_network(data, h.properties, save_probabilities)
        logits = staged["logits"]
        for name, d in todo_next:
            try:
                shape = open_case(d["data_dir"], case).shape
            except (StorageError, FileNotFoundError):
                trainer_log(trainer, f"predicting next stage {name} failed for case {case}: its preprocessed data is "
                                     f"missing in {d['data_dir']} (run `oxunet preprocess -c {name}` first)")
                continue
            seg = logits_to_next_stage(logits, shape, plans, config, info, h.properties)
            save_stage_segmentation(d["out"], case, seg)
        predictor.finish(staged, h.properties, target, save_probabilities, save_probabilities)
    labels = list(info.foreground_regions) if info.has_regions else list(info.foreground_labels)
    # gt_segmentations holds every training case: score the predicted ones, as nnU-Net (chill)
    return evaluate_folders(gt_dir, out_dir, labels, ignore_label=info.ignore_label, file_ending=ending,
                            output_file=out_dir / "summary.json", num_processes=num_processes, chill=True,
                            quiet=True)


def _next_stages(trainer: "Trainer") -> list[tuple[str, dict]]:
    """(name, {data_dir, out}) of every configuration fed by this one (nnU-Net's next_stage_names)."""
    from ..planning import resolve_configuration

    out = []
    for name in next_stage_names(trainer.plans, trainer.configuration_name):
        cfg = resolve_configuration(trainer.plans, name)
        out.append((name, {"data_dir": trainer.pre_dir / cfg["data_identifier"],
                           "out": trainer.output_root / PREDICTED_NEXT_STAGE / name}))
    return out


def trainer_log(trainer: "Trainer", text: str) -> None:
    logger = getattr(trainer, "logger", None)
    if logger is not None:
        logger.line(text)
