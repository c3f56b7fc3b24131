"""One error contract (issue 12, item 1): OxunetError and its stage subclasses keep their
builtins; every command prints an OxunetError as one line naming the file or case (exit 1), and
anything else as one line plus the path of a traceback log (exit 70)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

import oxunet.errors as errors
from oxunet.cli.guard import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, guard_commands
from synthetic import make_dataset

SHAPES = [(12, 16, 16)] * 3
SPACINGS = [(2.0, 1.0, 1.0)] * 3


@pytest.mark.parametrize("cls, builtin", [
    (errors.DatasetError, ValueError), (errors.PlanningError, ValueError), (errors.PreprocessingError, RuntimeError),
    (errors.TrainingError, RuntimeError), (errors.InferenceError, RuntimeError), (errors.EvaluationError, RuntimeError),
    (errors.DatasetFileNotFoundError, FileNotFoundError),
])
def test_stage_errors_keep_their_builtin(cls, builtin):
    assert issubclass(cls, errors.OxunetError) and issubclass(cls, builtin)


def test_existing_error_classes_joined_the_contract():
    from oxunet.evaluation.folder import EvaluationError
    from oxunet.inference.model_folder import InferenceError
    from oxunet.io import ImageReadError
    from oxunet.kernels import KernelMemoryError, KernelTypeError, KernelValueError
    from oxunet.networks.checkpoint import CheckpointError
    from oxunet.planning.plans import PlansError
    from oxunet.preprocessing.pipeline import PreprocessingError
    from oxunet.training.trainer import TrainingError

    for cls in (EvaluationError, InferenceError, ImageReadError, KernelValueError, KernelTypeError, KernelMemoryError,
                CheckpointError, PlansError, PreprocessingError, TrainingError):
        assert issubclass(cls, errors.OxunetError), cls
    assert issubclass(KernelMemoryError, MemoryError) and issubclass(KernelTypeError, TypeError)
    assert issubclass(ImageReadError, RuntimeError) and issubclass(PlansError, ValueError)


def _group(fn):
    group = click.Group(commands={"boom": click.Command("boom", callback=fn)})
    guard_commands(group)
    return group


def test_oxunet_error_is_one_line_exit_1():
    def fn():
        raise errors.DatasetError("case_007: label file case_007.nii.gz is missing")

    r = CliRunner().invoke(_group(fn), ["boom"])
    assert r.exit_code == EXIT_USER_ERROR == 1
    assert r.output.strip() == "Error: case_007: label file case_007.nii.gz is missing"


def test_unexpected_error_is_one_line_with_a_traceback_log(tmp_path, monkeypatch):
    monkeypatch.setenv("OXUNET_LOG_DIR", str(tmp_path))

    def fn():
        raise ZeroDivisionError("division by zero in a helper")

    r = CliRunner().invoke(_group(fn), ["boom"])
    assert r.exit_code == EXIT_INTERNAL_ERROR == 70
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "ZeroDivisionError: division by zero in a helper" in lines[0], r.output
    logs = list(tmp_path.glob("oxunet-boom-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    assert "Traceback" in logs[0].read_text() and "fn" in logs[0].read_text()


def _cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "oxunet.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def _assert_one_line(out, *needles):
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _plan(ds: Path, tmp_path: Path, *extra):
    return _cli("plan", "-d", ds.name, "-np", "1", "--raw-dir", str(ds.parent), "--preprocessed-dir",
                str(tmp_path / "pre"), "--quiet", *extra)


def test_unreadable_image_during_fingerprinting(tmp_path):
    ds = make_dataset(tmp_path / "raw" / "Dataset911_Bad", SHAPES, SPACINGS)
    (ds / "imagesTr" / "case_001_0000.nii.gz").write_bytes(b"this is not an image")
    _assert_one_line(_plan(ds, tmp_path, "--no-verify"), "case_001_0000.nii.gz")


def test_missing_label_in_plan_and_preprocess(tmp_path):
    ds = make_dataset(tmp_path / "raw" / "Dataset912_NoLabel", SHAPES, SPACINGS)
    (ds / "labelsTr" / "case_002.nii.gz").unlink()
    out = _cli("plan-and-preprocess", "-d", ds.name, "-c", "3d_fullres", "-np", "1", "-npfp", "1",
               "--raw-dir", str(ds.parent), "--preprocessed-dir", str(tmp_path / "pre"), "--quiet")
    _assert_one_line(out, "case_002")
    out = _cli("plan-and-preprocess", "-d", ds.name, "-c", "3d_fullres", "-np", "1", "-npfp", "1", "--no-verify",
               "--raw-dir", str(ds.parent), "--preprocessed-dir", str(tmp_path / "pre2"), "--quiet")
    _assert_one_line(out, "case_002")


def test_shape_mismatch_in_fingerprinting_names_the_case(tmp_path):
    ds = make_dataset(tmp_path / "raw" / "Dataset913_Shape", SHAPES, SPACINGS)
    img = sitk.GetImageFromArray(np.zeros((12, 16, 15), np.uint8))
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(ds / "labelsTr" / "case_000.nii.gz"))
    _assert_one_line(_plan(ds, tmp_path, "--no-verify"), "case_000")


def test_undeclared_labels_stop_planning_naming_the_case(tmp_path):
    ds = make_dataset(tmp_path / "raw" / "Dataset914_Labels", SHAPES, SPACINGS, labels=2)
    seg = np.zeros((12, 16, 16), np.uint8)
    seg[2:5, 2:5, 2:5] = 5
    img = sitk.GetImageFromArray(seg)
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(ds / "labelsTr" / "case_001.nii.gz"))
    _assert_one_line(_plan(ds, tmp_path), "case_001", "[5] not declared")


def test_no_foreground_mr_dataset_refused_without_nan_json(tmp_path):
    ds = make_dataset(tmp_path / "raw" / "Dataset915_Empty", SHAPES, SPACINGS, channel_names=("T2",))
    for i in range(len(SHAPES)):
        img = sitk.GetImageFromArray(np.zeros((12, 16, 16), np.uint8))
        img.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(img, str(ds / "labelsTr" / f"case_{i:03d}.nii.gz"))
    _assert_one_line(_plan(ds, tmp_path), "no foreground")
    _assert_one_line(_plan(ds, tmp_path, "--no-verify"), "none of the 3 label files has foreground")
    for f in (tmp_path / "pre").rglob("*.json"):
        assert "NaN" not in f.read_text(), f


def test_undeclared_labels_refused_by_preprocessing_naming_the_case(tmp_path):
    """With --no-verify the labels reach preprocessing, which refuses them (not the loss, later)."""
    ds = make_dataset(tmp_path / "raw" / "Dataset916_Labels", SHAPES, SPACINGS, labels=2)
    seg = np.zeros((12, 16, 16), np.uint8)
    seg[2:5, 2:5, 2:5] = 6
    img = sitk.GetImageFromArray(seg)
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(ds / "labelsTr" / "case_002.nii.gz"))
    out = _cli("plan-and-preprocess", "-d", ds.name, "-c", "3d_fullres", "-np", "1", "-npfp", "1", "--no-verify",
               "--raw-dir", str(ds.parent), "--preprocessed-dir", str(tmp_path / "pre"), "--quiet")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "case case_002: label value(s) [6] are not declared" in out.stderr


def test_absurd_spacing_in_plan_and_preprocess_names_the_case(tmp_path):
    """One case whose header says 1000 mm: verify warns, preprocessing refuses it by name (with
    -np 2 too: no worker dies)."""
    ds = make_dataset(tmp_path / "raw" / "Dataset917_Spacing", SHAPES, SPACINGS)
    for name in ("imagesTr/case_001_0000.nii.gz", "labelsTr/case_001.nii.gz"):
        img = sitk.ReadImage(str(ds / name))
        img.SetSpacing((1000.0, 1000.0, 2000.0))
        sitk.WriteImage(img, str(ds / name))
    out = _cli("plan-and-preprocess", "-d", ds.name, "-c", "3d_fullres", "-np", "2", "-npfp", "2",
               "--raw-dir", str(ds.parent), "--preprocessed-dir", str(tmp_path / "pre"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "case_001: warning: spacing" in out.stderr  # verify's outlier warning, with the numbers
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("Error:") and "case case_001" in error and "cannot allocate" in error, out.stderr
    assert "worker process died" not in out.stderr


def test_preprocessing_refuses_non_finite_input_and_output_naming_the_case(monkeypatch):
    """Catalogue: NaN/inf images used to become 100 % NaN preprocessed cases with exit 0."""
    import json

    from oxunet.preprocessing import pipeline
    from oxunet.preprocessing.configuration import PreprocessingPlan

    plans = json.loads((Path(__file__).parent / "inference_tiny_plans.json").read_text())
    plan = PreprocessingPlan.from_plans(plans, "3d_fullres")
    img = np.random.default_rng(0).normal(100, 20, (1, 12, 14, 10)).astype(np.float32)
    props = {"spacing": [1.0, 1.0, 1.0]}
    data, _, _ = pipeline.preprocess_case(img, None, props, plan, class_keys=[], case="case_003")
    assert np.isfinite(data).all()
    bad = img.copy()
    bad[0, 2, 3, :3] = [np.nan, np.inf, -np.inf]
    with pytest.raises(errors.PreprocessingError, match=r"case case_003: the images contain 3 NaN/inf voxel"):
        pipeline.preprocess_case(bad, None, props, plan, class_keys=[], case="case_003")
    # a normalisation that goes wrong (e.g. a zero spread) must not be written either
    monkeypatch.setattr(pipeline, "normalize", lambda d, *a, **k: np.full_like(d, np.nan))
    with pytest.raises(errors.PreprocessingError, match=r"case case_004: the preprocessed image has non-finite"):
        pipeline.preprocess_case(img, None, props, plan, class_keys=[], case="case_004")
