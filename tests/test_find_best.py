"""find-best on a synthetic results tree: the chosen model/ensemble and the written commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalpost_helpers import PLANS, dataset_json, write_seg
from oxunet.dataset import resolve_paths
from oxunet.ensembling import find_best_configuration
from oxunet.ensembling.find_best import FindBestError

NAME = "Dataset999_Test"
SHAPE = (10, 16, 16)
CASES = [f"c{i:02d}" for i in range(4)]
ERROR_BOXES = {  # where each model predicts the wrong label (disjoint, so any pair's ensemble is right)
    "3d_fullres": (slice(0, 3), slice(0, 6), slice(0, 6)),
    "3d_lowres": (slice(6, 10), slice(8, 16), slice(8, 16)),
    "3d_cascade_fullres": (slice(4, 5), slice(0, 2), slice(12, 14)),
}


def _gt():
    seg = np.zeros(SHAPE, np.uint8)
    seg[1:6, 2:10, 2:10] = 1
    seg[5:9, 9:15, 7:14] = 2
    return seg


def make_tree(root, speck_in=()):
    from oxunet.io import SimpleITKIO

    raw, pre, res = root / "raw" / NAME, root / "pre" / NAME, root / "res" / NAME
    (raw / "labelsTr").mkdir(parents=True)
    pre.mkdir(parents=True)
    labels = {"background": 0, "a": 1, "b": 2}
    dataset_json(raw / "dataset.json", labels)
    arch = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {}, "_kw_requires_import": []}  # nnunetv2 reads it when printing commands
    plans = {**PLANS, "dataset_name": NAME, "configurations": {
        "3d_fullres": {"patch_size": [8, 8, 8], "architecture": arch},
        "3d_lowres": {"patch_size": [8, 8, 8], "architecture": arch, "next_stage": ["3d_cascade_fullres"]},
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
    }}
    (pre / "nnUNetPlans.json").write_text(json.dumps(plans))
    gt = _gt()
    for c in CASES:
        write_seg(raw / "labelsTr" / f"{c}.nii.gz", gt)
    _, props = SimpleITKIO().read_images([raw / "labelsTr" / f"{CASES[0]}.nii.gz"])
    for config, box in ERROR_BOXES.items():
        model = res / f"nnUNetTrainer__nnUNetPlans__{config}"
        model.mkdir(parents=True)
        (model / "plans.json").write_text(json.dumps(plans))
        dataset_json(model / "dataset.json", labels)
        for i, c in enumerate(CASES):
            val = model / f"fold_{i % 2}" / "validation"
            val.mkdir(parents=True, exist_ok=True)
            p = np.full((3, *SHAPE), 0.05, np.float32)
            np.put_along_axis(p, gt[None].astype(np.int64), 0.9, axis=0)
            wrong = (gt[box] + 1) % 3
            region = p[(slice(None), *box)]
            region[:] = 0.0
            np.put_along_axis(region, gt[box][None].astype(np.int64), 0.45, axis=0)
            np.put_along_axis(region, wrong[None].astype(np.int64), 0.55, axis=0)
            if config in speck_in:  # a far-away false positive: keep-largest-component removes it
                p[:, 9, 0, 15] = (0.1, 0.8, 0.1)
            np.savez_compressed(val / f"{c}.npz", probabilities=p)
            (val / f"{c}.json").write_text(json.dumps({"format": "oxunet-properties", "version": 1, **props}))
            write_seg(val / f"{c}.nii.gz", p.argmax(0))
    return resolve_paths(root / "raw", root / "pre", root / "res")


def test_single_cascade_wins_with_postprocessing_and_cascade_command(tmp_path):
    paths = make_tree(tmp_path, speck_in=("3d_cascade_fullres",))
    info = find_best_configuration("999", folds=(0, 1), allow_ensembling=False, num_processes=1, paths=paths, quiet=True)
    best = info["best_model_or_ensemble"]
    assert best["identifier"] == "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres"
    assert set(info["all_results"]) == {f"nnUNetTrainer__nnUNetPlans__{c}" for c in ERROR_BOXES}  # 2d: not in plans
    assert best["result_on_crossval_post_pp"] > best["result_on_crossval_pre_pp"]
    model = tmp_path / "res" / NAME / "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres" / "crossval_results_folds_0_1"
    assert json.loads((model / "postprocessing.json").read_text())["steps"][0]["op"] == "keep_largest_component"
    assert info["commands"] == [
        "oxunet predict -i INPUT_FOLDER -o OUTPUT_FOLDER_PREV_STAGE -d 999 -c 3d_lowres -tr nnUNetTrainer -p nnUNetPlans -f 0 1",
        "oxunet predict -i INPUT_FOLDER -o OUTPUT_FOLDER -d 999 -c 3d_cascade_fullres -tr nnUNetTrainer -p nnUNetPlans "
        "-f 0 1 --prev-stage OUTPUT_FOLDER_PREV_STAGE",
        f"oxunet postprocess apply -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP --pp-file {model / 'postprocessing.json'} "
        f"--plans-json {model / 'plans.json'} -np 1",
    ]
    text = (tmp_path / "res" / NAME / "inference_instructions.txt").read_text()
    assert all(cmd in text for cmd in info["commands"])
    on_disk = json.loads((tmp_path / "res" / NAME / "inference_information.json").read_text())
    assert on_disk["commands"] == info["commands"]


def test_ensemble_wins_and_commands_save_probabilities(tmp_path):
    paths = make_tree(tmp_path)
    info = find_best_configuration("999", configurations=("3d_lowres", "3d_cascade_fullres", "3d_fullres"), folds=(0, 1),
                                   num_processes=1, paths=paths, quiet=True)
    best = info["best_model_or_ensemble"]
    ident = "ensemble___nnUNetTrainer__nnUNetPlans__3d_lowres___nnUNetTrainer__nnUNetPlans__3d_cascade_fullres___0_1"
    assert best["identifier"] == ident and best["result_on_crossval_pre_pp"] == 1.0  # the first perfect pair
    assert all(v < 1.0 for k, v in info["all_results"].items() if not k.startswith("ensemble"))
    cmds = info["commands"]
    assert cmds[0] == "oxunet predict -i INPUT_FOLDER -o OUTPUT_FOLDER_MODEL_1 -d 999 -c 3d_lowres -tr nnUNetTrainer -p nnUNetPlans -f 0 1 --save-probabilities"
    assert cmds[1].endswith("-o OUTPUT_FOLDER_PREV_STAGE_MODEL_2 -d 999 -c 3d_lowres -tr nnUNetTrainer -p nnUNetPlans -f 0 1")
    assert cmds[2].endswith("-c 3d_cascade_fullres -tr nnUNetTrainer -p nnUNetPlans -f 0 1 --prev-stage OUTPUT_FOLDER_PREV_STAGE_MODEL_2 --save-probabilities")
    assert cmds[3] == "oxunet ensemble -i OUTPUT_FOLDER_MODEL_1 OUTPUT_FOLDER_MODEL_2 -o OUTPUT_FOLDER -np 1"
    assert cmds[4].startswith("oxunet postprocess apply -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP --pp-file ")
    assert (tmp_path / "res" / NAME / "ensembles" / ident / "summary.json").is_file()


def test_missing_model_folder_and_missing_npz_are_errors(tmp_path):
    import shutil

    paths = make_tree(tmp_path)
    shutil.rmtree(tmp_path / "res" / NAME / "nnUNetTrainer__nnUNetPlans__3d_lowres")
    with pytest.raises(FindBestError, match="3d_lowres: trained model folder missing"):
        find_best_configuration("999", folds=(0, 1), num_processes=1, paths=paths, quiet=True)
    for f in (tmp_path / "res" / NAME / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_1" / "validation").glob("*.npz"):
        f.unlink()
    with pytest.raises(FindBestError, match="fold_1/validation: no .npz files; validate with --npz"):
        find_best_configuration("999", configurations=("3d_fullres", "3d_cascade_fullres"), folds=(0, 1),
                                num_processes=1, paths=paths, quiet=True)


def test_cli_find_best(tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    make_tree(tmp_path)
    r = CliRunner().invoke(main, ["find-best", "-d", "999", "-c", "3d_fullres", "3d_lowres", "-f", "0", "1", "-np", "1",
                                  "--raw-dir", str(tmp_path / "raw"), "--preprocessed-dir", str(tmp_path / "pre"),
                                  "--results-dir", str(tmp_path / "res"), "-q"])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "res" / NAME / "inference_information.json").read_text())
    assert info["best_model_or_ensemble"]["identifier"].startswith("ensemble___")


def test_matches_nnunetv2_find_best_configuration(tmp_path, monkeypatch):
    """Same tree (nnU-Net's .pkl properties beside our .json), same models: nnunetv2 and oxunet
    score every model and ensemble alike, break the tie between perfect ensembles alike, and pick
    the same postprocessing."""
    import pickle
    import shutil

    import multiprocessing
    import sys

    from peers import nnunet_fork_pools, require

    require("nnunetv2")
    import nnunetv2.evaluation.find_best_configuration as fb

    configs = ("3d_fullres", "3d_lowres", "3d_cascade_fullres")
    ours_root, theirs_root = tmp_path / "ours", tmp_path / "theirs"
    paths = make_tree(ours_root, speck_in=configs)
    res = ours_root / "res" / NAME
    for js in res.glob("*/fold_*/validation/*.json"):
        props = json.loads(js.read_text())
        props = {k: v for k, v in props.items() if k not in ("format", "version")}
        js.with_suffix(".pkl").write_bytes(pickle.dumps(props))
    shutil.copytree(ours_root / "raw" / NAME / "labelsTr", ours_root / "pre" / NAME / "gt_segmentations")
    shutil.copytree(ours_root, theirs_root)

    for var, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "res")):
        monkeypatch.setenv(var, str(theirs_root / sub))  # nnunetv2 reads its folders from the environment on use
    models = [{"plans": "nnUNetPlans", "configuration": c, "trainer": "nnUNetTrainer"} for c in configs]
    pooled = [m for n, m in sys.modules.items()
              if n.startswith("nnunetv2") and getattr(m, "multiprocessing", None) is multiprocessing]
    with nnunet_fork_pools(*pooled):
        theirs = fb.find_best_configuration(999, models, allow_ensembling=True, num_processes=1, folds=(0, 1))
    ours = find_best_configuration("999", configurations=configs, folds=(0, 1), num_processes=1, paths=paths,
                                   quiet=True)

    assert list(ours["all_results"]) == list(theirs["all_results"])
    for key, value in theirs["all_results"].items():
        assert ours["all_results"][key] == pytest.approx(value, abs=1e-12), key
    b_ours, b_theirs = ours["best_model_or_ensemble"], theirs["best_model_or_ensemble"]
    assert b_ours["identifier"].startswith("ensemble___")  # every pair is perfect before postprocessing
    for k in ("result_on_crossval_pre_pp", "result_on_crossval_post_pp"):
        assert b_ours[k] == pytest.approx(b_theirs[k], abs=1e-12), k
    assert [{k: m[k] for k in ("configuration", "trainer", "plans_identifier")}
            for m in b_ours["selected_model_or_models"]] == b_theirs["selected_model_or_models"]
    ens = res / "ensembles" / b_ours["identifier"]
    pp_theirs = json.loads((theirs_root / "res" / NAME / "ensembles" / b_ours["identifier"]
                            / "postprocessing.json").read_text())
    pp_ours = json.loads((ens / "postprocessing.json").read_text())
    assert pp_ours["postprocessing_fns"] == pp_theirs["postprocessing_fns"]
    assert pp_ours["postprocessing_kwargs"] == pp_theirs["postprocessing_kwargs"]
