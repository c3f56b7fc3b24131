"""Merge per-structure masks into one nnU-Net label map, reporting where structures overlap.

nnU-Net wants one integer per voxel, but DICOM-SEG segments and RTSTRUCT ROIs may overlap.
Policies: ``"last"`` (a later structure wins over an earlier one, as painting them in order),
``"first"`` (an earlier one is kept), ``"error"`` (refuse, naming the overlapping structures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ._deps import DicomInputError

OVERLAP_POLICIES = ("last", "first", "error")


@dataclass
class OverlapReport:
    """Voxels shared by structures: per pair (label a, label b) and in total."""

    names: list[str]
    pairs: dict[tuple[int, int], int] = field(default_factory=dict)  # labels 1-based, a < b
    voxels_in_several: int = 0
    max_structures_per_voxel: int = 0

    def __bool__(self) -> bool:
        return self.voxels_in_several > 0

    def lines(self) -> list[str]:
        out = [f"{self.voxels_in_several} voxels belong to more than one structure "
               f"(up to {self.max_structures_per_voxel} at one voxel)"] if self else []
        for (a, b), n in sorted(self.pairs.items()):
            out.append(f"  {self.names[a - 1]} (label {a}) & {self.names[b - 1]} (label {b}): {n} voxels")
        return out


def overlap_report(masks: Sequence[np.ndarray], names: Sequence[str]) -> OverlapReport:
    report = OverlapReport(names=list(names))
    if not len(masks):
        return report
    count = np.zeros(masks[0].shape, dtype=np.uint16)
    for m in masks:
        count += m.astype(bool)
    report.voxels_in_several = int((count > 1).sum())
    report.max_structures_per_voxel = int(count.max())
    if report.voxels_in_several:
        # Pairs only where something overlaps: cheap even for many structures.
        where = count > 1
        flat = [m.astype(bool)[where] for m in masks]
        for a in range(len(flat)):
            for b in range(a + 1, len(flat)):
                n = int(np.count_nonzero(flat[a] & flat[b]))
                if n:
                    report.pairs[(a + 1, b + 1)] = n
    return report


def combine_masks(masks: Sequence[np.ndarray], names: Sequence[str], overlap: str = "last") -> tuple[np.ndarray, OverlapReport]:
    """Label map (structure i → label i + 1) and the overlap report, resolving overlaps by ``overlap``."""
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap policy must be one of {OVERLAP_POLICIES}, got {overlap!r}")
    if len(masks) != len(names):
        raise ValueError(f"{len(masks)} masks but {len(names)} names")
    report = overlap_report(masks, names)
    if report and overlap == "error":
        raise DicomInputError("structures overlap (choose an overlap policy, e.g. 'last'):\n" + "\n".join(report.lines()))
    if not len(masks):
        raise ValueError("no masks to combine")
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    labels = np.zeros(masks[0].shape, dtype=dtype)
    order = range(len(masks)) if overlap == "last" else reversed(range(len(masks)))
    for i in order:
        labels[masks[i].astype(bool)] = i + 1
    return labels, report
