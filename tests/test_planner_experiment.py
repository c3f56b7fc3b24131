"""plan_experiment on disk: what it writes next to the plans, and every bad input named."""

from __future__ import annotations

import json

import pytest

from oxunet.dataset import DatasetJsonError, DatasetNotFoundError, resolve_paths
from oxunet.dataset.verify import DatasetVerificationError
from oxunet.planning import FingerprintError, PlansError, load_fingerprint, load_plans, plan_experiment
from test_planner_parity import fingerprint, stub_dataset


@pytest.fixture
def stub(tmp_path):
    """A raw dataset stub plus a fingerprint already in the preprocessed folder."""
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    stub_dataset(raw, "Dataset321_Stub", 4, ("CT",), 2)
    (pre / "Dataset321_Stub").mkdir(parents=True)
    fp = fingerprint([[1.0, 1.0, 1.0]] * 4, [[64, 80, 72]] * 4)
    (pre / "Dataset321_Stub" / "dataset_fingerprint.json").write_text(json.dumps(fp))
    return resolve_paths(raw, pre, tmp_path / "results")


def test_writes_plans_dataset_json_and_splits(stub):
    raw_ds = stub.raw / "Dataset321_Stub"
    splits = [{"train": ["a", "b"], "val": ["c"]}, {"train": ["a", "c"], "val": ["b"]}]
    (raw_ds / "splits_final.json").write_text(json.dumps(splits))
    plans = plan_experiment(321, stub, quiet=True)
    out = stub.preprocessed / "Dataset321_Stub"
    assert load_plans(out / "nnUNetPlans.json") == plans
    assert plans["oxunet"]["planner"] == "default" and plans["oxunet"]["gpu_memory_gb"] == 8
    assert json.loads((out / "dataset.json").read_text()) == json.loads((raw_ds / "dataset.json").read_text())
    assert json.loads((out / "splits_final.json").read_text()) == splits
    # a preprocessed copy with more folds is fine; a different fold is not
    (out / "splits_final.json").write_text(json.dumps(splits + [{"train": ["x"], "val": ["y"]}]))
    plan_experiment(321, stub, "ResEncM", quiet=True)
    assert (out / "nnUNetResEncUNetMPlans.json").is_file()
    (out / "splits_final.json").write_text(json.dumps([{"train": ["a"], "val": ["b", "c"]}]))
    with pytest.raises(PlansError, match="fold 0 differs"):
        plan_experiment(321, stub, quiet=True)


def test_plans_name_and_dataset_by_folder_name(stub):
    plans = plan_experiment("Dataset321_Stub", stub, plans_name="Custom", quiet=True)
    assert plans["plans_name"] == "Custom"
    assert plans["configurations"]["3d_fullres"]["data_identifier"] == "Custom_3d_fullres"
    assert (stub.preprocessed / "Dataset321_Stub" / "Custom.json").is_file()


def test_extracts_a_missing_fingerprint_and_clean_re_extracts(stub, monkeypatch):
    """Extraction itself is parity-tested (test_fingerprint, and end to end on Hippocampus in
    test_planner_parity); here: when plan_experiment extracts. A stand-in keeps this quick."""
    import oxunet.planning.experiment as experiment

    calls = []

    def fake_extract(raw_dir, out_dir, num_processes, overwrite, quiet, info):
        calls.append((raw_dir.name, overwrite, num_processes))
        fp = fingerprint([[2.0, 1.0, 1.0]] * 4, [[32, 80, 72]] * 4)
        (out_dir / "dataset_fingerprint.json").write_text(json.dumps(fp))
        return fp

    monkeypatch.setattr(experiment, "extract_fingerprint", fake_extract)
    fp_file = stub.preprocessed / "Dataset321_Stub" / "dataset_fingerprint.json"
    plan_experiment(321, stub, quiet=True)
    assert calls == []  # present: used as it is
    fp_file.unlink()
    plans = plan_experiment(321, stub, num_processes=3, quiet=True)
    assert calls == [("Dataset321_Stub", True, 3)]
    assert plans["original_median_spacing_after_transp"] == [2.0, 1.0, 1.0]
    plan_experiment(321, stub, clean=True, quiet=True)
    assert len(calls) == 2


def test_bad_inputs_name_the_file(stub, tmp_path):
    fp_file = stub.preprocessed / "Dataset321_Stub" / "dataset_fingerprint.json"
    fp_file.write_text("{oops")
    with pytest.raises(FingerprintError, match="dataset_fingerprint.json: cannot be read as JSON"):
        plan_experiment(321, stub, quiet=True)
    fp_file.write_text(json.dumps({"spacings": [[1, 1, 1]]}))
    with pytest.raises(FingerprintError, match=r"dataset_fingerprint.json: missing shapes_after_crop.*--clean"):
        plan_experiment(321, stub, quiet=True)
    fp_file.write_text(json.dumps(fingerprint([[1.0, 1.0, 1.0]] * 3, [[64, 64, 64]] * 3)))
    with pytest.raises(FingerprintError, match=r"has 3 case\(s\) but .*dataset.json declares numTraining=4"):
        plan_experiment(321, stub, quiet=True)
    with pytest.raises(FingerprintError, match="missing.json: fingerprint not found"):
        load_fingerprint(tmp_path / "missing.json")
    (stub.raw / "Dataset321_Stub" / "dataset.json").unlink()
    with pytest.raises(DatasetJsonError, match="Dataset321_Stub/dataset.json: dataset.json not found"):
        plan_experiment(321, stub, quiet=True)
    with pytest.raises(DatasetNotFoundError, match="no folder named Dataset999_"):
        plan_experiment(999, stub, quiet=True)
    with pytest.raises(FileNotFoundError, match="--preprocessed-dir"):
        plan_experiment(321, resolve_paths(stub.raw, None, None, environ={}), quiet=True)
    with pytest.raises(ValueError, match="unknown planner"):
        plan_experiment(321, stub, planner="nnUNetPlannerResEncXXL", quiet=True)


def test_verify_refuses_a_broken_dataset(stub):
    raw_ds = stub.raw / "Dataset321_Stub"
    (raw_ds / "labelsTr" / "case_000.nii.gz").unlink()
    with pytest.raises(DatasetVerificationError, match=r"error\(s\).*Run `oxunet verify -d 321`"):
        plan_experiment(321, stub, verify=True, quiet=True)
    assert not (stub.preprocessed / "Dataset321_Stub" / "nnUNetPlans.json").exists()
    plan_experiment(321, stub, quiet=True)  # without verification the existing fingerprint is planned
