"""nnU-Net v1 task folders (``TaskXXX_Name``) to the v2 raw layout, as nnU-Net's
``nnUNetv2_convert_old_nnUNet_dataset``: the image/label folders are copied as they are (v1 file
names already follow ``case_XXXX.nii.gz``) and dataset.json is rewritten (``modality`` →
``channel_names``, ``labels`` flipped to name → value, ``file_ending`` ``.nii.gz``; the v1 case
lists ``training``/``test`` and ``tensorImageSize``/``numTest`` dropped)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "imagesVal", "labelsVal")
DROPPED = ("tensorImageSize", "numTest", "training", "test")


class OldDatasetError(ValueError):
    """The source is not a v1 task folder, or the target exists / is misnamed; the message says which."""


def convert_v1_dataset_json(old: dict) -> dict:
    """v1 dataset.json → v2 (key order kept, as nnU-Net's ``save_json(sort_keys=False)``)."""
    if "modality" not in old or "labels" not in old:
        raise OldDatasetError("dataset.json: not an nnU-Net v1 file (needs 'modality' and 'labels')")
    new = {k: v for k, v in old.items() if k not in DROPPED and k != "modality"}
    new["channel_names"] = dict(old["modality"])
    try:
        new["labels"] = {name: int(value) for value, name in old["labels"].items()}
    except (TypeError, ValueError):
        raise OldDatasetError("dataset.json: v1 labels map values to names ({\"0\": \"background\", ...})") from None
    new["file_ending"] = ".nii.gz"
    return new


def convert_old_dataset(source: str | Path, target_name: str, raw_root: str | Path) -> Path:
    """Writes ``raw_root/target_name`` from the v1 task folder ``source``; returns it."""
    src = Path(source)
    if not (src / "dataset.json").is_file() or not (src / "imagesTr").is_dir():
        raise OldDatasetError(f"{src}: not an nnU-Net v1 task folder (needs dataset.json and imagesTr; give the "
                              "task's path, not its name)")
    if not re.fullmatch(r"Dataset\d{3}_\w+", target_name):
        raise OldDatasetError(f"{target_name}: the new name must follow DatasetXXX_Name (three digits)")
    target = Path(raw_root) / target_name
    if target.exists():
        raise OldDatasetError(f"{target}: already exists; delete it first if it should be replaced")
    new_json = convert_v1_dataset_json(json.loads((src / "dataset.json").read_text()))
    target.mkdir(parents=True)
    for name in FOLDERS:
        if (src / name).is_dir():
            shutil.copytree(src / name, target / name)
    # dataset.json last: its presence marks a complete dataset
    (target / "dataset.json").write_text(json.dumps(new_json, indent=4))
    return target
