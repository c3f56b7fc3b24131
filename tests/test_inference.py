"""oxunet.inference on tiny networks: TTA, fold averaging, 2D on 3D, streaming export, the
in-memory API, --continue, the cascade inputs and the errors for bad input."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference_models import random_network, write_model_folder

from oxunet.inference import InferenceError, Predictor, load_model_folder, predict_folder
from oxunet.inference.export import ExportPlan, streaming_exact


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
# `project` (tiny dataset + two-fold model folder) comes from tests/conftest.py


def _predictor(project, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("precision", "fp32")
    return Predictor.from_model_folder(project["model"], kw.pop("folds", [0]), **kw)


def test_tta_all_is_the_mean_over_flips(project):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((1, 16, 16, 16)).astype(np.float32)  # one window: logits = window prediction
    plain = _predictor(project, tta="none", accumulator_dtype="float32")
    full = _predictor(project, tta="all", accumulator_dtype="float32")
    assert full.mirror_axes == (0, 1, 2) and plain.mirror_axes == ()
    by_hand = np.zeros((4, 16, 16, 16), np.float32)
    flips = [()] + [c for k in (1, 2, 3) for c in __import__("itertools").combinations((0, 1, 2), k)]
    for axes in flips:
        dims = [a + 1 for a in axes]
        by_hand += np.flip(plain.predict_logits(np.ascontiguousarray(np.flip(data, dims))), dims)
    by_hand /= len(flips)
    got = full.predict_logits(data)
    np.testing.assert_allclose(got, by_hand, rtol=1e-4, atol=1e-4)
    assert np.abs(got - plain.predict_logits(data)).max() > 1e-2
    fewer = _predictor(project, tta=(1,), accumulator_dtype="float32").predict_logits(data)
    pair = (plain.predict_logits(data) + np.flip(plain.predict_logits(np.ascontiguousarray(np.flip(data, 2))), 2)) / 2
    np.testing.assert_allclose(fewer, pair, rtol=1e-4, atol=1e-4)


class _NotMirrorSymmetric(torch.nn.Module):
    """Output depends on the position and on the sample, exactly (no rounding): any mix-up of
    copies, flips or batch rows in the batched TTA changes it."""

    def forward(self, x):
        ramp = torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x)
        return torch.cat([x * 2 + ramp, x.sum(dim=(2, 3, 4), keepdim=True).expand_as(x)], 1)


def test_tta_batch_gives_the_same_members(project):
    from oxunet.inference.sliding import SlidingWindow

    x = torch.from_numpy(np.random.default_rng(2).integers(-8, 8, (1, 1, 6, 7, 5)).astype(np.float32))
    one = SlidingWindow([_NotMirrorSymmetric()], (6, 7, 5), 2, (0, 1, 2), torch.device("cpu"), "fp32", tta_batch=1)
    ref = [m.clone() for m in one._members(_NotMirrorSymmetric(), x)]
    assert len(ref) == 8 and all(m.shape == (1, 2, 6, 7, 5) for m in ref)
    for size in (None, 3, 8):
        batched = SlidingWindow([_NotMirrorSymmetric()], (6, 7, 5), 2, (0, 1, 2), torch.device("cpu"), "fp32",
                                tta_batch=size)
        got = list(batched._members(_NotMirrorSymmetric(), x))
        assert all(torch.equal(a, b) for a, b in zip(ref, got)), size
        assert torch.equal(batched.predict_window(x), one.predict_window(x))
    # a real U-Net: the same logits whatever the batch, up to the convolutions' rounding
    data = np.random.default_rng(3).standard_normal((1, 16, 16, 16)).astype(np.float32)
    seq = _predictor(project, tta="all", accumulator_dtype="float32", tta_batch=1)
    assert seq.sliding.tta_batch == 1
    auto = _predictor(project, tta="all", accumulator_dtype="float32")
    assert auto.sliding.tta_batch == 8  # a tiny patch: every copy in one call on the CPU
    np.testing.assert_allclose(auto.predict_logits(data), seq.predict_logits(data), rtol=1e-4, atol=1e-4)
    with pytest.raises(InferenceError, match="tta_batch"):
        _predictor(project, tta_batch=0)


def test_tta_batch_auto_keeps_large_patches_one_at_a_time(project):
    big = Predictor.__new__(Predictor)
    big.mirror_axes, big.device = (0, 1, 2), torch.device("cpu")
    big.architecture = {"arch_kwargs": {"features_per_stage": [32, 64]}}
    big.config = {"patch_size": [128, 128, 128]}  # ~800 MB of first-stage activations per copy
    assert big._tta_batch("auto") == 1
    big.config = {"patch_size": [40, 56, 40]}  # Hippocampus: ~34 MB per copy
    assert big._tta_batch("auto") == 8 and big._tta_batch(3) == 3 and big._tta_batch(20) == 8
    big.device = torch.device("meta")  # not the CPU: one copy per call
    assert big._tta_batch("auto") == 1


def test_fold_ensemble_is_the_mean_of_logits(project):
    data = np.random.default_rng(1).standard_normal((1, 20, 27, 18)).astype(np.float32)
    kw = dict(tta="none", accumulator_dtype="float32")
    both = _predictor(project, folds=[0, 1], **kw).predict_logits(data)
    f0 = _predictor(project, folds=[0], **kw).predict_logits(data)
    f1 = _predictor(project, folds=[1], **kw).predict_logits(data)
    np.testing.assert_allclose(both, (f0 + f1) / 2, rtol=1e-5, atol=1e-5)
    assert np.abs(f0 - f1).max() > 1e-2


def test_auto_detected_folds_and_checkpoint_errors(project, tmp_path):
    assert load_model_folder(project["model"]).folds == [0, 1]
    empty = tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    empty.mkdir()
    shutil.copy(project["model"] / "plans.json", empty)
    shutil.copy(project["model"] / "dataset.json", empty)
    with pytest.raises(InferenceError, match="no fold_N/checkpoint_final.pth"):
        load_model_folder(empty)
    (empty / "fold_0").mkdir()
    with pytest.raises(InferenceError, match="checkpoint not found for fold 0"):
        load_model_folder(empty, [0])
    (empty / "plans.json").unlink()
    with pytest.raises(InferenceError, match="plans.json not found"):
        load_model_folder(empty)
    with pytest.raises(InferenceError, match="unknown configuration '3d_lowres'"):
        load_model_folder(project["model"], [0], configuration="3d_lowres")


def test_2d_configuration_tiles_each_slice(project, tmp_path):
    model = write_model_folder(tmp_path / "nnUNetTrainer__nnUNetPlans__2d", project["plans"], project["dataset_json"],
                               "2d", nnunet=False, seed=2, mirror_axes=(0, 1))
    p = Predictor.from_model_folder(model, device="cpu", precision="fp32", accumulator_dtype="float32")
    data = np.random.default_rng(2).standard_normal((1, 3, 20, 18)).astype(np.float32)
    whole = p.predict_logits(data)
    assert whole.shape == (4, 3, 20, 18)
    for z in range(3):
        np.testing.assert_allclose(whole[:, z:z + 1], p.predict_logits(np.ascontiguousarray(data[:, z:z + 1])),
                                   rtol=1e-6, atol=1e-6)
    res = p.predict_case([project["test_images"] / "case_000_0000.nii.gz"])
    assert res.segmentation.shape == (14, 26, 22)


def _many_class_predictor(project, heads=7, spacing=(1.0, 1.0, 1.0), resampling=None):
    plans = json.loads(json.dumps(project["plans"]))
    cfg = plans["configurations"]["3d_fullres"]
    cfg["spacing"] = list(spacing)
    if resampling is not None:
        cfg["resampling_fn_probabilities_kwargs"] = {"is_seg": False, **resampling}
    ds = dict(project["dataset_json"])
    ds["labels"] = {"background": 0, **{f"c{i}": i for i in range(1, heads)}}
    net = random_network(plans, "3d_fullres", 1, heads, seed=5, nnunet=False)
    return Predictor.from_networks(plans, "3d_fullres", ds, [net], None, device="cpu", precision="fp32")


LINEAR = {"order": 1, "order_z": 0, "force_separate_z": None}


@pytest.mark.parametrize("original_spacing, cropped, resampling, expect_exact", [
    ((3.0, 0.8, 0.8), (9, 26, 23), LINEAR, True),      # axis 0 separate, nearest: one plane per output plane
    ((1.0, 0.8, 1.2), (24, 26, 15), LINEAR, True),     # axis 0 keeps its size
    ((1.3, 0.9, 1.1), (18, 22, 20), LINEAR, True),     # isotropic, linear across slabs: halo of one plane
    ((0.7, 0.9, 1.1), (35, 22, 20), LINEAR, True),     # isotropic upsampling along axis 0, odd sizes
    ((3.0, 0.8, 0.8), (9, 26, 23), {"order": 3, "order_z": 1, "force_separate_z": None}, True),  # order_z 1
    ((3.0, 0.8, 0.8), (37, 26, 23), {"order": 1, "order_z": 1, "force_separate_z": None}, True),
    ((1.0, 3.5, 1.0), (25, 7, 19), LINEAR, True),      # separate axis 1: axis 0 linear in plane
    ((1.3, 0.9, 1.1), (18, 22, 20), {"order": 3, "order_z": 0, "force_separate_z": None}, False),  # prefilter
    ((3.0, 0.8, 0.8), (13, 26, 23), {"order": 1, "order_z": 3, "force_separate_z": None}, False),
])
def test_streaming_export_equals_whole_volume(project, original_spacing, cropped, resampling, expect_exact,
                                              monkeypatch):
    p = _many_class_predictor(project, resampling=resampling)
    data = np.random.default_rng(3).standard_normal((1, 24, 21, 18)).astype(np.float32)
    props = {"spacing": list(original_spacing), "shape_before_cropping": [cropped[0] + 2, cropped[1] + 1, cropped[2] + 3],
             "bbox_used_for_cropping": [[1, cropped[0] + 1], [0, cropped[1]], [2, cropped[2] + 2]],
             "shape_after_cropping_and_before_resampling": list(cropped)}
    assert streaming_exact(p.export_plan, props, data.shape[1:])[0] is expect_exact
    p.streaming = False
    ref = p.predict_preprocessed(data, props, return_probabilities=True)
    p.streaming = True
    if not expect_exact:
        with pytest.warns(UserWarning, match="not exact"):
            got = p.predict_preprocessed(data, props, return_probabilities=True)
        assert not got.streaming and "not exact" in got.streaming_note
    else:
        got = p.predict_preprocessed(data, props, return_probabilities=True)
        assert got.streaming
        labels_only = p.predict_preprocessed(data, props)
        np.testing.assert_array_equal(labels_only.segmentation, ref.segmentation)
        from oxunet.inference import export

        monkeypatch.setattr(export, "SLAB_CHUNK_BYTES", 1)  # one channel / output plane at a time, both paths
        monkeypatch.setattr(export, "CHUNK_BYTES", 1)
        np.testing.assert_array_equal(p.predict_preprocessed(data, props).segmentation, ref.segmentation)
        one_plane = p.predict_preprocessed(data, props, return_probabilities=True)
        np.testing.assert_array_equal(one_plane.segmentation, ref.segmentation)
        np.testing.assert_allclose(one_plane.probabilities, ref.probabilities, rtol=1e-6, atol=1e-7)
        p.streaming = False
        np.testing.assert_array_equal(p.predict_preprocessed(data, props).segmentation, ref.segmentation)
    np.testing.assert_array_equal(got.segmentation, ref.segmentation)
    # same resampled logits; torch's vectorised softmax may round the last bit differently by slab
    np.testing.assert_allclose(got.probabilities, ref.probabilities, rtol=1e-6, atol=1e-7)
    assert len(np.unique(ref.segmentation)) >= 4
    assert ref.segmentation.shape == tuple(props["shape_before_cropping"])
    assert (ref.segmentation[0] == 0).all() and (ref.probabilities[0, 0] == 1).all()  # outside the crop


@pytest.mark.parametrize("original_spacing, cropped", [
    ((2.0, 0.6, 1.3), (5, 31, 12)),   # in-plane upsampling and downsampling
    ((0.5, 1.1, 0.9), (5, 19, 23)),   # separate axis 0 (kept) with a thin in-plane change
])
def test_streaming_export_2d_configuration(project, original_spacing, cropped, monkeypatch):
    """2D: axis 0 (the slices) keeps its size; slab by slab, one slice at a time, equals the whole volume."""
    plans = json.loads(json.dumps(project["plans"]))
    ds = dict(project["dataset_json"])
    ds["labels"] = {"background": 0, **{f"c{i}": i for i in range(1, 6)}}
    net = random_network(plans, "2d", 1, 6, seed=8, nnunet=False)
    p = Predictor.from_networks(plans, "2d", ds, [net], None, device="cpu", precision="fp32")
    data = np.random.default_rng(5).standard_normal((1, 5, 21, 18)).astype(np.float32)
    props = {"spacing": list(original_spacing), "shape_before_cropping": list(cropped),
             "bbox_used_for_cropping": [[0, c] for c in cropped],
             "shape_after_cropping_and_before_resampling": list(cropped)}
    assert streaming_exact(p.export_plan, props, data.shape[1:])[0]
    p.streaming = False
    ref = p.predict_preprocessed(data, props, return_probabilities=True)
    p.streaming = True
    from oxunet.inference import export

    monkeypatch.setattr(export, "SLAB_CHUNK_BYTES", 1)
    got = p.predict_preprocessed(data, props, return_probabilities=True)
    assert got.streaming
    np.testing.assert_array_equal(got.segmentation, ref.segmentation)
    np.testing.assert_allclose(got.probabilities, ref.probabilities, rtol=1e-6, atol=1e-7)
    assert len(np.unique(ref.segmentation)) >= 3


def test_streaming_export_slab_by_slab_any_slab_sizes():
    """The sink alone, fed slabs of uneven sizes (1 plane, the halo straddling two slabs): labels,
    probabilities and entropy equal the whole-volume export's bit for bit (isotropic, linear)."""
    from oxunet.inference.export import StreamingExport, export_logits
    from oxunet.preprocessing.configuration import Resampling

    ep = ExportPlan((0, 1, 2), (0, 1, 2), (1.0, 1.0, 1.0), Resampling("resample_data_or_seg_to_shape", 1, 0, None),
                    False, None, 5, np.uint8, "SimpleITKIO", ".nii.gz")
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((5, 17, 9, 11)).astype(np.float32)
    for target, spacing in (((29, 13, 8), (0.6, 0.7, 1.3)), ((7, 13, 8), (2.3, 0.7, 1.3))):
        props = {"spacing": list(spacing), "shape_before_cropping": list(target),
                 "bbox_used_for_cropping": [[0, t] for t in target],
                 "shape_after_cropping_and_before_resampling": list(target)}
        ref_unc: dict = {}
        ref_seg, _ = export_logits(ep, logits, props, uncertainty=ref_unc)
        _, ref_probs = export_logits(ep, logits, props, return_probabilities=True)
        for cuts in ((0, 1, 2, 3, 9, 10, 17), (0, 17), (0, 5, 6, 12, 17)):
            sink = StreamingExport(ep, props, logits.shape[1:], return_probabilities=True, uncertainty=True)
            sink([(a, b, logits[:, a:b].copy()) for a, b in zip(cuts, cuts[1:])])
            seg, probs = sink.result()
            np.testing.assert_array_equal(seg, ref_seg)
            np.testing.assert_allclose(probs, ref_probs, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(sink.uncertainty["entropy"], ref_unc["entropy"], rtol=1e-5, atol=1e-6)
            labels = StreamingExport(ep, props, logits.shape[1:])
            for a, b in zip(cuts, cuts[1:]):
                labels([(a, b, logits[:, a:b].copy())])
            np.testing.assert_array_equal(labels.result()[0], ref_seg)
        short = StreamingExport(ep, props, logits.shape[1:])
        short([(0, 5, logits[:, :5].copy())])
        with pytest.raises(RuntimeError, match="output planes were produced"):
            short.result()


def test_in_memory_api_matches_files(project):
    p = _predictor(project, tta="none")
    f = project["test_images"] / "case_000_0000.nii.gz"
    img = sitk.ReadImage(str(f))
    from_file = p.predict_case([f], return_probabilities=True)
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    from_array = p.predict_array(arr, img.GetSpacing()[::-1], return_probabilities=True)
    np.testing.assert_array_equal(from_array.segmentation, from_file.segmentation)
    np.testing.assert_allclose(from_array.probabilities, from_file.probabilities)
    out = p.predict_sitk(img)
    assert out.GetSpacing() == img.GetSpacing() and out.GetOrigin() == img.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), from_file.segmentation)
    assert set(from_file.times) >= {"preprocessing", "network", "aggregation", "export", "total"}
    assert from_file.peak_rss_bytes > 0
    with pytest.raises(InferenceError, match="2 image channel"):
        p.predict_array(np.stack([arr, arr]), img.GetSpacing()[::-1])


def test_bf16_autocast_agrees_with_fp32(project):
    f = [project["test_images"] / "case_000_0000.nii.gz"]
    ref = _predictor(project, tta="none").predict_case(f).segmentation
    got = _predictor(project, tta="none", precision="bf16").predict_case(f).segmentation
    assert (got == ref).mean() > 0.99


def test_predict_folder_continue_parts_and_report(project, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(3):
        shutil.copy(project["test_images"] / "case_000_0000.nii.gz", inp / f"c{i}_0000.nii.gz")
    out = tmp_path / "out"
    rep = predict_folder(inp, out, project["model"], [0], tta="none", device="cpu", precision="fp32", part_id=1,
                         num_parts=2, quiet=True, num_processes_preprocessing=1, num_processes_export=1)
    assert [c["case"] for c in rep["cases"]] == ["c1"]
    rep = predict_folder(inp, out, project["model"], [0], tta="none", device="cpu", precision="fp32", quiet=True)
    assert sorted(c["case"] for c in rep["cases"]) == ["c0", "c1", "c2"]
    mtime = os.stat(out / "c0.nii.gz").st_mtime_ns
    rep = predict_folder(inp, out, project["model"], [0], tta="none", device="cpu", precision="fp32", overwrite=False,
                         quiet=True)
    assert rep["cases"] == [] and rep["skipped"] == ["c0", "c1", "c2"]
    assert os.stat(out / "c0.nii.gz").st_mtime_ns == mtime
    saved = json.loads((out / "prediction_report.json").read_text())
    assert saved["format"] == "oxunet-prediction-report"
    for name in ("dataset.json", "plans.json", "predict_from_raw_data_args.json"):
        assert (out / name).is_file()
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"c{i}.nii.gz"))) for i in (0, 2))
    np.testing.assert_array_equal(a, b)
    rep = predict_folder(inp, tmp_path / "p16", project["model"], [0], tta="none", device="cpu", precision="fp32",
                         quiet=True, save_probabilities=True, probabilities_dtype="float16")
    p16 = np.load(tmp_path / "p16" / "c0.npz")["probabilities"]
    assert p16.dtype == np.float16 and p16.shape == (4, *a.shape)
    assert (p16.argmax(0) == a).mean() > 0.99  # float16 rounding may tie close classes


def test_bad_inputs_give_one_clear_error(project, tmp_path):
    src = project["test_images"] / "case_000_0000.nii.gz"
    kw = dict(device="cpu", precision="fp32", quiet=True, tta="none")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(src)), str(wrong / "case_000_0000.nii"))
    with pytest.raises(InferenceError, match=r"case_000_0000.nii: file ending '.nii', but the model reads '.nii.gz'"):
        predict_folder(wrong, tmp_path / "o1", project["model"], [0], **kw)
    missing = tmp_path / "missing"
    missing.mkdir()
    shutil.copy(src, missing / "case_000_0001.nii.gz")
    with pytest.raises(InferenceError, match=r"case case_000: missing channel file case_000_0000.nii.gz"):
        predict_folder(missing, tmp_path / "o2", project["model"], [0], **kw)
    with pytest.raises(InferenceError, match="output folder must differ"):
        predict_folder(project["test_images"], project["test_images"], project["model"], [0], **kw)
    two = tmp_path / "two"
    two.mkdir()
    img = sitk.ReadImage(str(src))
    arr = sitk.GetArrayFromImage(img)
    vec = sitk.GetImageFromArray(np.stack([arr, arr]).astype(np.float32), isVector=False)
    sitk.WriteImage(vec, str(two / "case_000_0000.nii.gz"))
    with pytest.raises(InferenceError, match="case case_000: 2 image channel"):
        predict_folder(two, tmp_path / "o3", project["model"], [0], num_processes_preprocessing=0, **kw)


def test_cascade_appends_previous_stage_one_hot(project, tmp_path):
    plans = json.loads(json.dumps(project["plans"]))
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    model = write_model_folder(tmp_path / "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres", plans,
                               project["dataset_json"], "3d_cascade_fullres", nnunet=False, seed=4)
    p = Predictor.from_model_folder(model, device="cpu", precision="fp32", tta="none")
    assert p.num_input_channels == 4
    f = project["test_images"] / "case_000_0000.nii.gz"
    prev = tmp_path / "prev"
    prev.mkdir()
    seg_file = project["test_images"].parent / "labelsTr" / "case_000.nii.gz"
    shutil.copy(seg_file, prev / "case_000.nii.gz")
    data, props = p.preprocess([str(f)], prev_stage_seg=prev / "case_000.nii.gz")
    assert data.shape[0] == 4
    onehot = data[1:]
    assert set(np.unique(onehot)) <= {0.0, 1.0} and onehot.sum(0).max() == 1
    for lab in (1, 2, 3):
        assert onehot[lab - 1].sum() > 0
    with pytest.raises(InferenceError, match="cascade stage"):
        p.preprocess([str(f)])
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(f, inp)
    with pytest.raises(InferenceError, match="--prev-stage"):
        predict_folder(inp, tmp_path / "o", None, predictor=p, quiet=True)
    rep = predict_folder(inp, tmp_path / "o", None, predictor=p, prev_stage_dir=prev, quiet=True)
    assert [c["case"] for c in rep["cases"]] == ["case_000"]


def test_cli_predict_with_model_folder(project, tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    out = tmp_path / "cli"
    r = CliRunner().invoke(main, ["predict", "-i", str(project["test_images"]), "-o", str(out), "-m",
                                  str(project["model"]), "-f", "0", "1", "--disable_tta", "-device", "cpu",
                                  "--precision", "fp32", "-npp", "0", "-nps", "0", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "case_000.nii.gz").is_file()
    args = json.loads((out / "predict_from_raw_data_args.json").read_text())
    assert args["folds"] == [0, 1] and args["tta"] == "none"
    r = CliRunner().invoke(main, ["predict", "-i", str(project["test_images"]), "-o", str(out), "-m",
                                  str(tmp_path / "nope")])
    assert r.exit_code != 0 and "model folder not found" in r.output


def test_cli_predict_resolves_dataset_and_configuration(project, tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    results = tmp_path / "results"
    shutil.copytree(project["model"], results / project["name"] / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["predict", "-i", str(project["test_images"]), "-o", str(out), "-d", "901", "-c",
                                  "3d_fullres", "-f", "1", "--tta", "none", "--device", "cpu", "--precision", "fp32",
                                  "--results-dir", str(results), "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "prediction_report.json").read_text())["model"]["folds"] == [1]
    r = CliRunner().invoke(main, ["predict", "-i", str(project["test_images"]), "-o", str(out), "-d", "901", "-c",
                                  "3d_lowres", "--results-dir", str(results)])
    assert r.exit_code != 0 and "nnUNetTrainer__nnUNetPlans__3d_lowres: model folder not found" in r.output


@pytest.mark.parametrize("original_spacing, cropped", [
    ((1.3, 0.9, 1.1), (18, 22, 20)),  # whole-volume export (auto: small logits)
    ((3.0, 0.8, 0.8), (9, 26, 23)),   # streamed export
])
def test_saved_probabilities_disk_backed_same_bytes(project, tmp_path, original_spacing, cropped, monkeypatch):
    """--save-probabilities builds the probabilities disk-backed in the output folder (bounded RSS):
    the .npz holds the same bytes as the in-memory path, and no temporary file is left behind."""
    from oxunet.inference import export

    p = _many_class_predictor(project)
    p.streaming = "auto" if original_spacing[0] != 3.0 else True
    data = np.random.default_rng(4).standard_normal((1, 24, 21, 18)).astype(np.float32)
    props = {"spacing": list(original_spacing), "shape_before_cropping": [cropped[0] + 2, cropped[1] + 1, cropped[2] + 3],
             "bbox_used_for_cropping": [[1, cropped[0] + 1], [0, cropped[1]], [2, cropped[2] + 2]],
             "shape_after_cropping_and_before_resampling": list(cropped),
             "sitk_stuff": {"spacing": tuple(original_spacing[::-1]), "origin": (0.0, 0.0, 0.0),
                            "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}}
    monkeypatch.setattr(export, "SLAB_CHUNK_BYTES", 1)  # one plane / channel at a time
    monkeypatch.setattr(export, "CHUNK_BYTES", 1)
    ref = p.predict_preprocessed(data, props, return_probabilities=True)
    spilled = []
    real = export._spill_array
    monkeypatch.setattr(export, "_spill_array", lambda *a: spilled.append(a[1]) or real(*a))
    out = tmp_path / "out"
    got = p.predict_preprocessed(data, props, out / "case", save_probabilities=True)
    assert spilled and got.streaming == (original_spacing[0] == 3.0)
    np.testing.assert_array_equal(got.segmentation, ref.segmentation)
    with np.load(out / "case.npz") as z:
        saved = z["probabilities"]
    assert saved.dtype == ref.probabilities.dtype and saved.tobytes() == np.ascontiguousarray(ref.probabilities).tobytes()
    assert sorted(f.name for f in out.iterdir()) == sorted(["case.json", "case.npz", "case" + p.dataset.file_ending])


def test_npz_written_band_by_band_reads_back(tmp_path, monkeypatch):
    """The probabilities' .npz is written a band per channel at a time (a disk-backed array is
    never resident as a whole): np.load reads back the same array, transposed views and float16
    included, and the file is byte-compatible with what np.savez_compressed holds."""
    from oxunet.inference import export

    monkeypatch.setattr(export, "SLAB_CHUNK_BYTES", 1)
    a = np.random.default_rng(0).random((3, 7, 5, 4)).astype(np.float32)
    disk = export._spill_array(tmp_path, a.shape, np.float32)
    disk[:] = a
    for i, arr in enumerate((a, a.transpose(0, 3, 1, 2), a.astype(np.float16), disk.transpose(0, 2, 1, 3))):
        export._savez_compressed_banded(tmp_path / f"{i}.npz", "probabilities", arr)
        with np.load(tmp_path / f"{i}.npz") as z:
            assert z.files == ["probabilities"]
            got = z["probabilities"]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("net_depth, target_depth", [(267, 400), (400, 267), (31, 97), (97, 31), (133, 400)])
def test_axis0_source_at_realistic_sizes(project, net_depth, target_depth):
    """The streamed export's axis-0 plane map (separate z, nearest) is the kernel's own nearest
    mapping floor((o + 0.5) * n / m), monotone, at CT-like depths, not only tiny ones."""
    from oxunet.inference.export import _axis0_source

    p = _many_class_predictor(project)
    cs, ns = [3.0, 0.8, 0.8], [1.0, 0.8, 0.8]
    idx = _axis0_source(p.export_plan, net_depth, target_depth, cs, ns)
    o = np.arange(target_depth, dtype=np.float64)
    expect = np.minimum(np.floor((o + 0.5) * net_depth / target_depth), net_depth - 1).astype(np.int64)
    np.testing.assert_array_equal(idx, expect)
    assert 0 <= idx[0] and idx[-1] <= net_depth - 1 and (np.diff(idx) >= 0).all()


def test_default_stage_threads_leave_small_machines_to_the_network():
    from oxunet.inference.folder import default_stage_threads

    assert [default_stage_threads(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 2, 2, 2]
    assert default_stage_threads() == (1 if (os.cpu_count() or 1) <= 2 else 2)
