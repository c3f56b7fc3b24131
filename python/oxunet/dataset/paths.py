"""Where datasets live: resolved once from options or environment variables into one value
that is passed down (no module-level globals read at import)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from ..errors import DatasetError

_ENV = {
    "raw": ("OXUNET_RAW", "nnUNet_raw"),
    "preprocessed": ("OXUNET_PREPROCESSED", "nnUNet_preprocessed"),
    "results": ("OXUNET_RESULTS", "nnUNet_results"),
}


class DatasetNotFoundError(DatasetError, LookupError):
    """The dataset id/name matches no folder, or several."""


@dataclass(frozen=True)
class Paths:
    """The three roots; a root that was not configured is None and raises when it is needed."""

    raw: Path | None = None
    preprocessed: Path | None = None
    results: Path | None = None

    def require(self, which: str) -> Path:
        value = getattr(self, which)
        if value is None:
            ours, theirs = _ENV[which]
            raise FileNotFoundError(
                f"the {which} folder is not set: pass --{which}-dir or set ${ours} (or nnU-Net's ${theirs})"
            )
        return value


def resolve_paths(raw_dir=None, preprocessed_dir=None, results_dir=None, environ=None) -> Paths:
    """Explicit arguments win; then OXUNET_* variables; then nnU-Net's nnUNet_* variables."""
    env = os.environ if environ is None else environ

    def pick(explicit, which):
        if explicit:
            return Path(explicit).expanduser()
        for var in _ENV[which]:
            if env.get(var):
                return Path(env[var]).expanduser()
        return None

    return Paths(pick(raw_dir, "raw"), pick(preprocessed_dir, "preprocessed"), pick(results_dir, "results"))


def dataset_name(dataset: str | int, paths: Paths) -> str:
    """``DatasetXXX_Name`` for an id (``4``, ``"004"``) or a full folder name, searching the raw,
    preprocessed and results roots as nnU-Net does."""
    text = str(dataset).strip()
    if re.fullmatch(r"Dataset\d{3}_.+", text):
        return text
    if not text.isdigit():
        raise DatasetNotFoundError(f"dataset {text!r}: expected an id like 4 or a folder name like Dataset004_Hippocampus")
    prefix = f"Dataset{int(text):03d}_"
    found: set[str] = set()
    for root in (paths.raw, paths.preprocessed, paths.results):
        if root is not None and root.is_dir():
            found.update(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))
    if not found:
        roots = ", ".join(str(r) for r in (paths.raw, paths.preprocessed, paths.results) if r is not None) or "no folders set"
        raise DatasetNotFoundError(f"dataset {text}: no folder named {prefix}* in {roots}")
    if len(found) > 1:
        raise DatasetNotFoundError(f"dataset {text}: several folders match ({', '.join(sorted(found))})")
    return found.pop()
