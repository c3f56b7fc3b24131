"""Dataset verification: each problem is reported with the case and what is wrong, all at once."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oxunet.dataset.verify import verify_dataset

HIPPO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Dataset004_Hippocampus"


def _img(path, arr, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)):
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(spacing)
    im.SetOrigin(origin)
    sitk.WriteImage(im, str(path))


def make_dataset(root: Path, n=3, channels=1, labels=None, ending=".nii.gz"):
    """A tiny valid dataset: n cases, `channels` channels, labels 0..2."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        for c in range(channels):
            _img(root / "imagesTr" / f"case{i}_{c:04d}{ending}", rng.random((6, 7, 8)).astype(np.float32))
        _img(root / "labelsTr" / f"case{i}{ending}", rng.integers(0, 3, (6, 7, 8)).astype(np.uint8))
    ds = {
        "channel_names": {str(c): f"MR{c}" for c in range(channels)},
        "labels": labels or {"background": 0, "a": 1, "b": 2},
        "numTraining": n,
        "file_ending": ending,
    }
    (root / "dataset.json").write_text(json.dumps(ds))
    return root


def _messages(report):
    return {(p.case, p.severity, p.message) for p in report.problems}


def test_clean_dataset_has_no_problems(tmp_path):
    report = verify_dataset(make_dataset(tmp_path / "Dataset001_T"), num_processes=1)
    assert report.ok and report.problems == [] and report.num_cases == 3


def test_all_problems_reported_at_once(tmp_path):
    root = make_dataset(tmp_path / "Dataset001_T", n=6, ending=".mha")  # .mha keeps NaN (the NIfTI writer turns it into 0)
    rng = np.random.default_rng(1)
    # case0: label shape mismatch; case1: spacing mismatch; case2: NaN in image;
    # case3: unexpected label value; case4: float label with non-integers; case5: origin differs (warning)
    _img(root / "labelsTr" / "case0.mha", np.zeros((6, 7, 9), np.uint8))
    _img(root / "labelsTr" / "case1.mha", np.zeros((6, 7, 8), np.uint8), spacing=(1.0, 1.0, 3.0))
    bad = rng.random((6, 7, 8)).astype(np.float32)
    bad[0, 0, :3] = np.nan
    _img(root / "imagesTr" / "case2_0000.mha", bad)
    lab = np.zeros((6, 7, 8), np.uint8)
    lab[0, 0, 0] = 7
    _img(root / "labelsTr" / "case3.mha", lab)
    flab = np.zeros((6, 7, 8), np.float32)
    flab[1, 1, 1] = 1.5
    _img(root / "labelsTr" / "case4.mha", flab)
    _img(root / "labelsTr" / "case5.mha", np.zeros((6, 7, 8), np.uint8), origin=(5.0, 0.0, 0.0))
    report = verify_dataset(root, num_processes=2)
    msgs = "\n".join(f"{p.case} {p.severity} {p.message}" for p in report.problems)
    assert "case0 error shape mismatch: images (6, 7, 8), label case0.mha (6, 7, 9)" in msgs
    assert "case1 error spacing mismatch" in msgs
    assert "case2 error images contain 3 NaN and 0 inf voxel(s)" in msgs
    assert "case3 error label case3.mha has values [7] not declared in dataset.json [0, 1, 2]" in msgs
    assert "case4 error label case4.mha has non-integer values [1.5]" in msgs
    assert "case5 warning origin differs" in msgs
    assert len(report.errors) == 5 and not report.ok


def test_file_level_problems(tmp_path):
    root = make_dataset(tmp_path / "Dataset001_T", n=3, channels=2)
    (root / "labelsTr" / "case1.nii.gz").unlink()
    (root / "imagesTr" / "case2_0001.nii.gz").unlink()
    shutil.copy(root / "labelsTr" / "case0.nii.gz", root / "labelsTr" / "orphan.nii.gz")
    report = verify_dataset(root, num_processes=1)
    msgs = _messages(report)
    assert any(c == "case1" and "label file" in m and "missing" in m for c, _, m in msgs)
    assert ("case2", "error", "channel files ['0000'] found, expected ['0000', '0001'] (one per channel_names entry)") in msgs
    assert ("dataset", "error", "labelsTr/orphan.nii.gz has no images in imagesTr/") in msgs


def test_dataset_level_problems(tmp_path):
    root = make_dataset(tmp_path / "Dataset001_T", n=2, labels={"background": 0, "a": 1, "b": 3})
    ds = json.loads((root / "dataset.json").read_text())
    ds["numTraining"] = 5
    (root / "dataset.json").write_text(json.dumps(ds))
    msgs = _messages(verify_dataset(root, num_processes=1))
    assert ("dataset", "error", "numTraining is 5 but 2 case(s) were found") in msgs
    assert ("dataset", "error", "labels must be consecutive integers from 0, dataset.json declares [0, 1, 3]") in msgs


def test_channel_count_mismatch(tmp_path):
    root = make_dataset(tmp_path / "Dataset001_T", n=1)
    ds = json.loads((root / "dataset.json").read_text())
    ds["dataset"] = {"case0": {"images": ["imagesTr/case0_0000.nii.gz"], "label": "labelsTr/case0.nii.gz"}}
    ds["channel_names"] = {"0": "T1", "1": "T2"}
    (root / "dataset.json").write_text(json.dumps(ds))
    msgs = _messages(verify_dataset(root, num_processes=1))
    assert ("case0", "error", "1 channel(s) in the images, dataset.json declares 2") in msgs


def test_missing_dataset_json(tmp_path):
    report = verify_dataset(tmp_path, num_processes=1)
    assert not report.ok and "dataset.json not found" in report.errors[0].message


@pytest.mark.skipif(not HIPPO.is_dir(), reason="../shared/data/Dataset004_Hippocampus is not present (CI data only)")
def test_hippocampus_verifies_clean():
    report = verify_dataset(HIPPO, num_processes=2)
    assert report.num_cases == 260
    assert report.ok, [p for p in report.errors][:5]


def test_cli_verify_exit_codes(tmp_path):
    from click.testing import CliRunner

    from oxunet.cli import main

    root = make_dataset(tmp_path / "Dataset007_Tiny", n=2)
    ok = CliRunner().invoke(main, ["verify", "-d", "7", "--raw-dir", str(tmp_path), "-np", "1"])
    assert ok.exit_code == 0, ok.output
    (root / "labelsTr" / "case1.nii.gz").unlink()
    bad = CliRunner().invoke(main, ["verify", "-d", "Dataset007_Tiny", "--raw-dir", str(tmp_path), "-np", "1"])
    assert bad.exit_code == 1
    missing = CliRunner().invoke(main, ["verify", "-d", "8", "--raw-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "no folder named Dataset008_" in missing.output
