"""dataset.json: parsed once into a typed value with nnU-Net's label-manager semantics."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Union
from ..errors import DatasetError

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


class DatasetJsonError(DatasetError):
    """dataset.json is missing, unreadable or inconsistent; the message names the file and the key."""


# nnU-Net's label-manager rules on a parsed ``labels`` mapping (name → int or region tuple; an
# "ignore" entry is skipped). Shared by DatasetInfo and evaluation's labels_from_dataset_json.
Labels = Mapping[str, Union[int, tuple[int, ...]]]


def labels_have_regions(labels: Labels) -> bool:
    """True when any entry (ignore excluded) is a region of more than one label."""
    return any(isinstance(v, tuple) and len(v) > 1 for k, v in labels.items() if k != "ignore")


def all_label_values(labels: Labels) -> list[int]:
    """Sorted unique label values (regions flattened), the ignore label excluded."""
    out: set[int] = set()
    for name, v in labels.items():
        if name == "ignore":
            continue
        out.update(v if isinstance(v, tuple) else (v,))
    return sorted(out)


def foreground_regions(labels: Labels) -> list[int | tuple[int, ...]]:
    """Regions (tuples) or labels without pure-background entries, in declaration order; 1-tuples unwrapped."""
    out = []
    for name, v in labels.items():
        if name == "ignore":
            continue
        if isinstance(v, tuple):
            if len(v) == 1:
                v = v[0]
            elif all(x == 0 for x in v):
                continue
        if v == 0:
            continue
        out.append(v)
    return out


@dataclass(frozen=True)
class DatasetInfo:
    """What dataset.json declares. ``labels`` keeps the file's order (region order matters)."""

    path: Path
    channel_names: dict[str, str]
    labels: dict[str, int | tuple[int, ...]]
    num_training: int
    file_ending: str
    regions_class_order: tuple[int, ...] | None = None
    ignore_label: int | None = None
    image_reader_writer: str | None = None
    explicit_cases: dict | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def has_regions(self) -> bool:
        return labels_have_regions(self.labels)

    @property
    def all_labels(self) -> list[int]:
        """Sorted unique label values (regions flattened), the ignore label excluded."""
        return all_label_values(self.labels)

    @property
    def foreground_labels(self) -> list[int]:
        return [v for v in self.all_labels if v != 0]

    @property
    def foreground_regions(self) -> list[int | tuple[int, ...]]:
        """Regions (tuples) or labels without pure-background entries, in declaration order."""
        return foreground_regions(self.labels)

    @property
    def num_segmentation_heads(self) -> int:
        return len(self.foreground_regions) if self.has_regions else len(self.all_labels)


def _label_value(path: Path, name: str, value) -> int | tuple[int, ...]:
    if isinstance(value, bool):
        raise DatasetJsonError(f"{path}: label {name!r} has value {value!r}, expected an integer or a list of integers")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        return tuple(value)
    raise DatasetJsonError(f"{path}: label {name!r} has value {value!r}, expected an integer or a list of integers")


def load_dataset_json(path: str | os.PathLike) -> DatasetInfo:
    """Reads and checks dataset.json (structure only; files are checked by verification)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetJsonError(f"{path}: dataset.json not found")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetJsonError(f"{path}: cannot be parsed as JSON ({e})") from None
    if "channel_names" not in raw and "modality" in raw:
        raw["channel_names"] = raw["modality"]  # nnU-Net's old key
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise DatasetJsonError(f"{path}: missing required key(s) {', '.join(missing)}")
    labels = {str(k): _label_value(path, k, v) for k, v in raw["labels"].items()}
    if labels.get("background", None) != 0:
        raise DatasetJsonError(f"{path}: labels must contain \"background\": 0")
    ignore = labels.get("ignore")
    if ignore is not None:
        if isinstance(ignore, tuple):
            raise DatasetJsonError(f"{path}: the ignore label must be a single integer, got {list(ignore)}")
        others = [x for k, v in labels.items() if k != "ignore" for x in (v if isinstance(v, tuple) else (v,))]
        if ignore != max(others) + 1:
            raise DatasetJsonError(f"{path}: the ignore label must be max(other labels) + 1 = {max(others) + 1}, got {ignore}")
    rco = raw.get("regions_class_order")
    info = DatasetInfo(
        path=path,
        channel_names={str(k): str(v) for k, v in raw["channel_names"].items()},
        labels=labels,
        num_training=int(raw["numTraining"]),
        file_ending=str(raw["file_ending"]),
        regions_class_order=tuple(int(x) for x in rco) if rco is not None else None,
        ignore_label=ignore,
        image_reader_writer=raw.get("overwrite_image_reader_writer"),
        explicit_cases=raw.get("dataset"),
        raw=raw,
    )
    if info.has_regions:
        if info.regions_class_order is None:
            raise DatasetJsonError(f"{path}: region labels need regions_class_order (one entry per foreground region)")
        if len(info.regions_class_order) != len(info.foreground_regions):
            raise DatasetJsonError(
                f"{path}: regions_class_order has {len(info.regions_class_order)} entries for "
                f"{len(info.foreground_regions)} foreground regions"
            )
    return info
