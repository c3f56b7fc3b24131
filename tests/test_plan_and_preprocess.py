"""plan-and-preprocess through the CLI: fingerprint, plans and preprocessed cases in one call."""

import json

from click.testing import CliRunner

from oxunet.cli import main
from oxunet.preprocessing.storage import list_cases, open_case
from synthetic import make_dataset


def test_plan_and_preprocess_cli(tmp_path):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    make_dataset(raw / "Dataset210_Tiny", shapes=[(12, 30, 32), (14, 28, 30), (12, 32, 30)],
                 spacings=[(3.0, 0.8, 0.8)] * 3)
    args = ["plan-and-preprocess", "-d", "210", "-c", "3d_fullres", "-np", "1", "-npfp", "1",
            "--raw-dir", str(raw), "--preprocessed-dir", str(pre), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    folder = pre / "Dataset210_Tiny"
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    assert (folder / "dataset_fingerprint.json").is_file() and (folder / "dataset.json").is_file()
    data_dir = folder / plans["configurations"]["3d_fullres"]["data_identifier"]
    assert list_cases(data_dir) == ["case_000", "case_001", "case_002"]
    case = open_case(data_dir, "case_000")
    assert case.data.shape[0] == 1 and case.seg.shape[1:] == case.data.shape[1:]
    assert set(case.class_locations) == {1, 2}
    # a rerun resumes: nothing redone
    again = CliRunner().invoke(main, args[:-1])
    assert again.exit_code == 0 and "0 case(s) preprocessed, 3 kept" in again.output


def test_plan_and_preprocess_reports_missing_dataset(tmp_path):
    result = CliRunner().invoke(main, ["plan-and-preprocess", "-d", "999", "--raw-dir", str(tmp_path), "--preprocessed-dir", str(tmp_path)])
    assert result.exit_code == 1 and "Dataset999_" in result.output
