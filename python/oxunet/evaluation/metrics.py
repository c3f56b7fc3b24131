"""Per-case overlap metrics exactly as nnU-Net's ``compute_metrics`` (Dice, IoU, TP/FP/FN/TN,
n_pred, n_ref), counted in one pass through a label confusion matrix instead of one pass per
label and count."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LabelOrRegion = int | tuple[int, ...]

#: nnU-Net's per-label fields, in the order nnU-Net fills them.
OVERLAP_METRICS = ("Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref")
#: Surface metrics we add when asked (never part of nnU-Net's summary).
SURFACE_METRICS = ("HD95", "ASSD", "NSD")

_CHUNK_VOXELS = 1 << 22  # bincount works on slabs so its intp copy stays small


def label_key(label_or_region: LabelOrRegion) -> str:
    """The JSON key nnU-Net writes: ``"1"`` for a label, ``"(1, 2)"`` for a region."""
    return str(label_or_region)


def key_to_label_or_region(key: str) -> LabelOrRegion:
    """Inverse of :func:`label_key` (nnU-Net's ``key_to_label_or_region``)."""
    try:
        return int(key)
    except ValueError:
        parts = key.replace("(", "").replace(")", "").split(",")
        return tuple(int(p) for p in parts if p.strip())


def normalize_labels(labels_or_regions: Sequence) -> list[LabelOrRegion]:
    """Ints stay ints, lists/tuples become tuples (JSON gives lists for regions)."""
    out: list[LabelOrRegion] = []
    for item in labels_or_regions:
        if isinstance(item, (list, tuple)):
            out.append(tuple(int(v) for v in item))
        else:
            out.append(int(item))
    return out


def _as_small_labels(seg: np.ndarray) -> np.ndarray | None:
    """``seg`` as uint8 when every value is an integer in 0..255, else None (generic path)."""
    if seg.dtype == np.uint8:
        return seg
    if seg.size == 0:
        return seg.astype(np.uint8)
    lo, hi = seg.min(), seg.max()
    if lo < 0 or hi > 255:
        return None
    as_u8 = seg.astype(np.uint8)
    if np.issubdtype(seg.dtype, np.floating) and not np.array_equal(as_u8, seg):
        return None  # non-integer values: let the generic path compare like nnU-Net does
    return as_u8


def confusion_matrix(reference: np.ndarray, prediction: np.ndarray) -> np.ndarray | None:
    """256×256 counts ``C[ref, pred]`` for label maps with values in 0..255 (None otherwise)."""
    ref = _as_small_labels(reference)
    pred = _as_small_labels(prediction)
    if ref is None or pred is None:
        return None
    ref, pred = ref.ravel(), pred.ravel()
    counts = np.zeros(65536, dtype=np.int64)
    for start in range(0, ref.size, _CHUNK_VOXELS):
        stop = start + _CHUNK_VOXELS
        code = ref[start:stop].astype(np.uint16) << 8
        code |= pred[start:stop]
        counts += np.bincount(code, minlength=65536)
    return counts.reshape(256, 256)


def _members(label_or_region: LabelOrRegion) -> tuple[int, ...]:
    return label_or_region if isinstance(label_or_region, tuple) else (label_or_region,)


def _counts_from_confusion(conf: np.ndarray, label_or_region, ignore_label) -> tuple[int, int, int, int]:
    inside = np.zeros(256, dtype=bool)
    for v in _members(label_or_region):
        if 0 <= v <= 255:
            inside[v] = True
    rows = np.ones(256, dtype=bool)
    if ignore_label is not None and 0 <= ignore_label <= 255:
        rows[ignore_label] = False  # reference voxels with the ignore label do not count
    tp = int(conf[np.ix_(inside & rows, inside)].sum())
    fp = int(conf[np.ix_(~inside & rows, inside)].sum())
    fn = int(conf[np.ix_(inside & rows, ~inside)].sum())
    tn = int(conf[np.ix_(~inside & rows, ~inside)].sum())
    return tp, fp, fn, tn


def region_mask(seg: np.ndarray, label_or_region: LabelOrRegion) -> np.ndarray:
    """``seg ∈ label_or_region`` (a region is the union of its labels)."""
    members = _members(label_or_region)
    if len(members) == 1:
        return seg == members[0]
    return np.isin(seg, members)


def _counts_generic(reference, prediction, label_or_region, ignore_mask) -> tuple[int, int, int, int]:
    mr = region_mask(reference, label_or_region)
    mp = region_mask(prediction, label_or_region)
    use = np.ones_like(mr) if ignore_mask is None else ~ignore_mask
    tp = int(np.count_nonzero(mr & mp & use))
    fp = int(np.count_nonzero(~mr & mp & use))
    fn = int(np.count_nonzero(mr & ~mp & use))
    tn = int(np.count_nonzero(~mr & ~mp & use))
    return tp, fp, fn, tn


def overlap_entry(tp: int, fp: int, fn: int, tn: int) -> dict:
    """nnU-Net's per-label dict: Dice/IoU are NaN when reference and prediction are both empty."""
    entry: dict = {}
    if tp + fp + fn == 0:
        entry["Dice"] = float("nan")
        entry["IoU"] = float("nan")
    else:
        # numpy float64 division, as nnU-Net (int64 counts) does
        entry["Dice"] = float(np.float64(2 * tp) / np.float64(2 * tp + fp + fn))
        entry["IoU"] = float(np.float64(tp) / np.float64(tp + fp + fn))
    entry.update(FP=fp, TP=tp, FN=fn, TN=tn, n_pred=fp + tp, n_ref=fn + tp)
    return entry


def compute_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    labels_or_regions: Sequence,
    ignore_label: int | None = None,
    spacing: Sequence[float] | None = None,
    metrics: Sequence[str] = OVERLAP_METRICS,
    nsd_tolerance_mm: float = 1.0,
) -> dict:
    """Metrics of one case, keyed like nnU-Net's summary (``{"1": {...}, "(1, 2)": {...}}``).

    ``reference``/``prediction``: label maps of the same shape (any integer or integer-valued
    float dtype). Voxels whose reference equals ``ignore_label`` are left out of every count.
    nnU-Net's fields are always computed; ``HD95``/``ASSD``/``NSD`` are added when named in
    ``metrics`` (they need ``spacing`` in array-axis order, default 1 mm; see
    :mod:`oxunet.evaluation.surface`).
    """
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} differs from prediction shape {prediction.shape}")
    labels = normalize_labels(labels_or_regions)
    unknown = [m for m in metrics if m not in OVERLAP_METRICS and m not in SURFACE_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {OVERLAP_METRICS + SURFACE_METRICS}")
    conf = confusion_matrix(reference, prediction)
    ignore_mask = None
    if conf is None and ignore_label is not None:
        ignore_mask = reference == ignore_label
    surface = [m for m in SURFACE_METRICS if m in metrics]
    if surface:
        from .surface import surface_metrics

        sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * reference.ndim
    out: dict = {}
    for r in labels:
        if conf is not None:
            counts = _counts_from_confusion(conf, r, ignore_label)
        else:
            counts = _counts_generic(reference, prediction, r, ignore_mask)
        entry = overlap_entry(*counts)
        if surface:
            ref_mask = region_mask(reference, r)
            pred_mask = region_mask(prediction, r)
            if ignore_label is not None:
                keep = reference != ignore_label
                ref_mask &= keep
                pred_mask &= keep
            values = surface_metrics(ref_mask, pred_mask, sp, nsd_tolerance_mm)
            entry.update({m: values[m] for m in surface})
        out[label_key(r)] = entry
    return out
