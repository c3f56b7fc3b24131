"""Verification catches what breaks training (issue 12, item 3): truncated files, NaN/inf,
spacing outliers, 2D cases in a 3D dataset, no foreground, undeclared labels, every check on
every case; plan-and-preprocess verifies by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from oxunet.dataset.verify import verify_dataset
from synthetic import make_dataset

SHAPES = [(12, 16, 16)] * 4
SPACINGS = [(2.0, 1.0, 1.0)] * 4


def _dataset(tmp_path: Path, n: int = 4) -> Path:
    return make_dataset(tmp_path / "Dataset901_Checks", SHAPES[:n], SPACINGS[:n], labels=2)


def _write(path: Path, arr: np.ndarray, spacing=(2.0, 1.0, 1.0)) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    sitk.WriteImage(img, str(path))


def _messages(report, case: str) -> list[str]:
    return [f"{p.severity}: {p.message}" for p in report.problems if p.case == case]


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path):
    ds = _dataset(tmp_path)
    f = ds / "imagesTr" / "case_001_0000.nii.gz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    report = verify_dataset(ds, num_processes=1)
    msgs = _messages(report, "case_001")
    assert any("case_001_0000.nii.gz" in m and "truncated" in m for m in msgs), msgs
    assert not report.ok


def test_truncated_uncompressed_nifti_is_an_error(tmp_path):
    ds = make_dataset(tmp_path / "Dataset902_Nii", SHAPES, SPACINGS, ending=".nii")
    f = ds / "labelsTr" / "case_002.nii"
    f.write_bytes(f.read_bytes()[:-500])
    msgs = _messages(verify_dataset(ds, num_processes=1), "case_002")
    assert any("case_002.nii" in m and "truncated" in m for m in msgs), msgs


def test_nan_and_inf_images_are_errors(tmp_path):
    # .mha keeps NaN (SimpleITK's NIfTI writer turns it into 0)
    ds = make_dataset(tmp_path / "Dataset903_Mha", SHAPES, SPACINGS, ending=".mha")
    img = np.ones(SHAPES[0], np.float32)
    img[0, 0, :3] = np.nan
    img[1, 1, :2] = np.inf
    _write(ds / "imagesTr" / "case_000_0000.mha", img)
    msgs = _messages(verify_dataset(ds, num_processes=1), "case_000")
    assert any("3 NaN and 2 inf" in m for m in msgs), msgs


def test_spacing_outlier_is_a_warning_with_the_numbers(tmp_path):
    ds = _dataset(tmp_path)
    for name in ("imagesTr/case_003_0000.nii.gz", "labelsTr/case_003.nii.gz"):
        img = sitk.ReadImage(str(ds / name))
        img.SetSpacing((1000.0, 1.0, 2.0))
        sitk.WriteImage(img, str(ds / name))
    report = verify_dataset(ds, num_processes=1)
    msgs = _messages(report, "case_003")
    assert any(m.startswith("warning:") and "1000.0" in m and "1000x on axis 2" in m for m in msgs), msgs
    assert report.ok  # a warning, not an error


def test_2d_case_in_3d_dataset_is_an_error(tmp_path):
    ds = _dataset(tmp_path)
    _write(ds / "imagesTr" / "case_002_0000.nii.gz", np.ones((1, 16, 16), np.float32))
    _write(ds / "labelsTr" / "case_002.nii.gz", np.ones((1, 16, 16), np.uint8))
    msgs = _messages(verify_dataset(ds, num_processes=1), "case_002")
    assert any("2D image" in m and "(1, 16, 16)" in m for m in msgs), msgs


def test_no_foreground_anywhere_is_an_error_some_cases_informational(tmp_path):
    ds = _dataset(tmp_path)
    _write(ds / "labelsTr" / "case_000.nii.gz", np.zeros(SHAPES[0], np.uint8))
    report = verify_dataset(ds, num_processes=1)
    info = _messages(report, "dataset")
    assert any(m.startswith("info:") and "1 of 4 case(s) have no foreground: case_000" in m for m in info), info
    assert report.ok
    for i in range(1, 4):
        _write(ds / "labelsTr" / f"case_{i:03d}.nii.gz", np.zeros(SHAPES[0], np.uint8))
    report = verify_dataset(ds, num_processes=1)
    assert any(m.startswith("error:") and "no foreground in any of the 4" in m for m in _messages(report, "dataset"))
    assert not report.ok


def test_undeclared_labels_are_errors(tmp_path):
    ds = _dataset(tmp_path)
    seg = np.zeros(SHAPES[0], np.uint8)
    seg[2:4, 2:4, 2:4] = 7
    _write(ds / "labelsTr" / "case_001.nii.gz", seg)
    msgs = _messages(verify_dataset(ds, num_processes=1), "case_001")
    assert any("case_001.nii.gz has values [7] not declared" in m for m in msgs), msgs


def test_every_check_runs_on_every_case(tmp_path):
    """A case with a wrong channel file AND a missing label reports both."""
    ds = make_dataset(tmp_path / "Dataset904_Mha", SHAPES, SPACINGS, ending=".mha")
    (ds / "imagesTr" / "case_001_0000.mha").rename(ds / "imagesTr" / "case_001_0001.mha")
    (ds / "labelsTr" / "case_001.mha").unlink()
    img = np.ones(SHAPES[0], np.float32)
    img[0, 0, 0] = np.nan
    _write(ds / "imagesTr" / "case_002_0000.mha", img)
    seg = np.zeros(SHAPES[0], np.uint8)
    seg[0, 0, 0] = 9
    _write(ds / "labelsTr" / "case_002.mha", seg)
    report = verify_dataset(ds, num_processes=1)
    one = _messages(report, "case_001")
    assert any("channel files" in m for m in one) and any("label file" in m and "missing" in m for m in one), one
    two = _messages(report, "case_002")
    assert any("NaN" in m for m in two) and any("[9] not declared" in m for m in two), two


def test_plan_and_preprocess_verifies_by_default(tmp_path):
    ds = make_dataset(tmp_path / "Dataset905_Mha", SHAPES, SPACINGS, ending=".mha")
    img = np.ones(SHAPES[0], np.float32)
    img[0, 0, 0] = np.inf
    _write(ds / "imagesTr" / "case_002_0000.mha", img)
    env_args = ["--raw-dir", str(tmp_path), "--preprocessed-dir", str(tmp_path / "pre")]
    cmd = [sys.executable, "-m", "oxunet.cli", "plan-and-preprocess", "-d", ds.name, "-c", "3d_fullres", "-np", "1",
           "-npfp", "1", *env_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "case_002" in err[0] and "inf" in err[0], out.stderr
    assert "Traceback" not in out.stderr
    skipped = subprocess.run(cmd + ["--no-verify", "--no-pp"], capture_output=True, text=True, timeout=300)
    assert "verification found" not in skipped.stderr
