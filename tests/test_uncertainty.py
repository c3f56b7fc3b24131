"""--save-uncertainty: entropy of the averaged probabilities and the members' disagreement, against
NumPy references; zero where members agree, maximal where they split evenly; the same maps from
the whole-volume, streamed and probabilities export paths; files and report summaries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from inference_models import random_network, tiny_project

from oxunet.inference import Predictor, predict_folder
from oxunet.inference.uncertainty import (RunningEntropy, entropy_from_probabilities, member_disagreement,
                                          summarize)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc")
    proj = tiny_project(root)
    proj["root"] = root
    return proj


def _softmax(x, axis=0):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _entropy_ref(logits):
    p = _softmax(logits.astype(np.float64))
    return -(p * np.log(np.clip(p, 1e-300, 1))).sum(0) / math.log(logits.shape[0])


def test_member_disagreement_equals_numpy_and_its_bounds():
    rng = np.random.default_rng(0)
    members = rng.standard_normal((8, 5, 4, 6, 3)).astype(np.float32) * 3
    ref = _softmax(members.astype(np.float64), 1).var(0).sum(0)
    got = member_disagreement(torch.from_numpy(members), False).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    same = np.repeat(members[:1], 4, 0)
    assert member_disagreement(torch.from_numpy(same), False).abs().max() == 0  # all agree: exactly zero
    split = np.full((2, 3, 2, 2), -30.0, np.float32)  # confident members, split evenly between classes 0 and 1
    split[0, 0], split[1, 1] = 30.0, 30.0
    np.testing.assert_allclose(member_disagreement(torch.from_numpy(split), False).numpy(), 0.5, atol=1e-6)
    # regions: per-region sigmoid variance, summed
    reg = rng.standard_normal((3, 2, 5)).astype(np.float32)
    np.testing.assert_allclose(member_disagreement(torch.from_numpy(reg), True).numpy(),
                               (1 / (1 + np.exp(-reg.astype(np.float64)))).var(0).sum(0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_running_entropy_equals_numpy_by_any_chunking(chunk):
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((5, 6, 7, 4)) * 4).astype(np.float32)
    logits[:, 0, 0, 0] = 2.0  # uniform: entropy 1
    logits[:, 0, 0, 1] = [80, 0, 0, 0, 0]  # certain: entropy 0
    run = RunningEntropy(logits.shape[1:], 5, False)
    for c0 in range(0, 5, chunk):
        run.feed(c0, logits[c0:c0 + chunk])
    got = run.finish()
    np.testing.assert_allclose(got, _entropy_ref(logits), rtol=1e-5, atol=2e-6)
    assert got[0, 0, 0] == pytest.approx(1, abs=1e-6) and got[0, 0, 1] == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(entropy_from_probabilities(_softmax(logits).astype(np.float32), False),
                               _entropy_ref(logits), rtol=1e-4, atol=1e-5)


def test_region_entropy_is_the_mean_binary_entropy():
    logits = np.array([[0.0, 50.0], [0.0, -50.0]], np.float32)[:, :, None, None]  # 2 regions, 2 voxels
    run = RunningEntropy((2, 1, 1), 2, True)
    run.feed(0, logits[:1])
    run.feed(1, logits[1:])
    np.testing.assert_allclose(run.finish()[:, 0, 0], [1.0, 0.0], atol=1e-6)


def test_summaries_sort_cases():
    seg = np.zeros((2, 3, 4), np.uint8)
    seg[0] = 1
    ent = np.zeros(seg.shape, np.float32)
    ent[0, 0] = 0.9
    s = summarize(ent, np.full(seg.shape, 0.2, np.float32), seg)
    assert s["foreground_voxels"] == 12 and s["mean_entropy_foreground"] == pytest.approx(0.9 * 4 / 12)
    assert s["uncertain_fraction"] == pytest.approx(4 / 24) and s["uncertain_fraction_of_foreground"] == pytest.approx(4 / 12)
    assert s["mean_disagreement_foreground"] == pytest.approx(0.2) and s["max_disagreement"] == pytest.approx(0.2)


class _Constant(torch.nn.Module):
    """Logits that do not depend on the input: one confident class per member."""

    def __init__(self, bias):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, len(bias), 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))

    def forward(self, x):
        return self.conv(x)


def _case(project):
    return sorted(project["test_images"].glob("*_0000.nii.gz"))


def test_members_that_agree_give_zero_and_an_even_split_the_maximum(project):
    kw = dict(device="cpu", precision="fp32", accumulator_dtype="float32")
    plans, ds = project["plans"], project["dataset_json"]
    net = random_network(plans, "3d_fullres", 1, 4, seed=3, nnunet=False)
    agree = Predictor.from_networks(plans, "3d_fullres", ds, [net, net], (0, 1, 2), tta="none", **kw)
    res = agree.predict_case(_case(project), save_uncertainty=True, return_probabilities=True)
    assert set(res.uncertainty) == {"entropy", "disagreement"}
    assert res.uncertainty["disagreement"].shape == res.segmentation.shape
    assert np.abs(res.uncertainty["disagreement"]).max() < 1e-7
    # the entropy map is that of the exported probabilities
    p = res.probabilities.astype(np.float64)
    ref = -(p * np.log(np.clip(p, 1e-12, 1))).sum(0) / math.log(4)
    np.testing.assert_allclose(res.uncertainty["entropy"], ref, atol=1e-4)
    assert res.uncertainty["entropy"].max() > 0.05
    split = Predictor.from_networks(plans, "3d_fullres", ds, [_Constant([30, -30, -30, -30]), _Constant([-30, 30, -30, -30])],
                                    (0, 1, 2), tta="none", **kw)
    res = split.predict_case(_case(project), save_uncertainty=True)
    assert split.export_plan.transpose_forward == (0, 1, 2)
    inside = tuple(slice(a, b) for a, b in res.properties["bbox_used_for_cropping"])  # 0 outside the crop
    np.testing.assert_allclose(res.uncertainty["disagreement"][inside], 0.5, atol=1e-4)  # one-hot halves: the maximum
    np.testing.assert_allclose(res.uncertainty["entropy"][inside], 0.5, atol=1e-4)  # mean logits: two classes at 1/2
    assert res.uncertainty_summary["max_disagreement"] == pytest.approx(0.5, abs=1e-4)


def test_label_path_streamed_path_and_probability_path_agree(project):
    """Entropy by the running log-sum-exp (labels, whole volume and slab by slab) equals entropy of the probabilities."""
    plans, ds = project["plans"], project["dataset_json"]
    nets = [random_network(plans, "3d_fullres", 1, 4, seed=s, nnunet=False) for s in (1, 2)]
    p = Predictor.from_networks(plans, "3d_fullres", ds, nets, (0, 1, 2), tta=(1,), device="cpu", precision="fp32",
                                accumulator_dtype="float32")
    data = np.random.default_rng(3).standard_normal((1, 24, 21, 18)).astype(np.float32)
    props = {"spacing": [1.0, 0.8, 1.2], "shape_before_cropping": [26, 27, 18],
             "bbox_used_for_cropping": [[1, 25], [0, 26], [2, 17]], "shape_after_cropping_and_before_resampling": [24, 26, 15]}
    p.streaming = False
    whole = p.predict_preprocessed(data, props, save_uncertainty=True)
    probs = p.predict_preprocessed(data, props, return_probabilities=True, save_uncertainty=True)
    p.streaming = True
    streamed = p.predict_preprocessed(data, props, save_uncertainty=True)
    assert streamed.streaming and not whole.streaming
    for name in ("entropy", "disagreement"):
        np.testing.assert_allclose(streamed.uncertainty[name], whole.uncertainty[name], atol=1e-5)
        np.testing.assert_allclose(probs.uncertainty[name], whole.uncertainty[name], atol=1e-4)
    assert whole.uncertainty["entropy"].shape == (26, 27, 18)
    assert (whole.uncertainty["entropy"][0] == 0).all()  # outside the crop
    assert whole.uncertainty["disagreement"].max() > 1e-3  # two different folds (and a flip) disagree somewhere
    np.testing.assert_array_equal(streamed.segmentation, whole.segmentation)


def test_predict_folder_writes_maps_and_report(project, tmp_path):
    plans, ds = project["plans"], project["dataset_json"]
    net = random_network(plans, "3d_fullres", 1, 4, seed=4, nnunet=False)
    p = Predictor.from_networks(plans, "3d_fullres", ds, [net], (0, 1, 2), tta="all", device="cpu", precision="fp32")
    report = predict_folder(project["test_images"], tmp_path / "out", None, predictor=p, save_uncertainty=True,
                            num_processes_preprocessing=0, num_processes_export=0, quiet=True)
    case = report["cases"][0]
    assert set(case["uncertainty"]) >= {"mean_entropy_foreground", "uncertain_fraction", "mean_disagreement_foreground"}
    import SimpleITK as sitk

    seg_img = sitk.ReadImage(str(tmp_path / "out" / f"{case['case']}.nii.gz"))
    for name in ("entropy", "disagreement"):
        img = sitk.ReadImage(str(tmp_path / "out" / f"{case['case']}_{name}.nii.gz"))
        assert img.GetSize() == seg_img.GetSize() and img.GetSpacing() == seg_img.GetSpacing()
        arr = sitk.GetArrayFromImage(img)
        assert arr.dtype == np.float32 and arr.min() >= 0 and arr.max() > 0
    assert json.loads((tmp_path / "out" / "prediction_report.json").read_text())["args"]["save_uncertainty"] is True
