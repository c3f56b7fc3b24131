"""Atomic output files: write to a hidden temporary beside the target, then rename over it, so
an interrupted run never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

# `.NAME.tmp-PID[SUFFIX]`: what atomic_path (and save_checkpoint) write before the rename
_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of our hidden write-then-rename temporaries."""
    return _TEMPORARY.match(name) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, pattern: str = ".*.tmp-*") -> list[Path]:
    """Deletes the temporaries in `folder` left by killed writers (their process is gone; on
    another machine sharing the folder a pid can only be guessed, so this runs where the
    writer ran); returns them. A live writer's temporary is left alone."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(pattern):
        m = _TEMPORARY.match(tmp.name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and _alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        removed.append(tmp)
    return removed


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
