"""Postprocessing: nnU-Net's decisions (parity with nnunetv2), the size rule, JSON/pkl files, CLI."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import SimpleITK as sitk

from evalpost_helpers import PLANS, blob, dataset_json, write_seg
from oxunet.postprocessing import (
    PostprocessingError,
    apply_postprocessing_to_folder,
    apply_steps,
    determine_postprocessing,
    load_postprocessing,
)
from peers import nnunet_fork_pools, require


def make_cv_folder(root, n=6, seed=0):
    """GT with one blob of label 1 and two distant blobs of label 2; predictions add small
    spurious specks of label 1 (removing them helps) and keep both label-2 blobs (keeping only
    the largest would hurt label 2)."""
    rng = np.random.default_rng(seed)
    shape = (16, 32, 32)
    gt, pred = root / "gt", root / "pred"
    gt.mkdir(parents=True)
    pred.mkdir()
    for i in range(n):
        ref = np.zeros(shape, np.uint8)
        ref[3:9, 4:14, 4:14] = 1
        ref[10:14, 20:28, 3:10] = 2
        ref[2:6, 22:30, 22:30] = 2
        p = np.roll(ref, int(rng.integers(-1, 2)), axis=1)
        for _ in range(3):
            z, y, x = (int(rng.integers(0, s - 2)) for s in shape)
            if not p[z:z + 2, y:y + 2, x:x + 2].any():
                p[z:z + 2, y:y + 2, x:x + 2] = 1
        write_seg(gt / f"c{i:02d}.nii.gz", ref)
        write_seg(pred / f"c{i:02d}.nii.gz", p)
    dataset_json(pred / "dataset.json", {"background": 0, "a": 1, "b": 2})
    (pred / "plans.json").write_text(json.dumps(PLANS))
    return gt, pred


def test_decisions_match_nnunetv2(tmp_path):
    require("nnunetv2")
    import shutil

    import nnunetv2.evaluation.evaluate_predictions as ev
    import nnunetv2.postprocessing.remove_connected_components as rcc

    gt, pred = make_cv_folder(tmp_path)
    theirs_dir = tmp_path / "theirs"
    shutil.copytree(pred, theirs_dir)
    with nnunet_fork_pools(ev, rcc):
        fns, kwargs = rcc.determine_postprocessing(str(theirs_dir), str(gt), None, None, 1)
    ours = determine_postprocessing(pred, gt, num_processes=1, quiet=True, min_size_search=False)
    assert ours["postprocessing_fns"] == [f.__name__ for f in fns]
    assert [s["labels_or_regions"] for s in ours["steps"]] == [k["labels_or_regions"] for k in kwargs]
    theirs_json = json.loads((theirs_dir / "postprocessing.json").read_text())
    for k in ("input_folder", "postprocessed", "postprocessing_fns", "postprocessing_kwargs"):
        assert ours[k] == theirs_json[k], k
    assert json.loads((pred / "postprocessing.json").read_text())["steps"] == ours["steps"]
    # the per-class step for label 1 is accepted, for label 2 rejected (two true blobs)
    assert [(d["step"]["labels_or_regions"], d["accepted"]) for d in ours["decisions"]][1:] == [(1, True), (2, False)]
    for name in sorted(p.name for p in (theirs_dir / "postprocessed").glob("*.nii.gz")):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / "postprocessed" / name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(theirs_dir / "postprocessed" / name)))
        np.testing.assert_array_equal(a, b)

    # nnU-Net's postprocessing.pkl, read through the restricted unpickler, applies identically
    out_pkl, out_json = tmp_path / "from_pkl", tmp_path / "from_json"
    apply_postprocessing_to_folder(pred, out_pkl, theirs_dir / "postprocessing.pkl", num_processes=1, quiet=True)
    apply_postprocessing_to_folder(pred, out_json, pred / "postprocessing.json", num_processes=1, quiet=True)
    for name in sorted(p.name for p in out_pkl.glob("*.nii.gz")):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(out_pkl / name)))
        np.testing.assert_array_equal(a, sitk.GetArrayFromImage(sitk.ReadImage(str(out_json / name))))
        np.testing.assert_array_equal(a, sitk.GetArrayFromImage(sitk.ReadImage(str(pred / "postprocessed" / name))))


def test_size_rule_removes_or_relabels_small_components():
    rng = np.random.default_rng(1)
    seg = np.zeros((10, 20, 20), np.uint8)
    seg[blob(seg.shape, rng, 1, (3, 5))] = 2
    seg[1, 1, 1] = 3  # a 1-voxel component
    seg[5:8, 15:18, 15:18] = 3  # a 27-voxel component
    removed = apply_steps(seg, [{"op": "remove_small_components", "labels_or_regions": [3], "min_size": 10}])
    assert removed[1, 1, 1] == 0 and (removed[5:8, 15:18, 15:18] == 3).all()
    relabel = apply_steps(seg, [{"op": "remove_small_components", "labels_or_regions": 3, "min_size": 30, "replace_with": 1}])
    assert relabel[1, 1, 1] == 1 and (relabel[5:8, 15:18, 15:18] == 1).all()
    np.testing.assert_array_equal(relabel == 2, seg == 2)


def test_hand_written_json_with_size_rule_applies_to_folder(tmp_path):
    gt, pred = make_cv_folder(tmp_path, n=2)
    pp = tmp_path / "pp.json"
    pp.write_text(json.dumps({"format": "oxunet.postprocessing", "version": 1, "steps": [
        {"op": "keep_largest_component", "labels_or_regions": [1, 2]},
        {"op": "remove_small_components", "labels_or_regions": [1], "min_size": 9, "replace_with": 2},
    ]}))
    out = tmp_path / "out"
    apply_postprocessing_to_folder(pred, out, pp, num_processes=1, quiet=True)
    src = sitk.ReadImage(str(pred / "c00.nii.gz"))
    res = sitk.ReadImage(str(out / "c00.nii.gz"))
    assert res.GetSpacing() == src.GetSpacing() and res.GetOrigin() == src.GetOrigin()
    expected = apply_steps(sitk.GetArrayFromImage(src), load_postprocessing(pp))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(res), expected)
    with pytest.raises(PostprocessingError, match="must differ"):
        apply_postprocessing_to_folder(pred, pred, pp, num_processes=1)


def test_bad_postprocessing_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "oxunet.postprocessing", "version": 1, "steps": [{"op": "dilate"}]}))
    with pytest.raises(PostprocessingError, match="unknown op 'dilate'"):
        load_postprocessing(bad)
    evil = tmp_path / "postprocessing.pkl"
    evil.write_bytes(pickle.dumps(([print], [{}])))
    from oxunet.io import UnsafePickleError

    with pytest.raises(UnsafePickleError, match="builtins.print"):
        load_postprocessing(evil)


def test_cli_determine_and_apply(tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    gt, pred = make_cv_folder(tmp_path, n=3)
    r = CliRunner().invoke(main, ["postprocess", "determine", "-i", str(pred), "-ref", str(gt), "-np", "1", "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads((pred / "postprocessing.json").read_text())
    out = tmp_path / "applied"
    r = CliRunner().invoke(main, ["postprocess", "apply", "-i", str(pred), "-o", str(out), "-pp_pkl_file",
                                  str(pred / "postprocessing.json"), "-np", "1", "-q"])
    assert r.exit_code == 0, r.output
    for f in sorted(out.glob("*.nii.gz")):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(f))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(pred / "postprocessed" / f.name))))
    assert doc["steps"]


def make_brats_like_folder(root, n=5, seed=1):
    """Tumour (2) around an enhancing core (3); predictions add 1-8-voxel specks of 3 inside the
    tumour (BraTS' small "enhancing tumour" that is really necrosis) and one speck of 3 outside."""
    rng = np.random.default_rng(seed)
    shape = (16, 32, 32)
    gt, pred = root / "gt", root / "pred"
    gt.mkdir(parents=True)
    pred.mkdir()
    for i in range(n):
        ref = np.zeros(shape, np.uint8)
        ref[2:14, 4:28, 4:28] = 2
        ref[5:10, 8:16, 8:16] = 3  # two true cores (320, 180 voxels): keeping only the largest hurts
        ref[5:10, 18:24, 16:22] = 3  # 180 voxels
        p = ref.copy()
        for z, y, x in ((3, 20, 8), (11, 22, 6), (12, 6, 24)):
            dz, dy, dx = (int(v) for v in rng.integers(1, 3, size=3))
            p[z:z + dz, y:y + dy, x:x + dx] = 3  # inside the tumour: necrosis labelled enhancing
        write_seg(gt / f"b{i:02d}.nii.gz", ref)
        write_seg(pred / f"b{i:02d}.nii.gz", p)
    dataset_json(pred / "dataset.json", {"background": 0, "tumour": 2, "enhancing": 3})
    (pred / "plans.json").write_text(json.dumps(PLANS))
    return gt, pred


def test_min_size_rule_is_searched_stored_and_applied(tmp_path):
    """The BraTS rule found on its own: components of 3 below a threshold between the specks'
    size (<= 8) and the smaller true core's (180) become 2, which beats removing them (they are tumour)."""
    from click.testing import CliRunner

    from oxunet.cli import main

    gt, pred = make_brats_like_folder(tmp_path)
    doc = determine_postprocessing(pred, gt, num_processes=1, quiet=True)
    rule = [s for s in doc["steps"] if s["op"] == "remove_small_components"]
    assert len(rule) == 1 and rule[0]["labels_or_regions"] == 3 and rule[0]["replace_with"] == 2
    assert 8 < rule[0]["min_size"] <= 180
    stored = json.loads((pred / "postprocessing.json").read_text())
    assert stored["steps"] == doc["steps"] and "postprocessing_fns" not in stored  # nnU-Net cannot run this rule
    decision = [d for d in doc["decisions"] if d["step"]["op"] == "remove_small_components" and d["accepted"]][0]
    assert decision["Dice_after"] > decision["Dice_before"]
    # the specks were the only errors: postprocessed predictions equal the references
    assert doc["postprocessed"]["foreground_mean"]["Dice"] == pytest.approx(1.0)
    for f in sorted(gt.glob("*.nii.gz")):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(pred / "postprocessed" / f.name))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(f))))
    # `postprocess apply` with the stored JSON gives the same files
    out = tmp_path / "applied"
    r = CliRunner().invoke(main, ["postprocess", "apply", "-i", str(pred), "-o", str(out), "--pp-file",
                                  str(pred / "postprocessing.json"), "-np", "1", "-q"])
    assert r.exit_code == 0, r.output
    for f in sorted(gt.glob("*.nii.gz")):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / f.name))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(f))))
    # --no-min-size: nnU-Net's rules only
    r = CliRunner().invoke(main, ["postprocess", "determine", "-i", str(pred), "-ref", str(gt), "-np", "1", "-q",
                                  "--no-min-size"])
    assert r.exit_code == 0, r.output
    assert all(s["op"] == "keep_largest_component" for s in json.loads((pred / "postprocessing.json").read_text())["steps"])


def test_min_size_counts_match_applying_the_rule():
    """The search's Dice for every candidate equals the Dice of the rule actually applied."""
    import warnings

    from oxunet.postprocessing.min_size import case_counts, confusions_for, dice_per_class

    rng = np.random.default_rng(7)
    cases = []
    for _ in range(3):
        ref = np.zeros((10, 20, 20), np.uint8)
        ref[2:8, 2:12, 2:12] = 1
        ref[3:6, 4:8, 4:8] = 2
        ref[0, :3, :3] = 9  # ignore label
        pred = ref.copy()
        pred[rng.random(ref.shape) < 0.02] = 2
        cases.append((pred, ref))
    classes, replace, thresholds = [1, 2, (1, 2)], [0, 1], np.array([1, 2, 3, 5, 40, 100, 1000])
    for pred, ref in cases:
        counts = case_counts(pred, ref, [(1, 2)], 10, 9)
        got = dice_per_class(confusions_for(counts, 0, (1, 2), thresholds, replace), classes)
        for i, r in enumerate(replace):
            for j, t in enumerate(thresholds):
                out = apply_steps(pred, [{"op": "remove_small_components", "labels_or_regions": [(1, 2)],
                                          "min_size": int(t), "replace_with": r}])
                keep = ref != 9
                confusion = np.bincount(out[keep].astype(int) * 10 + ref[keep], minlength=100).reshape(10, 10)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    np.testing.assert_allclose(got[i, j], dice_per_class(confusion, classes))
