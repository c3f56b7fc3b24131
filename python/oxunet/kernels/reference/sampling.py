"""Pure NumPy twins of :mod:`oxunet.kernels.sampling` (same signatures, same checks).

`sample_class_locations` draws with numpy's Generator, so for a given seed it picks other
voxels than the Rust kernel, with the same counts and the same distribution.
`sample_patch_boxes` / `sample_patch_box` are an independent, literal transcription of
``nnUNetDataLoader.get_bbox`` that consumes the Generator in the same order as the public
functions, so both return identical boxes for the same seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

from ...constants import CLASS_LOCATIONS_MIN_COVERAGE, CLASS_LOCATIONS_MIN_SAMPLES, OVERSAMPLE_FOREGROUND_PERCENT
from .._validate import (
    ClassKey,
    annotated_key,
    as_generator,
    check_batch_size,
    check_box_args,
    check_class_locations_args,
    check_class_locations_map,
    check_crop_args,
    check_unit_interval,
    voxel,
)
from ..errors import KernelTypeError

__all__ = ["crop_and_pad", "foreground_flags", "num_class_samples", "sample_class_locations", "sample_patch_box",
           "sample_patch_boxes"]

Box = list[list[int]]


# ---------------------------------------------------------------------------------------
# pure-Python pieces shared with oxunet.kernels.sampling (which re-exports the public two)
# ---------------------------------------------------------------------------------------


def num_class_samples(n: int, min_num_samples: int = CLASS_LOCATIONS_MIN_SAMPLES, min_percent_coverage: float = CLASS_LOCATIONS_MIN_COVERAGE) -> int:
    """nnU-Net's number of stored locations for a class of `n` voxels:
    ``max(min(min_num_samples, n), int(np.ceil(n * min_percent_coverage)))`` (capped at `n`)."""
    k = max(min(min_num_samples, n), int(np.ceil(n * min_percent_coverage)))
    return min(k, n)


def _read_region(array, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """For a non-numpy source (blosc2): read only the in-image part of the box (decompressing
    only the chunks it touches) and return it with the box relative to that part."""
    lead = array.ndim - len(pairs)
    slices = [slice(None)] * lead
    shifted = []
    for i, (lb, ub) in enumerate(pairs):
        n = array.shape[lead + i]
        lo, hi = max(lb, 0), min(ub, n)
        slices.append(slice(lo, hi))
        shifted.append((lb - lo, ub - lo))
    return np.asarray(array[tuple(slices)]), shifted


def _box_fully_outside(shape: tuple[int, ...], pairs: list[tuple[int, int]]) -> bool:
    lead = len(shape) - len(pairs)
    return any(ub <= 0 or lb >= shape[lead + i] for i, (lb, ub) in enumerate(pairs))


def _target_shape(shape: tuple[int, ...], pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    lead = len(shape) - len(pairs)
    return tuple(shape[:lead]) + tuple(ub - lb for lb, ub in pairs)


def foreground_flags(
    batch_size: int,
    oversample_foreground_percent: float = OVERSAMPLE_FOREGROUND_PERCENT,
    probabilistic: bool = False,
    rng: np.random.Generator | int | None = None,
) -> list[bool]:
    """Which samples of a batch must contain foreground.

    Deterministic (nnU-Net's default): sample ``j`` is forced iff
    ``j >= round(batch_size * (1 - p))``. Probabilistic
    (``nnUNetTrainer_probabilisticOversampling``): each sample independently with probability ``p``.
    """
    batch_size = check_batch_size(batch_size)
    p = check_unit_interval("oversample_foreground_percent", oversample_foreground_percent)
    if probabilistic:
        g = as_generator(rng)
        return [bool(g.uniform() < p) for _ in range(batch_size)]
    first_forced = round(batch_size * (1 - p))
    return [j >= first_forced for j in range(batch_size)]


# ---------------------------------------------------------------------------------------
# the twins
# ---------------------------------------------------------------------------------------


def sample_class_locations(
    seg: np.ndarray,
    classes: Sequence[Union[int, Sequence[int]]],
    seed: int | None = 1234,
    *,
    min_num_samples: int = CLASS_LOCATIONS_MIN_SAMPLES,
    min_percent_coverage: float = CLASS_LOCATIONS_MIN_COVERAGE,
) -> dict[ClassKey, np.ndarray]:
    """Reference twin of :func:`oxunet.kernels.sampling.sample_class_locations`."""
    seg, keys, labels, seed, mns, mpc = check_class_locations_args(
        seg, classes, seed, min_num_samples, min_percent_coverage
    )
    rng = np.random.default_rng(seed)
    flat = seg.ravel()
    out: dict[ClassKey, np.ndarray] = {}
    for key, labs in zip(keys, labels):
        if labs:
            idx = np.flatnonzero(np.isin(flat, np.asarray(labs, dtype=np.int64)))
        else:
            idx = np.zeros(0, dtype=np.intp)
        k = num_class_samples(idx.size, mns, mpc)
        picked = idx[np.sort(rng.choice(idx.size, size=k, replace=False))] if k else idx[:0]
        coords = np.unravel_index(picked, seg.shape)
        out[key] = np.stack(coords, axis=1).astype(np.int64) if k else np.zeros((0, seg.ndim), dtype=np.int64)
    return out


def _get_bbox(shape, patch, need_to_pad_base, class_locations, annotated, force_fg, rng) -> Box:
    # Transcription of nnUNetDataLoader.get_bbox (with has_ignore == (annotated is not None)).
    need_to_pad = list(need_to_pad_base)
    dim = len(shape)
    for d in range(dim):
        if need_to_pad[d] + shape[d] < patch[d]:
            need_to_pad[d] = patch[d] - shape[d]
    lbs = [-need_to_pad[i] // 2 for i in range(dim)]
    ubs = [shape[i] + need_to_pad[i] // 2 + need_to_pad[i] % 2 - patch[i] for i in range(dim)]

    if not force_fg and annotated is None:
        bbox_lbs = [int(rng.integers(lbs[i], ubs[i] + 1)) for i in range(dim)]
    else:
        if not force_fg:
            selected_class = annotated
            if len(class_locations[selected_class]) == 0:
                warnings.warn("class_locations: no annotated voxels in this case, using a random patch", stacklevel=3)
                selected_class = None
        else:
            eligible = [i for i in class_locations.keys() if len(class_locations[i]) > 0]
            tmp = [i == annotated if isinstance(i, tuple) else False for i in eligible]
            if any(tmp) and len(eligible) > 1:
                eligible.pop(int(np.where(tmp)[0][0]))
            selected_class = eligible[int(rng.integers(len(eligible)))] if eligible else None
        if selected_class is not None:
            voxels = class_locations[selected_class]
            v = voxel(voxels, int(rng.integers(len(voxels))), dim)
            bbox_lbs = [max(lbs[i], v[i] - patch[i] // 2) for i in range(dim)]
        else:
            bbox_lbs = [int(rng.integers(lbs[i], ubs[i] + 1)) for i in range(dim)]
    return [[bbox_lbs[i], bbox_lbs[i] + patch[i]] for i in range(dim)]


def sample_patch_box(
    shape: Sequence[int],
    patch_size: Sequence[int],
    class_locations: Mapping[Any, Any] | None,
    force_fg: bool,
    need_to_pad: Sequence[int] | None = None,
    rng: np.random.Generator | int | None = None,
    *,
    has_ignore: bool | None = None,
) -> Box:
    """Reference twin of :func:`oxunet.kernels.sampling.sample_patch_box`."""
    shape, patch, ntp = check_box_args(shape, patch_size, need_to_pad)
    locs = check_class_locations_map(class_locations, len(shape))
    annotated = annotated_key(locs, has_ignore)
    if not isinstance(force_fg, (bool, np.bool_)):
        raise KernelTypeError(f"force_fg: expected a bool, got {type(force_fg).__name__}")
    return _get_bbox(shape, patch, ntp, locs, annotated, bool(force_fg), as_generator(rng))


def sample_patch_boxes(
    shape: Sequence[int],
    patch_size: Sequence[int],
    batch_size: int,
    class_locations: Mapping[Any, Any] | None,
    oversample_foreground_percent: float = OVERSAMPLE_FOREGROUND_PERCENT,
    need_to_pad: Sequence[int] | None = None,
    seed: np.random.Generator | int | None = None,
    *,
    probabilistic_oversampling: bool = False,
    has_ignore: bool | None = None,
) -> list[Box]:
    """Reference twin of :func:`oxunet.kernels.sampling.sample_patch_boxes`."""
    shape, patch, ntp = check_box_args(shape, patch_size, need_to_pad)
    locs = check_class_locations_map(class_locations, len(shape))
    annotated = annotated_key(locs, has_ignore)
    rng = as_generator(seed, "seed")
    flags = foreground_flags(batch_size, oversample_foreground_percent, probabilistic_oversampling, rng)
    return [_get_bbox(shape, patch, ntp, locs, annotated, f, rng) for f in flags]


def crop_and_pad(array: np.ndarray, box, pad_value=0, *, dtype=None, parallel: bool = False) -> np.ndarray:
    """Reference twin of :func:`oxunet.kernels.sampling.crop_and_pad` (slice + ``np.pad``;
    `parallel` is accepted and ignored)."""
    array, pairs, out_dtype, pad = check_crop_args(array, box, pad_value, dtype)
    target = _target_shape(array.shape, pairs)
    if _box_fully_outside(array.shape, pairs):
        return np.zeros(target, dtype=out_dtype)
    if not isinstance(array, np.ndarray):
        array, pairs = _read_region(array, pairs)
    lead = array.ndim - len(pairs)
    slices = [slice(None)] * lead
    padding = [(0, 0)] * lead
    for i, (lb, ub) in enumerate(pairs):
        n = array.shape[lead + i]
        slices.append(slice(max(lb, 0), min(ub, n)))
        padding.append((max(0, -lb), max(0, ub - n)))
    cropped = np.asarray(array[tuple(slices)]).astype(out_dtype, copy=True)
    if any(p != (0, 0) for p in padding):
        cropped = np.pad(cropped, padding, mode="constant", constant_values=pad)
    return np.ascontiguousarray(cropped)
