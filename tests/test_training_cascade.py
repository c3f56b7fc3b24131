"""The cascade on a tiny synthetic dataset: 3d_lowres's final validation writes predicted_next_stage,
3d_cascade_fullres trains on them as extra one-hot channels and validates through the predictor."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from oxunet.dataset import resolve_paths
from oxunet.networks import load_nnunet_checkpoint
from oxunet.planning import plan_experiment
from oxunet.preprocessing.run import preprocess_dataset
from oxunet.preprocessing.storage import open_case
from oxunet.training.cascade import (
    load_stage_segmentation,
    logits_to_next_stage,
    next_stage_names,
    one_hot_foreground,
    predicted_next_stage_dir,
    save_stage_segmentation,
)
from oxunet.training.config import TrainerConfig
from oxunet.training.trainer import Trainer, TrainingError
from peers import require
from synthetic import make_dataset

NAME = "Dataset905_TinyCascade"


def _paths(root):
    return resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=root / "res", environ={})


def _cfg(**kw):
    base = dict(name="tiny", epochs=1, iterations_per_epoch=2, val_iterations=1, num_workers=0, precision="fp32", seed=3)
    base.update(kw)
    return TrainerConfig(**base)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Plans with a hand-made 3d_lowres (spacing 1.4) → 3d_cascade_fullres, both preprocessed."""
    root = tmp_path_factory.mktemp("cascade")
    make_dataset(root / "raw" / NAME, shapes=[(20, 24, 22)] * 5, spacings=[(1, 1, 1)] * 5)
    paths = _paths(root)
    plans = plan_experiment("905", paths, quiet=True, num_processes=1)
    full = plans["configurations"]["3d_fullres"]
    full["patch_size"], full["batch_size"] = [16, 16, 16], 2
    full["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 8]
    low = copy.deepcopy(full)
    low.pop("inherits_from", None)
    low.update(data_identifier="nnUNetPlans_3d_lowres", spacing=[1.4, 1.4, 1.4], next_stage="3d_cascade_fullres")
    plans["configurations"]["3d_lowres"] = low
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    (root / "pre" / NAME / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))
    preprocess_dataset("905", paths, configurations=["3d_fullres", "3d_lowres"], num_processes=[1, 1], quiet=True)
    return root


@pytest.fixture(scope="module")
def lowres_fold0(prepared):
    tr = Trainer("905", "3d_lowres", 0, paths=_paths(prepared), config=_cfg(), quiet=True)
    tr.run()
    return tr


def _fill_training_cases(prepared, lowres):
    """Fold 0's cascade needs the previous stage's seg of every case of the fold; lowres folds 1-4
    would write the training cases: here they are made from fold 0's (labels 0-2, right shapes)."""
    out = lowres.output_root / "predicted_next_stage" / "3d_cascade_fullres"
    seg = np.load(out / f"{lowres.val_keys[0]}.npz")["seg"]
    for case in lowres.train_keys:
        if not (out / f"{case}.npz").is_file():
            target = open_case(prepared / "pre" / NAME / "nnUNetPlans_3d_fullres", case).shape
            save_stage_segmentation(out, case, np.resize(seg, target).astype(np.uint8))


def _first_conv(state_dict):
    return [v for k, v in state_dict.items() if k.endswith("weight") and v.ndim == 5][0]


def test_next_stage_names_from_either_side():
    plans = {"configurations": {"a": {"spacing": [1, 1, 1]}, "b": {"next_stage": ["c"]}, "c": {"previous_stage": "b"},
                                "d": {"inherits_from": "c"}}}
    assert next_stage_names(plans, "b") == ["c", "d"]
    assert next_stage_names(plans, "a") == []


def test_lowres_validation_writes_predicted_next_stage(prepared, lowres_fold0):
    tr = lowres_fold0
    out = predicted_next_stage_dir(prepared / "res" / NAME, "tiny", "nnUNetPlans", "3d_lowres", "3d_cascade_fullres")
    assert out == tr.output_root / "predicted_next_stage" / "3d_cascade_fullres"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{c}.npz" for c in tr.val_keys)
    full_dir = prepared / "pre" / NAME / "nnUNetPlans_3d_fullres"
    low_dir = prepared / "pre" / NAME / "nnUNetPlans_3d_lowres"
    for case in tr.val_keys:
        with np.load(out / f"{case}.npz") as z:
            assert list(z.keys()) == ["seg"]
            seg = z["seg"]
        assert seg.dtype == np.uint8
        assert seg.shape == open_case(full_dir, case).shape  # next stage's preprocessed shape
        assert open_case(low_dir, case).shape != seg.shape  # ... not this stage's
        assert set(np.unique(seg).tolist()) <= {0, 1, 2}
    # the ordinary validation ran too
    assert (tr.fold_dir / "validation" / "summary.json").is_file()


def test_next_stage_segmentation_matches_nnunet_resample_and_save(prepared, tmp_path):
    """Same logits through nnunetv2's resample_and_save and ours: identical segmentations."""
    require("nnunetv2")
    from nnunetv2.inference.export_prediction import resample_and_save
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetNumpy
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from oxunet.dataset import load_dataset_json

    pre = prepared / "pre" / NAME
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    ds_json = json.loads((pre / "dataset.json").read_text())
    info = load_dataset_json(pre / "dataset.json")
    case = "case_001"
    low = open_case(pre / "nnUNetPlans_3d_lowres", case)
    target = open_case(pre / "nnUNetPlans_3d_fullres", case).shape
    g = torch.Generator().manual_seed(0)
    # smooth logits so that the resampling (not ties) decides the labels
    logits = torch.nn.functional.interpolate(torch.randn(1, 3, 4, 4, 4, generator=g), size=low.shape,
                                             mode="trilinear")[0].half()
    ours = logits_to_next_stage(logits.numpy(), target, plans, "3d_lowres", info, low.properties)
    pm = PlansManager(plans)
    resample_and_save(logits, list(target), str(tmp_path / case), pm, pm.get_configuration("3d_lowres"),
                      dict(low.properties), ds_json, 1, nnUNetDatasetNumpy)
    with np.load(tmp_path / f"{case}.npz") as z:
        theirs = z["seg"]
    assert theirs.dtype == ours.dtype and theirs.shape == ours.shape
    assert len(np.unique(ours)) == 3
    np.testing.assert_array_equal(ours, theirs)
    # and nnU-Net's numpy dataset reads the file we write
    save_stage_segmentation(tmp_path / "ours", case, ours)
    np.testing.assert_array_equal(np.load(tmp_path / "ours" / f"{case}.npz")["seg"], theirs)


def test_cascade_stage_loads_previous_stage_as_one_hot_channels(prepared, lowres_fold0):
    paths = _paths(prepared)
    _fill_training_cases(prepared, lowres_fold0)
    tr = Trainer("905", "3d_cascade_fullres", 0, paths=paths, config=_cfg(), quiet=True)
    assert tr.num_input_channels == 1 + 2
    tr._build()
    assert _first_conv(tr.network.state_dict()).shape[1] == 3
    from oxunet.training.loader import epoch_loader

    batch = next(iter(epoch_loader(tr.val_spec, 1, seed=0, epoch=0)))
    assert batch["data"].shape == (2, 3, 16, 16, 16)
    onehot = batch["data"][:, 1:]
    assert set(onehot.unique().tolist()) <= {0.0, 1.0} and torch.all(onehot.sum(1) <= 1)
    assert onehot.sum() > 0
    # the previous stage's seg is cropped with the data's box, -1 outside the image (nnU-Net's loader)
    from oxunet.training.loader import BatchStream

    case = tr.train_keys[0]
    folder = tr.prev_stage_dir
    assert (folder / f"{case}.npy").is_file()  # unpacked for memory-mapped patch reads
    full = load_stage_segmentation(folder, case)
    shape = full.shape
    box = [[-3, 13], [shape[1] - 10, shape[1] + 6], [2, 18]]
    patch = BatchStream(tr.train_spec)._prev_patch(case, shape, box)
    assert patch.shape == (1, 16, 16, 16) and patch.dtype == np.int16
    np.testing.assert_array_equal(patch[0, 3:, :10], full[:13, shape[1] - 10:, 2:18])
    assert (patch[0, :3] == -1).all() and (patch[0, :, 10:] == -1).all()
    tb = next(iter(epoch_loader(tr.train_spec, 1, seed=0, epoch=0)))
    assert tb["data"].shape == (2, 3, 16, 16, 16) and tb["target"][0].shape == (2, 1, 16, 16, 16)
    assert set(tb["data"][:, 1:].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.slow
def test_cascade_trains_and_validates(prepared, lowres_fold0):
    _fill_training_cases(prepared, lowres_fold0)
    tr = Trainer("905", "3d_cascade_fullres", 0, paths=_paths(prepared), config=_cfg(), quiet=True)
    fold = tr.run()
    ck = load_nnunet_checkpoint(fold / "checkpoint_final.pth")
    assert _first_conv(ck["network_weights"]).shape[1] == 3
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(tr.val_keys)
    for case in tr.val_keys:
        assert (fold / "validation" / f"{case}.nii.gz").is_file()


def test_missing_previous_stage_is_one_clear_error(prepared, lowres_fold0, tmp_path):
    _fill_training_cases(prepared, lowres_fold0)
    res = tmp_path / "res"
    shutil.copytree(prepared / "res", res)
    paths = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=res, environ={})
    folder = res / NAME / "tiny__nnUNetPlans__3d_lowres" / "predicted_next_stage" / "3d_cascade_fullres"
    victim = sorted(lowres_fold0.val_keys)[0]
    for p in folder.glob(f"{victim}.*"):
        p.unlink()
    with pytest.raises(TrainingError) as e:
        Trainer("905", "3d_cascade_fullres", 0, paths=paths, config=_cfg(), quiet=True)
    msg = str(e.value)
    assert victim in msg and "oxunet train -d 905 -c 3d_lowres -f 0" in msg and str(folder) in msg


def test_stage_segmentation_shape_mismatch_and_one_hot(tmp_path):
    seg = np.array([[[0, 1], [2, 1]]], np.uint8)
    save_stage_segmentation(tmp_path, "c", seg)
    np.testing.assert_array_equal(load_stage_segmentation(tmp_path, "c", (1, 2, 2)), seg)
    from oxunet.training.cascade import CascadeError

    with pytest.raises(CascadeError, match="does not match"):
        load_stage_segmentation(tmp_path, "c", (2, 2, 2))
    oh = one_hot_foreground(seg, [1, 2])
    assert oh.shape == (2, 1, 2, 2) and oh[0].sum() == 2 and oh[1].sum() == 1


def test_stale_unpacked_file_is_ignored(tmp_path):
    import os

    from oxunet.training.cascade import stage_segmentation_file, unpack_stage_segmentations

    save_stage_segmentation(tmp_path, "c", np.ones((2, 2, 2), np.uint8))
    assert unpack_stage_segmentations(tmp_path, ["c"]) == 1
    assert stage_segmentation_file(tmp_path, "c").suffix == ".npy"
    assert unpack_stage_segmentations(tmp_path, ["c"]) == 0
    save_stage_segmentation(tmp_path, "c", np.full((2, 2, 2), 2, np.uint8))  # the previous stage ran again
    npy = tmp_path / "c.npy"
    os.utime(npy, ns=(npy.stat().st_atime_ns, (tmp_path / "c.npz").stat().st_mtime_ns - 10**9))
    assert stage_segmentation_file(tmp_path, "c").suffix == ".npz"
    assert unpack_stage_segmentations(tmp_path, ["c"]) == 1
    assert (load_stage_segmentation(tmp_path, "c") == 2).all()
