"""Prediction that stays on the device (--export-on device), run here on the CPU as torch code: it
must equal the Rust path (resampling to ~1e-6, the same windows and float16 sums, the same labels)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inference_models import random_network, write_model_folder

from oxunet.inference import InferenceError, Predictor, predict_folder
from oxunet.inference.torch_resample import resample_data_torch
from oxunet.kernels import resample_data


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py (also `project`, the tiny model)


@settings(max_examples=25)
@given(shape=st.tuples(st.integers(1, 3), st.integers(2, 14), st.integers(2, 14), st.integers(2, 14)),
       new=st.tuples(st.integers(1, 18), st.integers(1, 18), st.integers(1, 18)),
       spacing=st.sampled_from([(1, 1, 1), (3.5, 1, 1), (1, 0.8, 4), (1, 1, 1.2)]),
       order=st.sampled_from([0, 1, 3]), order_z=st.sampled_from([0, 1, 3]),
       force=st.sampled_from([None, True, False]), seed=st.integers(0, 3))
def test_torch_resampling_equals_the_kernel(shape, new, spacing, order, order_z, force, seed):
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 50
    ref = resample_data(data, new, spacing, (1, 1, 1), order=order, order_z=order_z, force_separate_z=force)
    got = resample_data_torch(torch.from_numpy(data), new, spacing, (1, 1, 1), order, order_z, force).numpy()
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def _predictor(project, export_on, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("precision", "fp32")
    return Predictor.from_model_folder(project["model"], kw.pop("folds", [0, 1]), export_on=export_on, **kw)


@pytest.mark.parametrize("accumulator", ["float16", "float32"])
def test_device_path_equals_rust_path(project, accumulator):
    f = [project["test_images"] / "case_000_0000.nii.gz"]
    cpu = _predictor(project, "cpu", accumulator_dtype=accumulator).predict_case(f, return_probabilities=True)
    dev_p = _predictor(project, "device", accumulator_dtype=accumulator)
    assert dev_p.on_device and not _predictor(project, "auto").on_device  # auto: device only on CUDA
    dev = dev_p.predict_case(f, return_probabilities=True)
    assert dev.on_device and not cpu.on_device and dev.peak_gpu_memory_bytes is None  # no GPU here
    agree = float((dev.segmentation == cpu.segmentation).mean())
    assert agree >= 0.999, agree
    np.testing.assert_allclose(dev.probabilities, cpu.probabilities, atol=2e-3 if accumulator == "float16" else 1e-5)
    assert len(np.unique(cpu.segmentation)) >= 2
    assert set(dev.times) >= {"preprocessing", "network", "aggregation", "export"}
    labels_only = dev_p.predict_case(f)
    np.testing.assert_array_equal(labels_only.segmentation, dev.segmentation)


@pytest.mark.parametrize("original_spacing, cropped", [
    ((3.0, 0.8, 0.8), (9, 26, 23)),   # axis 0 resampled separately (nearest)
    ((1.0, 0.8, 1.2), (24, 26, 15)),  # axis 0 keeps its size
    ((1.3, 0.9, 1.1), (18, 22, 20)),  # joint linear interpolation (the CPU path cannot stream this)
])
def test_device_export_equals_whole_volume_export(project, original_spacing, cropped, monkeypatch):
    plans = json.loads(json.dumps(project["plans"]))
    ds = dict(project["dataset_json"])
    ds["labels"] = {"background": 0, **{f"c{i}": i for i in range(1, 7)}}
    net = random_network(plans, "3d_fullres", 1, 7, seed=5, nnunet=False)
    make = lambda on: Predictor.from_networks(plans, "3d_fullres", ds, [net], None, device="cpu", precision="fp32",
                                              accumulator_dtype="float32", streaming=False, export_on=on)
    data = np.random.default_rng(3).standard_normal((1, 24, 21, 18)).astype(np.float32)
    props = {"spacing": list(original_spacing), "shape_before_cropping": [cropped[0] + 2, cropped[1] + 1, cropped[2] + 3],
             "bbox_used_for_cropping": [[1, cropped[0] + 1], [0, cropped[1]], [2, cropped[2] + 2]],
             "shape_after_cropping_and_before_resampling": list(cropped)}
    ref = make("cpu").predict_preprocessed(data, props, return_probabilities=True)
    dev = make("device")
    got = dev.predict_preprocessed(torch.from_numpy(data), props, return_probabilities=True)
    np.testing.assert_array_equal(got.segmentation, ref.segmentation)
    np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-5)
    from oxunet.inference import on_device

    monkeypatch.setattr(on_device, "EXPORT_CHUNK_BYTES", 1)  # one channel at a time: the running argmax
    np.testing.assert_array_equal(dev.predict_preprocessed(data, props).segmentation, ref.segmentation)
    assert (ref.segmentation[0] == 0).all()


def test_device_path_2d_cascade_and_folder(project, tmp_path):
    model2d = write_model_folder(tmp_path / "nnUNetTrainer__nnUNetPlans__2d", project["plans"], project["dataset_json"],
                                 "2d", nnunet=False, seed=2, mirror_axes=(0, 1))
    f = [project["test_images"] / "case_000_0000.nii.gz"]
    a = Predictor.from_model_folder(model2d, device="cpu", precision="fp32", export_on="cpu").predict_case(f)
    b = Predictor.from_model_folder(model2d, device="cpu", precision="fp32", export_on="device").predict_case(f)
    assert (a.segmentation == b.segmentation).mean() >= 0.999
    plans = json.loads(json.dumps(project["plans"]))
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    model = write_model_folder(tmp_path / "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres", plans,
                               project["dataset_json"], "3d_cascade_fullres", nnunet=False, seed=4)
    prev = project["test_images"].parent / "labelsTr" / "case_000.nii.gz"
    p_dev = Predictor.from_model_folder(model, device="cpu", precision="fp32", tta="none", export_on="device")
    p_cpu = Predictor.from_model_folder(model, device="cpu", precision="fp32", tta="none", export_on="cpu")
    data, _ = p_dev.preprocess([str(f[0])], prev_stage_seg=prev)
    assert isinstance(data, torch.Tensor) and data.shape[0] == 4
    ref, _ = p_cpu.preprocess([str(f[0])], prev_stage_seg=prev)
    np.testing.assert_allclose(data.numpy(), ref, rtol=1e-5, atol=1e-4)
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(f[0], inp)
    rep = predict_folder(inp, tmp_path / "out", project["model"], [0], device="cpu", precision="fp32",
                         export_on="device", quiet=True)
    case = rep["cases"][0]
    assert case["on_device"] is True and case["peak_gpu_memory_bytes"] is None
    with pytest.raises(InferenceError, match="export_on"):
        _predictor(project, "gpu")


@pytest.mark.parametrize("scheme,mask", [("CTNormalization", False), ("ZScoreNormalization", False),
                                         ("RescaleTo01Normalization", False), ("NoNormalization", False),
                                         ("ZScoreNormalization", True)])
def test_device_preprocessing_equals_the_cpu_pipeline(scheme, mask):
    from oxunet.inference.device_preprocessing import preprocess_on_device
    from oxunet.preprocessing.configuration import PreprocessingPlan
    from oxunet.preprocessing.pipeline import preprocess_case

    plans = json.loads((Path(__file__).parent / "inference_tiny_plans.json").read_text())
    plans["transpose_forward"], plans["transpose_backward"] = [2, 0, 1], [1, 2, 0]
    cfg = plans["configurations"]["3d_fullres"]
    cfg["normalization_schemes"], cfg["use_mask_for_norm"] = [scheme], [mask]
    plan = PreprocessingPlan.from_plans(plans, "3d_fullres")
    rng = np.random.default_rng(0)
    img = np.zeros((1, 20, 30, 25), np.float32)
    img[:, 3:17, 5:28, 2:20] = rng.normal(100, 50, (1, 14, 23, 18))
    props = {"spacing": [1.3, 0.9, 1.1]}
    got = preprocess_on_device(plan, img, props, "cpu")
    if mask:
        assert got is None  # masked ZScore needs the hole-filled mask: the CPU pipeline does it
        return
    ref, _, ref_props = preprocess_case(img, None, props, plan, class_keys=[])
    data, dev_props = got
    assert dev_props == ref_props
    np.testing.assert_allclose(data.numpy(), ref, rtol=1e-5, atol=2e-5)
    empty = preprocess_on_device(plan, np.zeros((1, 6, 7, 8), np.float32), props, "cpu")[1]
    assert empty["bbox_used_for_cropping"] == [[0, 8], [0, 6], [0, 7]]  # all zero: the full extent


def test_out_of_gpu_memory_falls_back_to_the_host(project, monkeypatch):
    from oxunet.inference import on_device

    f = [project["test_images"] / "case_000_0000.nii.gz"]
    ref = _predictor(project, "cpu").predict_case(f)
    p = _predictor(project, "device")

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(on_device, "sliding_window_on_device", oom)
    with pytest.warns(UserWarning, match="ran out of GPU memory"):
        res = p.predict_case(f)
    np.testing.assert_array_equal(res.segmentation, ref.segmentation)
    assert "out of memory" in res.streaming_note
    monkeypatch.undo()
    monkeypatch.setattr(on_device, "export_on_device", oom)
    with pytest.warns(UserWarning, match="export on the device ran out"):
        res = p.predict_case(f)
    assert (res.segmentation == ref.segmentation).mean() >= 0.999


@pytest.mark.parametrize("original_spacing, cropped", [
    ((3.0, 0.8, 0.8), (9, 26, 23)),   # axis 0 resampled separately (nearest): output planes picked per slab
    ((1.0, 0.8, 1.2), (24, 26, 15)),  # axis 0 keeps its size
])
@pytest.mark.parametrize("accumulator", ["float16", "float32"])
def test_device_streaming_equals_whole_volume(project, original_spacing, cropped, accumulator, monkeypatch):
    """Bounded GPU memory: the sums hold twice the patch depth and finished slabs are exported as
    the windows pass them; the labels equal the whole-volume device export and the Rust path."""
    plans = json.loads(json.dumps(project["plans"]))
    ds = dict(project["dataset_json"])
    ds["labels"] = {"background": 0, **{f"c{i}": i for i in range(1, 7)}}
    net = random_network(plans, "3d_fullres", 1, 7, seed=5, nnunet=False)

    def make(on, streaming):
        return Predictor.from_networks(plans, "3d_fullres", ds, [net], None, device="cpu", precision="fp32",
                                       accumulator_dtype=accumulator, streaming=streaming, export_on=on)

    data = np.random.default_rng(3).standard_normal((1, 40, 21, 18)).astype(np.float32)  # 40 planes, patch 16
    props = {"spacing": list(original_spacing), "shape_before_cropping": [cropped[0] + 2, cropped[1] + 1, cropped[2] + 3],
             "bbox_used_for_cropping": [[1, cropped[0] + 1], [0, cropped[1]], [2, cropped[2] + 2]],
             "shape_after_cropping_and_before_resampling": list(cropped)}
    if original_spacing[0] == 1.0:
        props["shape_after_cropping_and_before_resampling"][0] = 40
        props["bbox_used_for_cropping"][0] = [1, 41]
        props["shape_before_cropping"][0] = 42
    whole = make("device", False).predict_preprocessed(data, props)
    streamed = make("device", True).predict_preprocessed(data, props)
    rust = make("cpu", False).predict_preprocessed(data, props)
    assert streamed.streaming and "streamed" in streamed.streaming_note and not whole.streaming
    np.testing.assert_array_equal(streamed.segmentation, whole.segmentation)
    # float32 resampling matrices vs the kernel's float64: a near-tie may flip (float16 sums make more)
    assert (whole.segmentation == rust.segmentation).mean() >= 0.999
    from oxunet.inference import on_device

    seen = []
    real = on_device._Ring.advance
    monkeypatch.setattr(on_device._Ring, "advance", lambda self, a, b: (seen.append(self.depth), real(self, a, b)))
    make("device", True).predict_preprocessed(data, props)
    assert set(seen) == {32}  # the sums never held more than two patch depths of the 40 planes


def test_uncertainty_with_export_on_auto_aggregates_on_the_host(project):
    """On CUDA the export defaults to the device; --save-uncertainty then runs the host path
    (the maps are aggregated there) instead of refusing, and gives the CPU path's maps."""
    f = [project["test_images"] / "case_000_0000.nii.gz"]
    cpu = _predictor(project, "cpu").predict_case(f, save_uncertainty=True)
    with pytest.raises(InferenceError, match="--save-uncertainty runs with the export on the CPU"):
        _predictor(project, "device").predict_case(f, save_uncertainty=True)
    auto = _predictor(project, "device")
    auto.export_on = "auto"  # what export_on='auto' resolves to on a CUDA machine
    got = auto.predict_case(f, save_uncertainty=True)
    np.testing.assert_array_equal(got.segmentation, cpu.segmentation)
    for name in ("entropy", "disagreement"):  # preprocessed by torch (~1e-6), then float16 sums
        np.testing.assert_allclose(got.uncertainty[name], cpu.uncertainty[name], atol=2e-3)
        assert got.uncertainty[name].max() > 1e-2
    assert auto.predict_case(f).on_device  # without the maps it stays on the device
