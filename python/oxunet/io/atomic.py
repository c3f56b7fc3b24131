"""Atomic output files: write to a hidden temporary beside the target, then rename over it, so
an interrupted run never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path to write to; on success it replaces ``target`` atomically.

    ``suffix`` (default: the target's full suffix, e.g. ``.nii.gz``) is kept at the end of the
    temporary name so writers that choose a format by extension still work.
    """
    target = Path(target)
    if suffix is None:
        suffix = "".join(target.suffixes) if target.suffixes else ""
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    tmp = target.with_name(f".{stem}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
