"""The seeds' training recipes as named variants (issue 11, item 5), each trained end to end on a
tiny synthetic dataset and its model folder used for prediction:

* oxunetFLARE21Light: Dice + TopK-10, deep supervision on the three finest outputs (0.7/0.2/0.1),
  test-time mirroring reduced to the in-plane axes;
* oxunetBraTS2020: region-based (regions in dataset.json), the brats2020 augmentation, batch Dice;
* oxunetNSCLCTransfer: --pretrained + frozen encoder on manual splits.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from oxunet.dataset import resolve_paths
from oxunet.inference.folder import predict_folder
from oxunet.networks import load_nnunet_checkpoint
from oxunet.planning import plan_experiment
from oxunet.preprocessing.run import preprocess_dataset
from oxunet.training.config import builtin_config
from oxunet.training.losses import DeepSupervisionLoss
from oxunet.training.trainer import Trainer
from synthetic import make_dataset

SHORT = dict(epochs=2, iterations_per_epoch=2, val_iterations=1, num_workers=0, precision="fp32", seed=11,
             progress_plot=False)


def _prepare(root, name: str, dataset_id: str, *, stages: int, channel_names=("CT",), regions=False):
    make_dataset(root / "raw" / name, shapes=[(20, 24, 22)] * 5, spacings=[(1, 1, 1)] * 5, channel_names=channel_names)
    if regions:  # BraTS-style: overlapping regions, painted in regions_class_order
        ds = json.loads((root / "raw" / name / "dataset.json").read_text())
        ds["labels"] = {"background": 0, "whole": [1, 2], "core": 2}
        ds["regions_class_order"] = [1, 2]
        (root / "raw" / name / "dataset.json").write_text(json.dumps(ds))
    paths = resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=root / "res", environ={})
    plans = plan_experiment(dataset_id, paths, quiet=True, num_processes=1)
    c = plans["configurations"]["3d_fullres"]
    c["patch_size"], c["batch_size"] = [16, 16, 16], 2
    c["architecture"]["arch_kwargs"].update(
        n_stages=stages, features_per_stage=[4] + [8] * (stages - 1), kernel_sizes=[[3, 3, 3]] * stages,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (stages - 1), n_conv_per_stage=[1] * stages,
        n_conv_per_stage_decoder=[1] * (stages - 1))
    (root / "pre" / name / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))
    preprocess_dataset(dataset_id, paths, configurations=["3d_fullres"], num_processes=[1], quiet=True)
    return paths


def _predicts(fold_dir, raw_images, tmp_path, channels=1):
    inp = tmp_path / "in"
    inp.mkdir()
    for c in range(channels):
        (inp / f"case_000_{c:04d}.nii.gz").symlink_to(raw_images / f"case_000_{c:04d}.nii.gz")
    predict_folder(inp, tmp_path / "pred", fold_dir.parent, folds=[0], device="cpu", precision="fp32", quiet=True,
                   num_processes_preprocessing=1, num_processes_export=1)
    return tmp_path / "pred" / "case_000.nii.gz"


def test_flare21_light(tmp_path):
    name = "Dataset910_Flare"
    paths = _prepare(tmp_path, name, "910", stages=4)
    cfg = builtin_config("oxunetFLARE21Light").replace(**SHORT)
    tr = Trainer("910", "3d_fullres", 0, paths=paths, config=cfg, quiet=True)
    fold = tr.run()
    assert isinstance(tr.loss, DeepSupervisionLoss) and tr.loss.weights == (0.7, 0.2, 0.1)
    assert type(tr.loss.loss).__name__ == "DiceCELoss" and tr.loss.loss.ce.k == 10.0
    ck = load_nnunet_checkpoint(fold / "checkpoint_final.pth")
    assert list(ck["inference_allowed_mirroring_axes"]) == [1, 2]  # training mirrored all three
    assert tr.train_spec.augmenter is not None
    assert _predicts(fold, tmp_path / "raw" / name / "imagesTr", tmp_path).is_file()


def test_brats2020_regions(tmp_path):
    name = "Dataset911_Brats"
    paths = _prepare(tmp_path, name, "911", stages=3, channel_names=("T1", "T2"), regions=True)
    cfg = builtin_config("oxunetBraTS2020").replace(**SHORT)
    tr = Trainer("911", "3d_fullres", 0, paths=paths, config=cfg, quiet=True)
    fold = tr.run()
    inner = tr.loss.loss
    assert type(inner).__name__ == "RegionDiceBCELoss" and inner.dc.batch_dice is True
    assert "brats2020" in tr.train_spec.augmenter.description
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"(1, 2)", "2"}  # scored per region
    assert _predicts(fold, tmp_path / "raw" / name / "imagesTr", tmp_path, channels=2).is_file()


def test_nsclc_transfer_with_manual_splits(tmp_path):
    name = "Dataset912_Nsclc"
    paths = _prepare(tmp_path, name, "912", stages=3)
    source = Trainer("912", "3d_fullres", "all", paths=paths, config=builtin_config("nnUNetTrainer").replace(**SHORT),
                     quiet=True).run(validate=False)
    splits = [{"train": ["case_000", "case_001", "case_002"], "val": ["case_003", "case_004"]}]
    (tmp_path / "pre" / name / "splits_final.json").write_text(json.dumps(splits))
    cfg = builtin_config("oxunetNSCLCTransfer").replace(**SHORT)
    tr = Trainer("912", "3d_fullres", 0, paths=paths, config=cfg, quiet=True)
    fold = tr.run(pretrained=str(source / "checkpoint_final.pth"))
    assert (tr.train_keys, tr.val_keys) == (splits[0]["train"], splits[0]["val"])
    src = load_nnunet_checkpoint(source / "checkpoint_final.pth")["network_weights"]
    out = load_nnunet_checkpoint(fold / "checkpoint_final.pth")["network_weights"]
    encoder = [k for k in src if k.startswith("encoder.")]
    assert encoder and all(torch.equal(src[k], out[k]) for k in encoder)  # frozen
    assert any(not torch.equal(src[k], out[k]) for k in src if k.startswith("decoder."))  # trained
    assert json.loads((fold / "training_log.json").read_text())["pretrained"]["source"].endswith("checkpoint_final.pth")
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 2
    assert _predicts(fold, tmp_path / "raw" / name / "imagesTr", tmp_path).is_file()
