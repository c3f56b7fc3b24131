"""Cross-validation splits, identical to nnU-Net's.

Default: 5-fold KFold with shuffling, seed 12345, over the sorted case identifiers (the same
permutation and fold sizes as scikit-learn's ``KFold``, which nnU-Net uses, without needing it),
stored as ``splits_final.json`` beside the preprocessed data. A user's splits file may hold any
number of folds (e.g. to force hard cases into training). Fold ``"all"`` trains and validates on
everything; a fold beyond the file gets nnU-Net's seeded random 80:20 split.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..io import atomic_path

SPLITS_FILE = "splits_final.json"
DEFAULT_SEED = 12345


class SplitsError(ValueError):
    """A splits file is unreadable or names cases that do not exist."""


def kfold_splits(identifiers: list[str], n_splits: int = 5, seed: int = DEFAULT_SEED) -> list[dict[str, list[str]]]:
    """``[{"train": [...], "val": [...]}, ...]`` for sorted identifiers, as nnU-Net's generate_crossval_split."""
    keys = sorted(identifiers)
    n = len(keys)
    if n < n_splits:
        raise SplitsError(f"identifiers: {n} case(s) cannot be split into {n_splits} folds")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_splits, n // n_splits)
    sizes[: n % n_splits] += 1
    splits, start = [], 0
    for size in sizes:
        in_val = np.zeros(n, bool)
        in_val[order[start : start + size]] = True
        start += size
        splits.append({"train": [keys[i] for i in np.flatnonzero(~in_val)], "val": [keys[i] for i in np.flatnonzero(in_val)]})
    return splits


def random_80_20(identifiers: list[str], fold: int) -> tuple[list[str], list[str]]:
    """nnU-Net's fallback for a fold beyond the splits file: seeded (12345 + fold) 80:20."""
    keys = sorted(identifiers)
    rnd = np.random.RandomState(seed=DEFAULT_SEED + fold)
    idx_tr = rnd.choice(len(keys), int(len(keys) * 0.8), replace=False)
    chosen = set(idx_tr.tolist())
    return [keys[i] for i in idx_tr], [keys[i] for i in range(len(keys)) if i not in chosen]


def load_or_create_splits(preprocessed_dataset_dir: str | Path, identifiers: list[str],
                          write: bool = True) -> list[dict[str, list[str]]]:
    """Reads ``splits_final.json`` or makes nnU-Net's default 5-fold split (written there unless
    ``write`` is False)."""
    path = Path(preprocessed_dataset_dir) / SPLITS_FILE
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SplitsError(f"{path}: not valid JSON ({e})") from None
        known = set(identifiers)
        for i, fold in enumerate(splits):
            if not isinstance(fold, dict) or not {"train", "val"} <= set(fold):
                raise SplitsError(f"{path}: fold {i} must have 'train' and 'val' lists")
            unknown = sorted((set(fold["train"]) | set(fold["val"])) - known)
            if unknown:
                raise SplitsError(f"{path}: fold {i} names case(s) that are not in the dataset: {unknown[:5]}")
        return splits
    splits = kfold_splits(identifiers)
    if write:
        write_splits(path, splits)
    return splits


def write_splits(path: str | Path, splits: list[dict[str, list[str]]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(splits, indent=4))


def train_val_keys(preprocessed_dataset_dir: str | Path, identifiers: list[str], fold: int | str,
                   write: bool = True) -> tuple[list[str], list[str]]:
    """Training and validation cases of ``fold`` (an int or ``"all"``), as nnU-Net's do_split
    (``write=False``: a missing splits file is computed, not written)."""
    if fold == "all":
        keys = sorted(identifiers)
        return keys, keys
    if isinstance(fold, str):
        if not fold.isdigit():
            raise SplitsError(f"fold: expected an integer or 'all', got {fold!r}")
        fold = int(fold)
    splits = load_or_create_splits(preprocessed_dataset_dir, identifiers, write=write)
    if fold < len(splits):
        tr, val = splits[fold]["train"], splits[fold]["val"]
    else:
        warnings.warn(
            f"fold {fold}: the splits file has {len(splits)} fold(s); using a random (seeded) 80:20 split", stacklevel=2
        )
        tr, val = random_80_20(identifiers, fold)
    if set(tr) & set(val):
        warnings.warn(f"fold {fold}: some validation cases are also training cases", stacklevel=2)
    return tr, val
