"""Variants as data, run for real: a config with Adam, cosine LR, BatchNorm, nearest-neighbour
segmentation resampling and reduced mirror axes trains, records what it used, and its model
folder predicts with the same network and mirror axes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from oxunet.dataset import resolve_paths
from oxunet.networks import load_nnunet_checkpoint
from oxunet.training.config import builtin_config
from oxunet.training.schedule import cosine_lr
from oxunet.training.trainer import Trainer
from test_trainer import NAME, prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)


def test_variant_fields_train_and_predict(prepared, tmp_path):  # noqa: F811
    from oxunet.inference import Predictor
    from oxunet.preprocessing.storage import open_case

    cfg = builtin_config("nnUNetTrainer_onlyMirror01_DASegOrd0").replace(
        name="mixed", optimizer="adam", lr_schedule="cosine", norm="batch", epochs=2, iterations_per_epoch=1,
        val_iterations=1, num_workers=0, precision="fp32", seed=5, progress_plot=False, label_smoothing=0.1,
        loss="dice_topk", topk_percent=20.0, inference_mirror_axes=[1])
    paths = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=tmp_path, environ={})
    tr = Trainer("900", "3d_fullres", 0, paths=paths, config=cfg, quiet=True)
    fold = tr.run(validate=False)
    assert type(tr.optimizer).__name__ == "AdamW" and tr.optimizer.defaults["amsgrad"] is True
    assert tr.loss.loss.ce.k == 20.0 and tr.loss.loss.ce.label_smoothing == 0.1
    spatial = [t for t in tr.train_spec.augmenter.transform.transforms if type(t).__name__ == "SpatialTransform"]
    assert spatial[0].seg_mode == "nearest"
    ck = load_nnunet_checkpoint(fold / "checkpoint_final.pth")
    assert list(ck["inference_allowed_mirroring_axes"]) == [1]
    arch = ck["oxunet"]["architecture"]
    assert arch["arch_kwargs"]["norm_op"].endswith("BatchNorm3d")
    assert ck["oxunet"]["trainer_config"]["optimizer"] == "adam"
    assert ck["logging"]["lrs"] == pytest.approx([cosine_lr(0.01, 0, 2), cosine_lr(0.01, 1, 2)])
    debug = json.loads((fold / "debug.json").read_text())
    assert debug["run_options"]["export_probabilities"] is False and debug["trainer_class"].endswith(":Trainer")

    # the model folder rebuilds the BatchNorm network and the recorded test-time mirror axes
    predictor = Predictor.from_model_folder(fold.parent, folds=[0], device="cpu", precision="fp32", quiet=True)
    assert predictor.mirror_axes == (1,)
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in predictor.networks[0].modules())
    case = open_case(prepared / "pre" / NAME / "nnUNetPlans_3d_fullres", tr.val_keys[0])
    logits = predictor.predict_logits(np.asarray(case.data))
    assert logits.shape[0] == 3 and np.isfinite(np.asarray(logits)).all()
