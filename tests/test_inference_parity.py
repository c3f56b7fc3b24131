"""Parity with nnunetv2's nnUNetPredictor on the same model folder (nnU-Net's network class,
random-but-fixed weights with scaled segmentation layers), CPU, fp32."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference_models import tiny_project, write_model_folder
from peers import require

from oxunet.inference import Predictor, load_model_folder, predict_folder


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    require("nnunetv2")
    root = tmp_path_factory.mktemp("pred_parity")
    proj = tiny_project(root)
    for cfg in ("3d_fullres", "2d"):
        write_model_folder(root / "models" / f"nnUNetTrainer__nnUNetPlans__{cfg}", proj["plans"], proj["dataset_json"],
                           cfg, folds=(0,), nnunet=True, seed=3, mirror_axes=(0, 1, 2) if cfg != "2d" else (0, 1))
    proj["root"] = root
    return proj


def _nnunet_predictor(model_dir, folds=(0,), mirroring=True):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                        perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model_dir), folds, "checkpoint_final.pth")
    return p


def _read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_model_folder_reads_nnunet_checkpoint(project):
    mf = load_model_folder(project["root"] / "models" / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    assert mf.folds == [0] and mf.configuration == "3d_fullres" and mf.trainer_name == "nnUNetTrainer"
    assert mf.mirror_axes == (0, 1, 2)


def test_sliding_window_logits_match_nnunet(project):
    """Same preprocessed input (nnU-Net's own preprocessor): the TTA'd window prediction agrees to
    1e-4, the whole-volume logits to nnU-Net's float16 rounding (ours: the same float16 sums,
    the final division in float32 instead of float16)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    model_dir = project["root"] / "models" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    theirs = _nnunet_predictor(model_dir)
    files = [str(project["test_images"] / "case_000_0000.nii.gz")]
    data, _, props = DefaultPreprocessor().run_case(files, None, theirs.plans_manager, theirs.configuration_manager,
                                                   theirs.dataset_json)
    ours = Predictor.from_model_folder(model_dir, device="cpu", precision="fp32")
    our_data, our_props = ours.preprocess(files)
    np.testing.assert_allclose(our_data, data, rtol=1e-5, atol=1e-5)
    assert our_props["bbox_used_for_cropping"] == [list(b) for b in props["bbox_used_for_cropping"]]

    window = torch.from_numpy(np.ascontiguousarray(data[None, :, :16, :16, :16]))
    want_w = theirs._internal_maybe_mirror_and_predict(window)[0].numpy()
    got_w = ours.sliding.predict_window(window).numpy()
    np.testing.assert_allclose(got_w, want_w, rtol=1e-4, atol=1e-4 * np.abs(want_w).max())

    want = theirs.predict_logits_from_preprocessed_data(torch.from_numpy(data)).float().numpy()
    got = ours.predict_logits(data)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    assert (got.argmax(0) == want.argmax(0)).mean() > 0.999
    assert len(np.unique(want.argmax(0))) >= 3  # non-trivial segmentation


@pytest.mark.parametrize("cfg", ["3d_fullres", "2d"])
def test_exported_segmentations_and_probabilities_match_nnunet(project, cfg, tmp_path):
    model_dir = project["root"] / "models" / f"nnUNetTrainer__nnUNetPlans__{cfg}"
    theirs = _nnunet_predictor(model_dir)
    (tmp_path / "nn").mkdir()
    theirs.predict_from_files_sequential(str(project["test_images"]), str(tmp_path / "nn"), save_probabilities=True,
                                         overwrite=True, folder_with_segs_from_prev_stage=None)
    predict_folder(project["test_images"], tmp_path / "ours", model_dir, device="cpu", precision="fp32",
                   save_probabilities=True, num_processes_preprocessing=0, num_processes_export=0, quiet=True)
    a, b = _read(tmp_path / "ours" / "case_000.nii.gz"), _read(tmp_path / "nn" / "case_000.nii.gz")
    assert a.shape == b.shape
    assert (a == b).mean() >= 0.999
    assert len(np.unique(b)) >= 3
    img_in = sitk.ReadImage(str(project["test_images"] / "case_000_0000.nii.gz"))
    img_out = sitk.ReadImage(str(tmp_path / "ours" / "case_000.nii.gz"))
    assert img_out.GetSpacing() == pytest.approx(img_in.GetSpacing())
    assert img_out.GetOrigin() == pytest.approx(img_in.GetOrigin())
    assert img_out.GetDirection() == pytest.approx(img_in.GetDirection())
    pa = np.load(tmp_path / "ours" / "case_000.npz")["probabilities"]
    pb = np.load(tmp_path / "nn" / "case_000.npz")["probabilities"]
    assert pa.shape == pb.shape and pa.dtype == pb.dtype == np.float32
    np.testing.assert_allclose(pa, pb, atol=5e-3)  # float16 logits: one float16 ulp apart at most here
    from oxunet.inference.export import load_properties

    ours_p, theirs_p = load_properties(tmp_path / "ours" / "case_000.npz"), load_properties(tmp_path / "nn" / "case_000.npz")
    for key in ("shape_before_cropping", "shape_after_cropping_and_before_resampling"):
        assert list(ours_p[key]) == list(theirs_p[key])
    assert ours_p["bbox_used_for_cropping"] == [list(b) for b in theirs_p["bbox_used_for_cropping"]]


@pytest.mark.slow
def test_nnunet_predicts_with_a_model_folder_oxunet_trained(project, tmp_path):
    """The reverse: a folder written by oxunet's Trainer (1 epoch, 2 iterations) loads in nnunetv2
    and both predictors agree."""
    from oxunet.dataset import resolve_paths
    from oxunet.preprocessing.run import preprocess_dataset
    from oxunet.training.config import TrainerConfig
    from oxunet.training.trainer import Trainer

    root = project["root"]
    paths = resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=tmp_path / "res", environ={})
    preprocess_dataset("901", paths, configurations=["3d_fullres"], num_processes=[1], quiet=True)
    cfg = TrainerConfig(name="nnUNetTrainer", epochs=1, iterations_per_epoch=2, val_iterations=1, num_workers=0,
                        precision="fp32", seed=1)
    fold_dir = Trainer("901", "3d_fullres", "all", paths=paths, config=cfg, quiet=True).run()
    model_dir = fold_dir.parent
    theirs = _nnunet_predictor(model_dir, ("all",))
    (tmp_path / "nn").mkdir()
    theirs.predict_from_files_sequential(str(project["test_images"]), str(tmp_path / "nn"), save_probabilities=False,
                                         overwrite=True, folder_with_segs_from_prev_stage=None)
    predict_folder(project["test_images"], tmp_path / "ours", model_dir, ["all"], device="cpu", precision="fp32",
                   num_processes_preprocessing=0, num_processes_export=0, quiet=True)
    a, b = _read(tmp_path / "ours" / "case_000.nii.gz"), _read(tmp_path / "nn" / "case_000.nii.gz")
    assert (a == b).mean() >= 0.999


@pytest.mark.parametrize("regions", [False, True])
def test_export_matches_nnunet_export(project, regions):
    """The same float16 logits through nnU-Net's export and ours: labels / regions, a non-trivial
    transpose, resampling back to another spacing, un-cropping, probabilities."""
    import json as _json

    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from oxunet.dataset.dataset_json import load_dataset_json
    from oxunet.inference.export import ExportPlan, export_logits

    plans = _json.loads(_json.dumps(project["plans"]))
    plans["transpose_forward"], plans["transpose_backward"] = [2, 0, 1], [1, 2, 0]
    ds = dict(project["dataset_json"])
    if regions:
        ds["labels"] = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "inner": [3]}
        ds["regions_class_order"] = [1, 2, 3]
    heads = 3 if regions else 4
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((heads, 17, 23, 19)) * 3).astype(np.float16)
    props = {"spacing": [1.4, 0.7, 1.2], "shape_before_cropping": [26, 22, 33],
             "bbox_used_for_cropping": [[2, 24], [1, 21], [3, 30]],
             "shape_after_cropping_and_before_resampling": [22, 20, 27]}
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    want_seg, want_p = convert_predicted_logits_to_segmentation_with_correct_shape(
        torch.from_numpy(logits), pm, cm, pm.get_label_manager(ds), props, return_probabilities=True)
    path = project["root"] / f"ds_regions_{regions}.json"
    path.write_text(_json.dumps(ds))
    ep = ExportPlan.from_plans(plans, "3d_fullres", load_dataset_json(path))
    seg, probs = export_logits(ep, logits, props, return_probabilities=True)
    seg_only, _ = export_logits(ep, logits, props)
    assert seg.shape == want_seg.shape and probs.shape == want_p.shape
    np.testing.assert_allclose(probs, want_p, atol=2e-3)
    assert (seg == want_seg).mean() > 0.999
    want_only = convert_predicted_logits_to_segmentation_with_correct_shape(
        torch.from_numpy(logits), pm, cm, pm.get_label_manager(ds), props, return_probabilities=False)
    assert (seg_only == want_only).mean() > 0.999
    assert len(np.unique(want_only)) == 4


def test_nnunet_property_pickles_load_safely(project, tmp_path):
    import pickle

    from batchgenerators.utilities.file_and_folder_operations import save_pickle

    from oxunet.inference.export import load_properties
    from oxunet.io.pickles import UnsafePickleError, load_restricted_pickle as load_pickle_restricted

    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    model_dir = project["root"] / "models" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    theirs = _nnunet_predictor(model_dir)
    files = [str(project["test_images"] / "case_000_0000.nii.gz")]
    _, _, props = DefaultPreprocessor().run_case(files, None, theirs.plans_manager, theirs.configuration_manager,
                                                theirs.dataset_json)
    save_pickle(props, str(tmp_path / "case.pkl"))  # what nnU-Net writes next to case.npz
    got = load_properties(tmp_path / "case.npz")
    assert got["shape_before_cropping"] == props["shape_before_cropping"]
    np.testing.assert_array_equal(got["spacing"], props["spacing"])
    assert got["sitk_stuff"]["origin"] == props["sitk_stuff"]["origin"]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    import os

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"a": Evil()}))
    with pytest.raises(UnsafePickleError, match="refusing to load global .(posix|os).system"):
        load_pickle_restricted(tmp_path / "evil.pkl")


def test_cascade_matches_nnunet(project, tmp_path):
    """A cascade stage: the previous stage's segmentation, cropped/resampled as a seg and appended
    as one-hot channels, in both predictors."""
    import json as _json

    plans = _json.loads(_json.dumps(project["plans"]))
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    model_dir = write_model_folder(tmp_path / "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres", plans,
                                   project["dataset_json"], "3d_cascade_fullres", nnunet=True, seed=9)
    prev = tmp_path / "prev"
    prev.mkdir()
    shutil.copy(project["test_images"].parent / "labelsTr" / "case_000.nii.gz", prev / "case_000.nii.gz")
    theirs = _nnunet_predictor(model_dir, mirroring=False)
    (tmp_path / "nn").mkdir()
    theirs.predict_from_files_sequential(str(project["test_images"]), str(tmp_path / "nn"), save_probabilities=False,
                                         overwrite=True, folder_with_segs_from_prev_stage=str(prev))
    predict_folder(project["test_images"], tmp_path / "ours", model_dir, tta="none", device="cpu", precision="fp32",
                   prev_stage_dir=prev, quiet=True)
    a, b = _read(tmp_path / "ours" / "case_000.nii.gz"), _read(tmp_path / "nn" / "case_000.nii.gz")
    assert (a == b).mean() >= 0.999 and len(np.unique(b)) >= 3
