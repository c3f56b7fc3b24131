"""Finding the cases of a raw dataset: ``{case: {"images": [channel files], "label": file}}``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .dataset_json import DatasetInfo


def _resolve(root: Path, p: str) -> Path:
    path = Path(os.path.expandvars(p)).expanduser()
    return path if path.is_absolute() else root / path


def images_by_case(folder: Path, file_ending: str) -> dict[str, list[Path]]:
    """Groups ``{CASE}_{XXXX}{file_ending}`` files by case, channels in numeric order."""
    pattern = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(file_ending) + "$")
    found: dict[str, list[tuple[int, Path]]] = {}
    if folder.is_dir():
        for entry in folder.iterdir():
            m = pattern.match(entry.name)
            if m and entry.is_file():
                found.setdefault(m["case"], []).append((int(m["ch"]), entry))
    return {case: [p for _, p in sorted(chs)] for case, chs in sorted(found.items())}


def training_cases(dataset_dir: str | Path, info: DatasetInfo) -> dict[str, dict]:
    """Training cases in sorted order. With the ``dataset`` key the listed files are used
    (relative paths from the dataset folder, environment variables expanded)."""
    root = Path(dataset_dir)
    if info.explicit_cases is not None:
        out = {}
        for case in sorted(info.explicit_cases):
            entry = info.explicit_cases[case]
            out[case] = {
                "images": [_resolve(root, p) for p in entry["images"]],
                "label": _resolve(root, entry["label"]) if entry.get("label") else None,
            }
        return out
    images = images_by_case(root / "imagesTr", info.file_ending)
    return {
        case: {"images": files, "label": root / "labelsTr" / f"{case}{info.file_ending}"}
        for case, files in images.items()
    }
