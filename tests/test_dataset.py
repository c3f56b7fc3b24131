"""Raw dataset discovery: roots from options/env, id lookup, dataset.json semantics."""

import json
from pathlib import Path

import pytest

from oxunet.dataset import (
    DatasetJsonError,
    DatasetNotFoundError,
    dataset_name,
    load_dataset_json,
    resolve_paths,
    training_cases,
)

HIPPO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Dataset004_Hippocampus"


def _dataset_json(tmp_path, **overrides):
    content = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "numTraining": 1, "file_ending": ".nii.gz"}
    content.update(overrides)
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(content))
    return path


def test_paths_precedence(tmp_path):
    env = {"OXUNET_RAW": "/a", "nnUNet_raw": "/b", "nnUNet_preprocessed": "/c"}
    p = resolve_paths(environ=env)
    assert p.raw == Path("/a") and p.preprocessed == Path("/c") and p.results is None
    assert resolve_paths(raw_dir=tmp_path, environ=env).raw == tmp_path
    with pytest.raises(FileNotFoundError, match=r"--results-dir or set \$OXUNET_RESULTS"):
        p.require("results")


def test_dataset_name_by_id_and_name(tmp_path):
    (tmp_path / "Dataset012_Liver").mkdir()
    p = resolve_paths(raw_dir=tmp_path, environ={})
    assert dataset_name(12, p) == "Dataset012_Liver"
    assert dataset_name("012", p) == "Dataset012_Liver"
    assert dataset_name("Dataset099_Other", p) == "Dataset099_Other"
    with pytest.raises(DatasetNotFoundError, match="no folder named Dataset013_"):
        dataset_name(13, p)
    (tmp_path / "Dataset012_Again").mkdir()
    with pytest.raises(DatasetNotFoundError, match="several folders match"):
        dataset_name(12, p)


def test_label_semantics_with_regions_and_ignore(tmp_path):
    path = _dataset_json(
        tmp_path,
        labels={"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enh": 3, "ignore": 4},
        regions_class_order=[1, 2, 3],
    )
    info = load_dataset_json(path)
    assert info.has_regions and info.ignore_label == 4
    assert info.all_labels == [0, 1, 2, 3]
    assert info.foreground_regions == [(1, 2, 3), (2, 3), 3]
    assert info.num_segmentation_heads == 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"labels": {"liver": 1}}, 'must contain "background": 0'),
        ({"labels": {"background": 0, "a": 1, "ignore": 5}}, "ignore label must be max"),
        ({"labels": {"background": 0, "a": [1, 2], "b": 2}}, "need regions_class_order"),
        ({"labels": {"background": 0, "a": "x"}}, "label 'a' has value 'x'"),
    ],
)
def test_dataset_json_errors_name_file_and_key(tmp_path, overrides, message):
    with pytest.raises(DatasetJsonError, match=message) as e:
        load_dataset_json(_dataset_json(tmp_path, **overrides))
    assert "dataset.json" in str(e.value)


def test_missing_keys_are_listed(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": {"background": 0}}))
    with pytest.raises(DatasetJsonError, match="channel_names, numTraining, file_ending"):
        load_dataset_json(path)


def test_explicit_dataset_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MYDATA", str(tmp_path / "elsewhere"))
    path = _dataset_json(tmp_path, dataset={"c1": {"images": ["$MYDATA/c1_img.nii.gz"], "label": "lab/c1.nii.gz"}})
    cases = training_cases(tmp_path, load_dataset_json(path))
    assert cases["c1"]["images"] == [tmp_path / "elsewhere" / "c1_img.nii.gz"]
    assert cases["c1"]["label"] == tmp_path / "lab" / "c1.nii.gz"


@pytest.mark.skipif(not HIPPO.is_dir(), reason="../shared/data/Dataset004_Hippocampus is not present (CI data only)")
def test_hippocampus_cases():
    info = load_dataset_json(HIPPO / "dataset.json")
    cases = training_cases(HIPPO, info)
    assert len(cases) == info.num_training == 260
    first = cases["hippocampus_001"]
    assert [p.name for p in first["images"]] == ["hippocampus_001_0000.nii.gz"]
    assert first["label"].name == "hippocampus_001.nii.gz"
