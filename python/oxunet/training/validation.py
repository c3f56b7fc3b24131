"""Final validation of a fold, as nnU-Net's ``perform_actual_validation``.

Each validation case is predicted from its preprocessed data by the real predictor (sliding
window, step 0.5, Gaussian, mirroring over the trainer's allowed axes), exported to the original
geometry as ``fold_X/validation/<case><ending>`` (plus ``.npz``/``.json`` probabilities with
``--npz``, which find-best's ensembles need) and scored against the raw ground truth copied to
``<preprocessed>/<dataset>/gt_segmentations`` with nnU-Net's ``summary.json`` fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..networks import load_nnunet_checkpoint
from ..preprocessing.storage import open_case

if TYPE_CHECKING:
    from .trainer import Trainer


class ValidationError(RuntimeError):
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
    predictor = Predictor.from_networks(
        trainer.plans, trainer.configuration_name, info.raw, [weights], trainer.inference_allowed_mirroring_axes,
        device=str(trainer.device), precision=trainer.precision, step_size=0.5, quiet=True)
    out_dir = trainer.fold_dir / "validation"
    out_dir.mkdir(parents=True, exist_ok=True)
    ending = info.file_ending
    for case in trainer.val_keys:
        target = out_dir / f"{case}{ending}"
        if target.is_file() and (not save_probabilities or (out_dir / f"{case}.npz").is_file()):
            continue  # resumable: an interrupted validation keeps what it exported
        h = open_case(trainer.data_dir, case)
        with torch.no_grad():
            predictor.predict_preprocessed(h.data, h.properties, output_file=target, save_probabilities=save_probabilities)
    labels = list(info.foreground_regions) if info.has_regions else list(info.foreground_labels)
    # gt_segmentations holds every training case: score the predicted ones, as nnU-Net (chill)
    return evaluate_folders(gt_dir, out_dir, labels, ignore_label=info.ignore_label, file_ending=ending,
                            output_file=out_dir / "summary.json", num_processes=num_processes, chill=True,
                            quiet=True)
