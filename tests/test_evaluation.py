"""Evaluation: nnU-Net's summary.json (parity with nnunetv2), NaN rules, errors, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evalpost_helpers import dataset_json, make_folders, write_seg
from oxunet.evaluation import (
    EvaluationError,
    compute_metrics,
    evaluate_folder_from_dataset_json,
    evaluate_folders,
    evaluate_multi_reference,
)
from peers import nnunet_fork_pools, require


def _nnunet_summary(gt, pred, out, labels, ignore_label=None):
    require("nnunetv2")
    import nnunetv2.evaluation.evaluate_predictions as ev
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    with nnunet_fork_pools(ev):
        compute_metrics_on_folder(str(gt), str(pred), str(out), SimpleITKIO(), ".nii.gz", labels, ignore_label, 1)
    return out.read_text()


def test_compute_metrics_counts_and_nan_rules():
    ref = np.zeros((4, 5, 6), np.uint8)
    pred = np.zeros_like(ref)
    ref[0, :2, :2] = 1  # 4 voxels
    pred[0, :2, :1] = 1  # 2 of them
    pred[3, 4, 5] = 2  # label 2 only in the prediction
    m = compute_metrics(ref, pred, [1, 2, 3, (1, 2)])
    assert m["1"] == {"Dice": 2 * 2 / (2 * 2 + 0 + 2), "IoU": 0.5, "FP": 0, "TP": 2, "FN": 2, "TN": 116, "n_pred": 2, "n_ref": 4}
    assert m["2"]["Dice"] == 0.0 and m["2"]["FP"] == 1
    assert math.isnan(m["3"]["Dice"]) and math.isnan(m["3"]["IoU"]) and m["3"]["TN"] == 120
    assert m["(1, 2)"]["TP"] == 2 and m["(1, 2)"]["FP"] == 1 and m["(1, 2)"]["FN"] == 2


def test_compute_metrics_ignore_label_and_generic_path_agree():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 4, (6, 7, 8)).astype(np.int32)
    pred = rng.integers(0, 3, (6, 7, 8)).astype(np.int32)
    fast = compute_metrics(ref, pred, [1, 2, (1, 2)], ignore_label=3)
    generic = compute_metrics(ref + 1000 * (ref == 7), pred, [1, 2, (1, 2)], ignore_label=3)  # values > 255 force the generic path
    big = compute_metrics(np.where(ref == 3, 300, ref), pred, [1, 2, (1, 2)], ignore_label=300)
    assert fast == generic == big
    keep = ref != 3
    assert fast["1"]["TP"] == int(((ref == 1) & (pred == 1) & keep).sum())
    assert fast["1"]["TN"] == int(((ref != 1) & (pred != 1) & keep).sum())


@pytest.mark.parametrize(
    "labels, ignore",
    [([1, 2], None), ([(1, 2), 2], None), ([1, 2], 3)],
    ids=["labels", "regions", "ignore_label"],
)
def test_summary_json_identical_to_nnunetv2(tmp_path, labels, ignore):
    gt, pred = make_folders(tmp_path, ignore_label=ignore)
    ours = tmp_path / "ours.json"
    evaluate_folders(gt, pred, labels, ignore_label=ignore, output_file=ours, num_processes=1, quiet=True)
    theirs = _nnunet_summary(gt, pred, tmp_path / "theirs.json", labels, ignore)
    assert ours.read_text() == theirs  # byte-identical, NaN written as nnU-Net writes it
    data = json.loads(theirs)
    assert math.isnan(data["metric_per_case"][1]["metrics"][str(labels[-1])]["Dice"])


def test_dataset_json_entry_uses_regions_ignore_and_default_output(tmp_path):
    gt, pred = make_folders(tmp_path, ignore_label=3)
    dj = dataset_json(tmp_path / "dataset.json", {"background": 0, "a": [1, 2], "b": 2, "ignore": 3},
                      regions_class_order=[1, 2])
    result = evaluate_folder_from_dataset_json(gt, pred, dj, num_processes=1, quiet=True)
    assert set(result["mean"]) == {"(1, 2)", "2"}
    direct = evaluate_folders(gt, pred, [(1, 2), 2], ignore_label=3, num_processes=1, quiet=True)
    assert json.loads((pred / "summary.json").read_text()) == json.loads(json.dumps(direct))


def test_missing_prediction_is_an_error_unless_chill(tmp_path):
    gt, pred = make_folders(tmp_path)
    (pred / "case_003.nii.gz").unlink()
    with pytest.raises(EvaluationError, match="case_003.nii.gz.*--chill"):
        evaluate_folders(gt, pred, [1, 2], num_processes=1, quiet=True)
    result = evaluate_folders(gt, pred, [1, 2], num_processes=1, chill=True, quiet=True)
    assert len(result["metric_per_case"]) == 4


def test_shape_and_spacing_mismatch_name_the_case(tmp_path):
    gt, pred = make_folders(tmp_path, n=2)
    write_seg(pred / "case_001.nii.gz", np.zeros((12, 24, 21), np.uint8))
    with pytest.raises(EvaluationError, match="case_001.nii.gz: prediction shape"):
        evaluate_folders(gt, pred, [1, 2], num_processes=1, quiet=True)
    write_seg(pred / "case_001.nii.gz", np.zeros((12, 24, 20), np.uint8), spacing=(2.0, 1.0, 1.5))
    with pytest.raises(EvaluationError, match="case_001.nii.gz: prediction spacing"):
        evaluate_folders(gt, pred, [1, 2], num_processes=1, quiet=True)


def test_unreadable_prediction_names_the_file(tmp_path):
    from oxunet.io import ImageReadError

    gt, pred = make_folders(tmp_path, n=2)
    (pred / "case_000.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="case_000.nii.gz"):
        evaluate_folders(gt, pred, [1, 2], num_processes=1, quiet=True)


def test_distance_metrics_added_next_to_nnunet_fields(tmp_path):
    gt, pred = make_folders(tmp_path, n=3)
    plain = evaluate_folders(gt, pred, [1, 2], num_processes=1, quiet=True)
    full = evaluate_folders(gt, pred, [1, 2], num_processes=1, distance_metrics=True, nsd_tolerance_mm=2.0, quiet=True)
    case0 = full["metric_per_case"][0]["metrics"]
    assert math.isinf(case0["2"]["HD95"]) and case0["2"]["NSD"] == 0.0  # label 2 missing from the prediction
    assert math.isnan(full["metric_per_case"][1]["metrics"]["2"]["HD95"])  # empty in both
    for c_plain, c_full in zip(plain["metric_per_case"], full["metric_per_case"]):
        for k, v in c_plain["metrics"].items():
            assert {m: c_full["metrics"][k][m] for m in v} == pytest.approx(v, nan_ok=True)


def test_multi_reference_reports_agreement_and_spread(tmp_path):
    gt, pred = make_folders(tmp_path / "a", n=3, seed=1)
    gt2 = tmp_path / "gt2"
    gt2.mkdir()
    import SimpleITK as sitk

    for f in sorted(gt.iterdir()):
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
        write_seg(gt2 / f.name, np.roll(arr, 1, axis=2))
    res = evaluate_multi_reference([gt, gt2], pred, [1, 2], num_processes=1, quiet=True)
    c = res["metric_per_case"][2]["metrics"]["1"]
    d1 = evaluate_folders(gt, pred, [1], num_processes=1, quiet=True)["metric_per_case"][2]["metrics"]["1"]["Dice"]
    d2 = evaluate_folders(gt2, pred, [1], num_processes=1, quiet=True)["metric_per_case"][2]["metrics"]["1"]["Dice"]
    assert c["Dice_per_reference"] == [d1, d2]
    assert c["Dice_mean"] == pytest.approx((d1 + d2) / 2) and c["Dice_std"] == pytest.approx(abs(d1 - d2) / 2)
    assert 0 < c["inter_rater_Dice"] < 1


def test_multi_reference_has_every_metric_per_reference_and_aggregated(tmp_path):
    """HD95/ASSD/NSD and nnU-Net's fields against each rater, equal to single-reference evaluation;
    spread over raters; means per reference; --chill as for one reference (CLI too)."""
    import SimpleITK as sitk
    from click.testing import CliRunner

    from oxunet.cli import main

    gt, pred = make_folders(tmp_path / "a", n=3, seed=1)
    gt2 = tmp_path / "gt2"
    gt2.mkdir()
    for f in sorted(gt.iterdir()):
        write_seg(gt2 / f.name, np.roll(sitk.GetArrayFromImage(sitk.ReadImage(str(f))), 1, axis=2))
    res = evaluate_multi_reference([gt, gt2], pred, [1, 2], num_processes=1, distance_metrics=True, quiet=True)
    singles = [evaluate_folders(g, pred, [1, 2], num_processes=1, distance_metrics=True, quiet=True) for g in (gt, gt2)]
    for i, case in enumerate(res["metric_per_case"]):
        for key in ("1", "2"):
            m = case["metrics"][key]
            for metric in ("Dice", "IoU", "FP", "n_ref", "HD95", "ASSD", "NSD"):
                want = [s["metric_per_case"][i]["metrics"][key][metric] for s in singles]
                assert m[f"{metric}_per_reference"] == pytest.approx(want, nan_ok=True), (key, metric)
                finite = [w for w in want if math.isfinite(w)]
                if len(finite) == 2:
                    assert m[f"{metric}_max"] == pytest.approx(max(finite))
                    assert m[f"{metric}_mean"] == pytest.approx(sum(finite) / 2)
            assert "inter_rater_HD95" in m and "inter_rater_NSD" in m
    c = res["metric_per_case"][2]["metrics"]["1"]
    assert c["inter_rater_HD95"] == pytest.approx(1.5)  # the raters differ by a one-voxel shift along x (1.5 mm)
    for d, single in zip((str(gt), str(gt2)), singles):
        for key in ("1", "2"):
            assert res["per_reference"][d]["mean"][key] == pytest.approx(single["mean"][key], nan_ok=True)
        assert res["per_reference"][d]["foreground_mean"] == pytest.approx(single["foreground_mean"], nan_ok=True)
    assert res["mean"]["1"]["HD95_mean"] == pytest.approx(
        np.nanmean([x["metrics"]["1"]["HD95_mean"] for x in res["metric_per_case"]]))
    assert "Dice_per_reference" not in res["mean"]["1"] and "NSD_std" in res["foreground_mean"]
    # a missing prediction: an error without --chill, the predicted cases with it
    (pred / "case_001.nii.gz").unlink()
    with pytest.raises(EvaluationError, match="--chill"):
        evaluate_multi_reference([gt, gt2], pred, [1, 2], num_processes=1, quiet=True)
    args = ["evaluate", str(gt), str(pred), "-l", "1", "2", "--multi-reference", str(gt2), "-np", "1", "--hd95"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "--chill" in r.output
    r = CliRunner().invoke(main, args + ["--chill", "-o", str(tmp_path / "multi.json")])
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "multi.json").read_text())
    assert [c["case"] for c in out["metric_per_case"]] == ["case_000.nii.gz", "case_002.nii.gz"]
    assert "HD95_mean" in out["foreground_mean"] and "foreground mean" in r.stdout


def test_evaluation_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, oxunet.evaluation; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": "python"})


def test_cli_evaluate_simple_and_dataset_json(tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    gt, pred = make_folders(tmp_path, n=3, ignore_label=3)
    out = tmp_path / "s.json"
    r = CliRunner().invoke(main, ["evaluate", str(gt), str(pred), "-l", "1", "2", "-il", "3", "-np", "1", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "foreground mean" in r.output
    expected = evaluate_folders(gt, pred, [1, 2], ignore_label=3, num_processes=1, quiet=True)
    assert json.loads(out.read_text()) == json.loads(json.dumps(expected))
    dj = dataset_json(tmp_path / "dataset.json", {"background": 0, "a": 1, "b": 2, "ignore": 3})
    r = CliRunner().invoke(main, ["evaluate", str(gt), str(pred), "-djfile", str(dj), "-np", "1", "-q", "--hd95"])
    assert r.exit_code == 0, r.output
    assert "HD95" in json.loads((pred / "summary.json").read_text())["foreground_mean"]
    (pred / "case_002.nii.gz").unlink()
    r = CliRunner().invoke(main, ["evaluate", str(gt), str(pred), "-l", "1", "-np", "1", "-q"])
    assert r.exit_code != 0 and "case_002.nii.gz" in r.output
    r = CliRunner().invoke(main, ["evaluate", str(gt), str(pred), "-np", "1"])
    assert r.exit_code == 2 and "exactly one of" in r.output
