"""Searching a minimum component size per label or region: the rule
``remove_small_components(target, min_size=T, replace_with=r)`` (BraTS' "enhancing tumour
smaller than N voxels becomes necrosis": target = enhancing tumour, r = necrosis).

Every (T, r) is scored at once, without writing a file per candidate: each case is read once and
reduced to its confusion counts (predicted value x reference value) plus, per component of the
target's mask, the counts inside that component. Turning the components smaller than T into r
moves exactly those counts from their rows to row r, so the Dice of every label or region for
every candidate follows from sums (components sorted by size, cumulative sums over them). The
means follow nnU-Net's summary rules (per-case Dice NaN when reference and prediction are both
empty, NaN-skipping mean over cases, plain mean over classes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_THRESHOLDS = 40  # candidate sizes per target: quantiles of the observed component sizes


@dataclass
class TargetCounts:
    """One case, one target: component sizes and their (predicted value in target, reference value) counts."""

    sizes: np.ndarray  # (K,)
    inside: np.ndarray  # (K, len(target values), V)


@dataclass
class CaseCounts:
    base: np.ndarray  # (V, V): predicted value x reference value, ignore-label voxels left out
    targets: list[TargetCounts]


def _values(target) -> tuple[int, ...]:
    return tuple(int(v) for v in target) if isinstance(target, (tuple, list)) else (int(target),)


def case_counts(pred: np.ndarray, ref: np.ndarray, targets: Sequence, n_values: int, ignore: int | None) -> CaseCounts:
    """The counts of one case (``pred``/``ref``: label maps of the same shape)."""
    from ..kernels import label_components

    pred, ref = np.asarray(pred), np.asarray(ref)
    p, g = pred.astype(np.int64).ravel(), ref.astype(np.int64).ravel()
    keep = g != ignore if ignore is not None else np.ones(g.shape, bool)
    base = np.bincount(p[keep] * n_values + g[keep], minlength=n_values * n_values).reshape(n_values, n_values)
    out = []
    for target in targets:
        values = np.array(sorted(_values(target)))
        mask = np.isin(pred, values)
        components, n = label_components(mask)  # full connectivity, as remove_small_components
        flat = mask.ravel()
        ids = components.ravel()[flat].astype(np.int64) - 1
        sizes = np.bincount(ids, minlength=n)  # the rule counts every voxel, ignore-label ones too
        slot = np.searchsorted(values, p[flat])
        ok = keep[flat]
        code = (ids[ok] * len(values) + slot[ok]) * n_values + g[flat][ok]
        inside = np.bincount(code, minlength=n * len(values) * n_values).reshape(n, len(values), n_values)
        out.append(TargetCounts(sizes, inside))
    return CaseCounts(base, out)


def read_case_counts(pred_file: str, ref_file: str, reader, targets, n_values: int, ignore: int | None) -> CaseCounts:
    pred = reader.read_seg(pred_file)[0][0]
    ref = reader.read_seg(ref_file)[0][0]
    if pred.shape != ref.shape:
        raise ValueError(f"{pred_file}: shape {pred.shape} differs from the reference's {ref.shape}")
    return case_counts(pred, ref, targets, n_values, ignore)


def dice_per_class(confusion: np.ndarray, classes: Sequence) -> np.ndarray:
    """Dice of each label or region from a (..., V, V) confusion array; NaN where both are empty."""
    v = confusion.shape[-1]
    out = []
    for c in classes:
        member = np.zeros(v, bool)
        member[list(_values(c))] = True
        tp = confusion[..., member, :][..., :, member].sum((-1, -2))
        fp = confusion[..., member, :][..., :, ~member].sum((-1, -2))
        fn = confusion[..., ~member, :][..., :, member].sum((-1, -2))
        denom = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan))
    return np.stack(out, -1)


def candidate_thresholds(counts: Sequence[CaseCounts], index: int) -> np.ndarray:
    """min_size candidates for target ``index``: one above each observed component size (thinned
    to quantiles), so every candidate removes a different set of components."""
    sizes = np.unique(np.concatenate([c.targets[index].sizes for c in counts] or [np.zeros(0, int)]))
    if sizes.size == 0:
        return np.zeros(0, np.int64)
    if sizes.size > MAX_THRESHOLDS:
        sizes = np.unique(np.quantile(sizes, np.linspace(0, 1, MAX_THRESHOLDS), method="nearest"))
    return sizes.astype(np.int64) + 1


def confusions_for(case: CaseCounts, index: int, values: Sequence[int], thresholds: np.ndarray,
                   replace_with: Sequence[int]) -> np.ndarray:
    """(len(replace_with), len(thresholds), V, V) confusion counts after each candidate rule."""
    t = case.targets[index]
    order = np.argsort(t.sizes, kind="stable")
    sizes = t.sizes[order]
    cumulative = np.concatenate([np.zeros((1,) + t.inside.shape[1:], np.int64), np.cumsum(t.inside[order], 0)])
    removed = cumulative[np.searchsorted(sizes, thresholds, side="left")]  # (T, len(values), V)
    out = np.broadcast_to(case.base, (len(replace_with), len(thresholds)) + case.base.shape).copy()
    rows = sorted(values)  # the order of TargetCounts.inside's second axis
    out[:, :, rows, :] -= removed[None]
    moved = removed.sum(1)  # (T, V): what leaves the target's rows, by reference value
    for i, r in enumerate(replace_with):
        out[i, :, r, :] += moved
    return out


@dataclass
class MinSizeChoice:
    target: object
    min_size: int
    replace_with: int
    foreground_dice: float  # after the rule (estimated from counts)
    target_dice: float


def search_min_size(counts: Sequence[CaseCounts], targets: Sequence, classes: Sequence, index: int,
                    replace_candidates: Sequence[int]) -> MinSizeChoice | None:
    """The (min_size, replace_with) for ``targets[index]`` with the best foreground mean Dice, or
    None when no candidate beats leaving the prediction as it is."""
    thresholds = candidate_thresholds(counts, index)
    if thresholds.size == 0:
        return None
    thresholds = np.concatenate([[0], thresholds])  # min_size 0 changes nothing: the baseline
    values = _values(targets[index])
    per_case = np.stack([dice_per_class(confusions_for(c, index, values, thresholds, replace_candidates), classes)
                         for c in counts])  # (cases, R, T, classes)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class empty everywhere: NaN, as nnU-Net
        class_means = np.nanmean(per_case, 0)  # (R, T, classes)
        # a class absent from every case (NaN) must not make a candidate incomparable
        foreground = np.nanmean(class_means, -1)
    if np.all(np.isnan(foreground)):
        return None
    r, t = (int(i) for i in np.unravel_index(np.nanargmax(foreground), foreground.shape))
    if t == 0 or not foreground[r, t] > foreground[0, 0]:
        return None
    wanted = set(values)
    target_col = next((i for i, c in enumerate(classes) if set(_values(c)) == wanted), None)
    target_dice = float(class_means[r, t, target_col]) if target_col is not None else float("nan")
    return MinSizeChoice(targets[index], int(thresholds[t]), int(replace_candidates[r]), float(foreground[r, t]),
                         target_dice)


def collect_counts(pred_dir: str, ref_dir: str, names: Sequence[str], reader, targets: Sequence, n_values: int,
                   ignore: int | None, num_processes: int, quiet: bool) -> list[CaseCounts]:
    from .._workers import map_cases

    jobs = [(os.path.join(pred_dir, n), os.path.join(ref_dir, n), reader, list(targets), n_values, ignore)
            for n in names if os.path.isfile(os.path.join(ref_dir, n))]
    return map_cases(read_case_counts, jobs, num_processes, "min-size search", quiet=quiet)
