"""Patch sampling for training, as in nnU-Net v2 (spec §8 class locations, §9 data loading).

* :func:`sample_class_locations` — the voxels stored per class at preprocessing time for
  foreground oversampling (nnU-Net's ``DefaultPreprocessor._sample_foreground_locations``).
* :func:`sample_patch_boxes` / :func:`sample_patch_box` — the patch boxes of a batch
  (``nnUNetDataLoader.get_bbox`` and its oversampling rule).
* :func:`crop_and_pad` — cut a box out of a (memory-mapped) array, padding what lies outside
  (``acvl_utils.crop_and_pad_nd``).

The first and last run in Rust. Box sampling stays in Python on purpose: it is a dozen
integer operations per sample, so a Rust call would cost more in argument conversion than
it could save, and keeping numpy's ``Generator`` lets a trainer share one RNG with the rest
of its loader.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

from ..constants import CLASS_LOCATIONS_MIN_COVERAGE, CLASS_LOCATIONS_MIN_SAMPLES, OVERSAMPLE_FOREGROUND_PERCENT
from . import _validate
from ._guarded import core as _core
from ._validate import ClassKey
from .errors import KernelTypeError
# pure-Python pieces the Rust-backed functions share with their twins
from .reference.sampling import Box, _box_fully_outside, _read_region, _target_shape, foreground_flags, num_class_samples

__all__ = [
    "crop_and_pad",
    "foreground_flags",
    "num_class_samples",
    "sample_class_locations",
    "sample_patch_box",
    "sample_patch_boxes",
]

# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


def sample_class_locations(
    seg: np.ndarray,
    classes: Sequence[Union[int, Sequence[int]]],
    seed: int | None = 1234,
    *,
    min_num_samples: int = CLASS_LOCATIONS_MIN_SAMPLES,
    min_percent_coverage: float = CLASS_LOCATIONS_MIN_COVERAGE,
) -> dict[ClassKey, np.ndarray]:
    """Voxel locations per class for foreground oversampling (nnU-Net's class_locations).

    Parameters
    ----------
    seg : ndarray of int8, int16, int32, uint8 or uint16, any ndim >= 1
        The segmentation. With its channel axis, ``(1, x, y, z)``, rows are ``(0, x, y, z)``
        as nnU-Net stores them; without, rows are ``(x, y, z)``.
    classes : list of int or tuple of int
        One key per item: a label, or a region (tuple of labels; a voxel counts if it has
        any of them). nnU-Net's ignore-label key ``(-1, 0, 1, ..., L)`` is just a region.
    seed : int or None
        Random seed (None: fresh entropy). Each class draws from its own stream of the seed.
    min_num_samples, min_percent_coverage
        nnU-Net's count rule: a class with ``n`` voxels keeps
        ``k = max(min(min_num_samples, n), ceil(n * min_percent_coverage))`` of them.

    Returns
    -------
    dict
        ``{key: int64 array (k, seg.ndim)}``, keys as ``int(c)`` / ``tuple(c)``; ``k`` distinct
        voxels drawn uniformly without replacement, rows in raster (C) order; an absent class
        gives an empty ``(0, seg.ndim)`` array.
    """
    seg, keys, labels, seed, mns, mpc = _validate.check_class_locations_args(
        seg, classes, seed, min_num_samples, min_percent_coverage
    )
    if seed is None:
        seed = secrets.randbits(64)
    flat: list[int] = []
    offsets = [0]
    for labs in labels:
        flat.extend(labs)
        offsets.append(len(flat))
    arrays = _core.sample_class_locations(seg, flat, offsets, seed, mns, mpc)
    return dict(zip(keys, arrays))


def _box_one(shape, patch, ntp_base, class_locations, annotated, force_fg: bool, g: np.random.Generator) -> Box:
    dim = len(shape)
    ntp = [patch[d] - shape[d] if ntp_base[d] + shape[d] < patch[d] else ntp_base[d] for d in range(dim)]
    lbs = [-ntp[d] // 2 for d in range(dim)]
    ubs = [shape[d] + ntp[d] // 2 + ntp[d] % 2 - patch[d] for d in range(dim)]

    selected = None
    if force_fg:
        eligible = [k for k in class_locations if len(class_locations[k]) > 0]
        if annotated is not None and annotated in eligible and len(eligible) > 1:
            eligible.remove(annotated)
        if eligible:
            selected = eligible[int(g.integers(len(eligible)))]
    elif annotated is not None:
        if len(class_locations[annotated]) == 0:
            warnings.warn("class_locations: no annotated voxels in this case, using a random patch", stacklevel=3)
        else:
            selected = annotated

    if selected is not None:
        locs = class_locations[selected]
        voxel = _validate.voxel(locs, int(g.integers(len(locs))), dim)
        corner = [max(lbs[d], voxel[d] - patch[d] // 2) for d in range(dim)]
    else:
        corner = [int(g.integers(lbs[d], ubs[d] + 1)) for d in range(dim)]
    return [[c, c + p] for c, p in zip(corner, patch)]


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
    """One patch box (nnU-Net's ``nnUNetDataLoader.get_bbox``); see :func:`sample_patch_boxes`.

    `rng` is a numpy Generator (shared with the caller's loader), a seed, or None.
    Returns ``[[lb0, ub0], [lb1, ub1], ...]`` (half-open, ``ub - lb = patch_size``).
    """
    shape, patch, ntp = _validate.check_box_args(shape, patch_size, need_to_pad)
    locs = _validate.check_class_locations_map(class_locations, len(shape))
    annotated = _validate.annotated_key(locs, has_ignore)
    if not isinstance(force_fg, (bool, np.bool_)):
        raise KernelTypeError(f"force_fg: expected a bool, got {type(force_fg).__name__}")
    return _box_one(shape, patch, ntp, locs, annotated, bool(force_fg), _validate.as_generator(rng))


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
    """Patch boxes of one batch drawn from a case, following nnU-Net's data loader.

    Parameters
    ----------
    shape : spatial shape of the case (``data.shape[1:]``).
    patch_size : the (initial, enlarged) patch size, one value per axis. A 2D configuration
        on 3D-stored data passes ``(1, y, z)``.
    batch_size : number of boxes.
    class_locations : ``{class: (k, ndim or ndim + 1) voxels}`` as from
        :func:`sample_class_locations` (rows with or without the leading channel index), or None.
    oversample_foreground_percent : share of forced-foreground samples; sample ``j`` is
        forced iff ``j >= round(batch_size * (1 - p))``.
    need_to_pad : per-axis padding allowance (nnU-Net: initial − final patch size; default 0).
        Where ``shape + need_to_pad < patch_size``, it becomes ``patch_size − shape``.
    seed : None (fresh entropy), an int (deterministic) or a numpy Generator.
    probabilistic_oversampling : force each sample with probability ``p`` instead.
    has_ignore : the dataset has an ignore label (None: auto, when a tuple key containing −1
        is present). Then unforced samples are centred on an annotated voxel, and the
        annotated key is never picked for a forced sample if a real class is present.

    Returns
    -------
    list of boxes ``[[lb, ub], ...]`` (half-open). Corners: random uniform in
    ``[-need_to_pad // 2, shape + need_to_pad // 2 + need_to_pad % 2 - patch]``; forced:
    ``max(lb, voxel - patch // 2)`` for a uniformly chosen class with locations and one of
    its voxels (no upper clamp: the patch may overhang and is padded); random if the case
    has no foreground.
    """
    shape, patch, ntp = _validate.check_box_args(shape, patch_size, need_to_pad)
    locs = _validate.check_class_locations_map(class_locations, len(shape))
    annotated = _validate.annotated_key(locs, has_ignore)
    g = _validate.as_generator(seed, "seed")
    flags = foreground_flags(batch_size, oversample_foreground_percent, probabilistic_oversampling, g)
    return [_box_one(shape, patch, ntp, locs, annotated, f, g) for f in flags]


def crop_and_pad(array: np.ndarray, box, pad_value=0, *, dtype=None, parallel: bool = False) -> np.ndarray:
    """Crop the half-open `box` out of `array`, padding the part outside it with `pad_value`.

    Semantics of ``acvl_utils.crop_and_pad_nd`` (constant mode): `box` is ``[[lb, ub], ...]``
    for the trailing ``len(box)`` axes, leading axes (channels) are kept whole; the result
    has shape ``leading + (ub - lb, ...)``. Like acvl, a box entirely outside the array on
    any axis yields zeros (not `pad_value`).

    Parameters
    ----------
    array : ndarray, any ndim >= 1, bool/integer/float16/32/64/complex64; read-only and
        memory-mapped arrays are fine (only the box's region is read). A blosc2 NDArray
        (nnU-Net >= 2.6 storage) is accepted too: only the in-image part is decompressed.
    box : sequence of ``[lb, ub]`` integer pairs (or an int array of shape (d, 2)).
    pad_value : value of the out-of-image part (nnU-Net: 0 for data, -1 for seg); must be
        representable in the output dtype.
    dtype : optional output dtype (acvl's ``cast_cropped_to``), e.g. ``np.int16`` for segs.
    parallel : copy with oxunet's thread pool. Off by default: a patch copy is memory-bound,
        and in a data loader with many worker processes handing the copy to pool threads
        (which must first get a core) costs more than it gains. The copy always runs
        without the GIL for large patches, so threaded loaders overlap.

    Returns
    -------
    A new C-contiguous array.
    """
    array, pairs, out_dtype, pad = _validate.check_crop_args(array, box, pad_value, dtype)
    target = _target_shape(array.shape, pairs)
    if _box_fully_outside(array.shape, pairs):
        return np.zeros(target, dtype=out_dtype)
    if not isinstance(array, np.ndarray):
        array, pairs = _read_region(array, pairs)
    if out_dtype != array.dtype:
        # Casting crop: let numpy convert the in-image part directly into the output.
        out = np.full(target, pad, dtype=out_dtype)
        lead = array.ndim - len(pairs)
        src, dst = [slice(None)] * lead, [slice(None)] * lead
        for i, (lb, ub) in enumerate(pairs):
            n = array.shape[lead + i]
            lo, hi = max(lb, 0), min(ub, n)
            src.append(slice(lo, hi))
            dst.append(slice(lo - lb, hi - lb))
        out[tuple(dst)] = array[tuple(src)]
        return out
    bits = np.dtype(f"u{array.dtype.itemsize}")
    pad_bits = int(np.array(pad, dtype=array.dtype).view(bits))
    lbs = [lb for lb, _ in pairs]
    ubs = [ub for _, ub in pairs]
    out = np.empty(target, dtype=bits)  # numpy's allocator: huge pages for large patches
    _core.crop_and_pad(array.view(bits), lbs, ubs, pad_bits, out, bool(parallel))
    return out.view(array.dtype)
