"""nnU-Net's remaining commands through our aliases: plot_overlay_pngs (raw and preprocessed),
accumulate_crossval_results, convert_old_nnUNet_dataset; nnUNetTrainer_1epoch; the predict flags
that do nothing warn, naming each."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from oxunet.cli.aliases import get_alias


def _alias(name: str, args: list[str]):
    return CliRunner().invoke(get_alias(name), args, prog_name=name)


def test_slice_to_plot_is_nnunets_average_share_per_class():
    from oxunet.overlay_pngs import slice_to_plot

    seg = np.zeros((6, 8, 8), np.uint8)
    seg[1, :4, :4] = 1  # label 1: 16 voxels all in slice 1
    seg[3, :2, :2] = 1  # ... and 4 in slice 3
    seg[3, 5:, 5:] = 2  # label 2 only in slice 3: slice 3 wins on the average share (0.2 + 1) / 2
    assert slice_to_plot(seg) == 3
    assert slice_to_plot(np.zeros((5, 4, 4), np.uint8)) == 2  # no foreground: the middle


@pytest.fixture(scope="module")
def demo_roots(tmp_path_factory):
    from oxunet.dataset import resolve_paths
    from oxunet.demo.synthetic import make_demo_dataset
    from oxunet.planning import plan_experiment
    from oxunet.preprocessing.run import preprocess_dataset

    root = tmp_path_factory.mktemp("overlays")
    make_demo_dataset(root / "raw", num_cases=3, shape=(12, 24, 24))
    paths = resolve_paths(raw_dir=root / "raw", preprocessed_dir=root / "pre", results_dir=root / "res", environ={})
    plan_experiment("990", paths, quiet=True, num_processes=1)
    preprocess_dataset("990", paths, configurations=["3d_fullres"], num_processes=[1], quiet=True)
    return root


def test_plot_overlay_pngs_alias_raw_and_preprocessed(demo_roots, tmp_path, monkeypatch):
    import matplotlib.image as mpimg

    from oxunet.overlay import label_colour

    monkeypatch.setenv("nnUNet_raw", str(demo_roots / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(demo_roots / "pre"))
    for extra, out in ((["--use_raw"], tmp_path / "raw"), (["-c", "3d_fullres", "-p", "nnUNetPlans"], tmp_path / "pre")):
        r = _alias("oxunet_plot_overlay_pngs", ["-d", "990", "-o", str(out), "-np", "1", "-channel_idx", "0",
                                                "-overlay_intensity", "0.5", *extra])
        assert r.exit_code == 0, r.output
        assert "warning" not in r.output  # every flag does something
        assert sorted(p.name for p in out.iterdir()) == [f"demo_{i:03d}.png" for i in range(3)]
        pixels = (mpimg.imread(out / "demo_000.png")[..., :3] * 255).round().astype(int)
        assert pixels.shape[0] >= 256
        for label in (1, 2):  # both structures are in the chosen slice, edges drawn in their colours
            assert (np.abs(pixels - np.array(label_colour(label))).sum(-1) == 0).sum() > 20, (extra, label)
    r = _alias("oxunet_plot_overlay_pngs", ["-d", "990", "-o", str(tmp_path / "x"), "-c", "2d_nope"])
    assert r.exit_code == 1 and "2d_nope" in r.output and "Traceback" not in r.output
    r = _alias("oxunet_plot_overlay_pngs", ["-d", "990", "-o", str(tmp_path / "y"), "--use_raw", "-channel_idx", "3"])
    assert r.exit_code == 1 and "channel 3 out of range" in r.output


def test_accumulate_crossval_results_alias(tmp_path, monkeypatch):
    from test_find_best import CASES, NAME, make_tree

    paths = make_tree(tmp_path)
    for var, folder in (("nnUNet_raw", paths.raw), ("nnUNet_preprocessed", paths.preprocessed),
                        ("nnUNet_results", paths.results)):
        monkeypatch.setenv(var, str(folder))
    r = _alias("oxunet_accumulate_crossval_results", ["999", "-c", "3d_fullres", "-f", "0", "1", "-p", "nnUNetPlans",
                                                      "-tr", "nnUNetTrainer"])
    assert r.exit_code == 0, r.output
    merged = paths.results / NAME / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "crossval_results_folds_0_1"
    assert r.stdout.strip() == str(merged)
    summary = json.loads((merged / "summary.json").read_text())
    assert sorted(c["prediction_file"].rsplit("/", 1)[1] for c in summary["metric_per_case"]) == \
        sorted(f"{c}.nii.gz" for c in CASES)  # both folds' cases, once each
    assert 0 < summary["foreground_mean"]["Dice"] < 1
    r = _alias("oxunet_accumulate_crossval_results", ["999", "-c", "3d_fullres", "-f", "0", "1", "-o", str(merged)])
    assert r.exit_code == 1 and "not empty" in r.output  # -o never overwrites, as nnU-Net


def test_convert_old_nnunet_dataset_alias(tmp_path):
    old = tmp_path / "Task005_Prostate"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (old / sub).mkdir(parents=True)
    (old / "imagesTr" / "prostate_00_0000.nii.gz").write_bytes(b"image")
    (old / "labelsTr" / "prostate_00.nii.gz").write_bytes(b"label")
    (old / "imagesTs" / "prostate_01_0000.nii.gz").write_bytes(b"test")
    (old / "dataset.json").write_text(json.dumps({
        "name": "PROSTATE", "description": "Prostate", "tensorImageSize": "4D", "modality": {"0": "T2", "1": "ADC"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"}, "numTraining": 1, "numTest": 1,
        "training": [{"image": "./imagesTr/prostate_00.nii.gz", "label": "./labelsTr/prostate_00.nii.gz"}],
        "test": ["./imagesTs/prostate_01.nii.gz"]}))
    raw = tmp_path / "raw"
    r = _alias("oxunet_convert_old_nnUNet_dataset", [str(old), "Dataset005_Prostate", "--raw-dir", str(raw)])
    assert r.exit_code == 0, r.output
    new = raw / "Dataset005_Prostate"
    assert json.loads((new / "dataset.json").read_text()) == {
        "name": "PROSTATE", "description": "Prostate", "numTraining": 1, "channel_names": {"0": "T2", "1": "ADC"},
        "labels": {"background": 0, "PZ": 1, "TZ": 2}, "file_ending": ".nii.gz"}
    assert (new / "labelsTr" / "prostate_00.nii.gz").read_bytes() == b"label"
    assert (new / "imagesTs" / "prostate_01_0000.nii.gz").is_file()
    again = _alias("oxunet_convert_old_nnUNet_dataset", [str(old), "Dataset005_Prostate", "--raw-dir", str(raw)])
    assert again.exit_code == 1 and "already exists" in again.output
    bad = _alias("oxunet_convert_old_nnUNet_dataset", [str(old), "Task005", "--raw-dir", str(raw)])
    assert bad.exit_code == 1 and "DatasetXXX_Name" in bad.output


def test_nnunet_one_epoch_trainer_name_resolves():
    from oxunet.training.config import load_trainer_config

    assert load_trainer_config("nnUNetTrainer_1epoch").epochs == 1
    assert load_trainer_config("nnUNetTrainer_1epochs").epochs == 1  # our earlier spelling still works


def test_predict_flags_without_effect_warn_once_naming_each(tmp_path, monkeypatch):
    """--verbose and --disable_progress_bar do nothing here: one warning names both;
    --not_on_device is nnU-Net's host-memory aggregation: --export-on cpu, no warning."""
    import oxunet.inference
    from oxunet.cli import main

    calls = []
    monkeypatch.setattr(oxunet.inference, "predict_folder", lambda *a, **kw: calls.append(kw) or
                        {"cases": [], "seconds": 0.0, "peak_rss_bytes": 0})
    (tmp_path / "in").mkdir()
    r = CliRunner().invoke(main, ["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m",
                                  str(tmp_path / "model"), "--verbose", "--not_on_device", "--disable_progress_bar"])
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: predict: ignoring nnU-Net option(s) oxunet does not implement: --verbose, "
                        "--disable_progress_bar"]
    assert calls[0]["export_on"] == "cpu"
    r = CliRunner().invoke(main, ["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m",
                                  str(tmp_path / "model"), "--not_on_device", "--export-on", "device"])
    assert r.exit_code == 2 and "contradicts" in r.output
