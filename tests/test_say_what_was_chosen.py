"""Say what was chosen (issue 12, item 5): predict without -f names its folds (the splits'
folds holding a checkpoint) and why others were skipped; a 2D image given to a 3D model is an
error naming the file; evaluate warns about non-integer and undeclared labels with counts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference_models import tiny_project, write_model_folder
from oxunet.inference.model_folder import default_folds

HERE = Path(__file__).resolve().parent


def _oxunet(*args):
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "python") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "oxunet.cli", *args], capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("chosen")
    proj = tiny_project(root)
    model_dir = write_model_folder(root / "model", proj["plans"], proj["dataset_json"], "3d_fullres",
                                   folds=(0, 1, 7), nnunet=False)
    (model_dir / "fold_2").mkdir()  # a fold whose training never finished
    splits = [{"train": [], "val": []} for _ in range(5)]
    (model_dir / "splits_final.json").write_text(json.dumps(splits))
    inputs = root / "in"
    inputs.mkdir()
    shutil.copy(proj["raw"] / "imagesTr" / "case_000_0000.nii.gz", inputs / "case_000_0000.nii.gz")
    return {"model": model_dir, "inputs": inputs, "root": root, "raw": proj["raw"]}


def test_default_folds_follow_the_splits(model):
    folds, note = default_folds(model["model"])
    assert folds == [0, 1]
    assert note.startswith("folds used: 0, 1 (the folds of ") and "splits_final.json" in note
    assert "fold_2 (no checkpoint_final.pth)" in note
    assert "fold_7 (not one of the 5 folds" in note
    assert "fold_3 (not trained)" in note and "fold_4 (not trained)" in note


def test_predict_without_folds_prints_them(model, tmp_path):
    out = _oxunet("predict", "-i", str(model["inputs"]), "-o", str(tmp_path / "out"), "-m", str(model["model"]),
                  "--device", "cpu", "--precision", "fp32", "-npp", "0", "-nps", "0", "--disable-tta")
    assert out.returncode == 0, out.stderr
    assert "folds used: 0, 1" in out.stderr and "fold_7 (not one of the 5 folds" in out.stderr
    assert (tmp_path / "out" / "case_000.nii.gz").is_file()


def test_2d_image_to_a_3d_model_is_an_error(model, tmp_path):
    inputs = tmp_path / "in2d"
    inputs.mkdir()
    img = sitk.GetImageFromArray(np.random.default_rng(0).random((24, 22)).astype(np.float32))
    sitk.WriteImage(img, str(inputs / "flat_0000.nii.gz"))
    out = _oxunet("predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(model["model"]), "-f", "0",
                  "--device", "cpu", "-npp", "0", "-nps", "0", "--quiet")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "flat_0000.nii.gz is a 2D image" in lines[0] and "3d_fullres" in lines[0]


def test_evaluate_warns_about_float_and_undeclared_labels(model, tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    shutil.copy(model["raw"] / "labelsTr" / "case_000.nii.gz", ref / "case_000.nii.gz")
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(ref / "case_000.nii.gz"))).astype(np.float32)
    seg[0, 0, :4] = 9  # undeclared
    seg[1, 1, :3] = 0.5  # not an integer
    img = sitk.GetImageFromArray(seg)
    img.CopyInformation(sitk.ReadImage(str(ref / "case_000.nii.gz")))
    sitk.WriteImage(img, str(pred / "case_000.nii.gz"))
    out = _oxunet("evaluate", str(ref), str(pred), "-djfile", str(model["model"] / "dataset.json"), "--quiet")
    assert out.returncode == 0, out.stderr
    warning = [ln for ln in out.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warning) == 1, out.stderr
    assert "case_000.nii.gz: prediction has 3 non-integer voxel(s)" in warning[0]
    assert "9 (4 voxels)" in warning[0]


def test_predict_on_an_absurd_spacing_header_is_one_line(model, tmp_path):
    """A 16³ image whose header says 1000 mm used to abort the interpreter in resampling."""
    inputs = tmp_path / "huge"
    inputs.mkdir()
    img = sitk.GetImageFromArray(np.ones((16, 16, 16), np.float32))
    img.SetSpacing((1000.0, 1000.0, 1000.0))
    sitk.WriteImage(img, str(inputs / "wrong_0000.nii.gz"))
    out = _oxunet("predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(model["model"]), "-f", "0",
                  "--device", "cpu", "-npp", "0", "-nps", "0", "--quiet")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "case wrong" in lines[0] and "1000.0" in lines[0] and "cannot allocate" in lines[0]
