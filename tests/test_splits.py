"""Splits identical to nnU-Net's (KFold seed 12345 over sorted ids), user splits, fold all, 80:20 fallback."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oxunet.training.splits import SplitsError, kfold_splits, load_or_create_splits, random_80_20, train_val_keys
from peers import require


@given(st.integers(min_value=5, max_value=300))
def test_kfold_matches_nnunet(n):
    require("nnunetv2")
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    ids = [f"case_{i:04d}" for i in np.random.default_rng(n).permutation(n)]
    theirs = generate_crossval_split(sorted(ids), seed=12345, n_splits=5)
    ours = kfold_splits(ids)
    assert [{"train": list(map(str, f["train"])), "val": list(map(str, f["val"]))} for f in theirs] == ours


def test_hippocampus_sized_split_properties():
    ids = [f"hippocampus_{i:03d}" for i in range(260)]
    splits = kfold_splits(ids)
    assert [len(f["val"]) for f in splits] == [52] * 5
    vals = [c for f in splits for c in f["val"]]
    assert sorted(vals) == sorted(ids)
    for f in splits:
        assert not set(f["train"]) & set(f["val"])


@pytest.mark.parametrize("fold", [5, 7])
def test_fallback_80_20_matches_nnunet_rule(fold):
    ids = [f"c{i:02d}" for i in range(23)]
    tr, val = random_80_20(ids, fold)
    rnd = np.random.RandomState(12345 + fold)
    idx = rnd.choice(23, int(23 * 0.8), replace=False)
    assert tr == [sorted(ids)[i] for i in idx]
    assert sorted(tr + val) == sorted(ids) and len(tr) == 18


def test_splits_file_created_then_reused_and_user_splits(tmp_path):
    ids = [f"c{i}" for i in range(10)]
    tr, val = train_val_keys(tmp_path, ids, 0)
    assert (tmp_path / "splits_final.json").is_file()
    assert json.loads((tmp_path / "splits_final.json").read_text())[0]["val"] == val
    # a user's 2-fold manual split forcing c0 into training in both folds
    manual = [{"train": ["c0", "c1", "c2"], "val": ["c3"]}, {"train": ["c0", "c3"], "val": ["c1", "c2"]}]
    (tmp_path / "splits_final.json").write_text(json.dumps(manual))
    assert train_val_keys(tmp_path, ids, 1) == (["c0", "c3"], ["c1", "c2"])
    with pytest.warns(UserWarning, match="fold 2: the splits file has 2 fold"):
        tr, val = train_val_keys(tmp_path, ids, 2)
    assert len(tr) == 8 and len(val) == 2
    assert train_val_keys(tmp_path, ids, "all") == (sorted(ids), sorted(ids))


def test_bad_splits(tmp_path):
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": ["zz"], "val": ["c1"]}]))
    with pytest.raises(SplitsError, match=r"fold 0 names case\(s\) that are not in the dataset: \['zz'\]"):
        load_or_create_splits(tmp_path, ["c1", "c2"])
    with pytest.raises(SplitsError, match="fold: expected an integer or 'all'"):
        train_val_keys(tmp_path, ["c1"], "first")
    with pytest.raises(SplitsError, match="cannot be split into 5 folds"):
        kfold_splits(["a", "b"])
