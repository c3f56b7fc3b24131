"""Checkpoints in nnU-Net's dict layout, written atomically, plus the RNG states for exact resume."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """torch.save to a hidden temporary next to `path`, then os.replace (a killed run never
    leaves a truncated checkpoint)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def rng_states() -> dict[str, Any]:
    """Global torch / numpy / python RNG states as plain types and tensors (weights_only-loadable)."""
    np_state = cast(tuple, np.random.get_state())  # the legacy tuple form (the default)
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = states["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def remove_stale_temporaries(fold_dir: str | os.PathLike) -> list[Path]:
    """Deletes the ``.checkpoint_*.tmp-PID`` files of killed saves; returns them."""
    from ..io.atomic import remove_stale_temporaries as remove

    return remove(fold_dir, ".checkpoint_*.tmp-*")


def find_resume_checkpoint(fold_dir: str | os.PathLike) -> Path | None:
    """nnU-Net's ``--c`` order: final, else latest, else best (stale temporaries of killed
    saves are removed first)."""
    remove_stale_temporaries(fold_dir)
    for name in CHECKPOINT_NAMES:
        p = Path(fold_dir) / name
        if p.is_file():
            return p
    return None
