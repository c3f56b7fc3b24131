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

import math
import secrets
import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Union

import numpy as np

from ._guarded import core as _core
from ._validate import LABEL_DTYPES, array as _check_array, int_tuple
from .errors import KernelShapeError, KernelTypeError, KernelValueError

ClassKey = Union[int, tuple[int, ...]]
Box = list[list[int]]

__all__ = [
    "crop_and_pad",
    "foreground_flags",
    "num_class_samples",
    "sample_class_locations",
    "sample_patch_box",
    "sample_patch_boxes",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# ---------------------------------------------------------------------------------------
# argument checks, shared with the reference twins (oxunet.kernels.reference.sampling)
# ---------------------------------------------------------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_seed(seed, name: str = "seed"):
    """None, a non-negative integer below 2**64, or (where allowed by the caller) a Generator."""
    if seed is None:
        return None
    if not _is_int(seed):
        raise KernelTypeError(f"{name}: expected None or a non-negative integer, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise KernelValueError(f"{name}: must be in [0, 2**64), got {seed}")
    return seed


def _check_unit_interval(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.floating, np.integer)):
        raise KernelTypeError(f"{name}: expected a number in [0, 1], got {type(value).__name__}")
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise KernelValueError(f"{name}: must be in [0, 1], got {value}")
    return value


def _check_classes(classes) -> tuple[list[ClassKey], list[tuple[int, ...]]]:
    """(dict keys, label tuples): an int item → key ``int(c)``; a tuple/list → a region, key ``tuple(...)``."""
    if isinstance(classes, (str, bytes, Mapping)) or _is_int(classes):
        raise KernelTypeError(f"classes: expected a list of labels or label tuples, got {type(classes).__name__}")
    try:
        items = list(classes)
    except TypeError:
        raise KernelTypeError(f"classes: expected a list of labels or label tuples, got {type(classes).__name__}") from None
    keys: list[ClassKey] = []
    labels: list[tuple[int, ...]] = []
    for c in items:
        labs: tuple[int, ...]
        if _is_int(c):
            labs = (int(c),)
            key: ClassKey = labs[0]
        elif isinstance(c, (tuple, list, np.ndarray)):
            if isinstance(c, np.ndarray) and c.ndim != 1:
                raise KernelTypeError(f"classes: a region must be a flat sequence of labels, got an array of shape {c.shape}")
            if not all(_is_int(x) for x in c):
                raise KernelTypeError(f"classes: region {c!r} must contain only integer labels")
            labs = tuple(int(x) for x in c)
            key = labs
        else:
            raise KernelTypeError(f"classes: expected integer labels or tuples of labels, got {c!r}")
        if any(not _INT64_MIN <= v <= _INT64_MAX for v in labs):
            raise KernelValueError(f"classes: label out of the int64 range in {c!r}")
        keys.append(key)
        labels.append(labs)
    return keys, labels


def _check_class_locations_args(seg, classes, seed, min_num_samples, min_percent_coverage):
    seg = _check_array("seg", seg, LABEL_DTYPES)
    if seg.ndim < 1:
        raise KernelShapeError(f"seg: expected at least 1 dimension, got {seg.ndim} (shape {seg.shape})")
    keys, labels = _check_classes(classes)
    seed = _check_seed(seed)
    if not _is_int(min_num_samples) or int(min_num_samples) < 0:
        raise KernelValueError(f"min_num_samples: expected a non-negative integer, got {min_num_samples!r}")
    min_percent_coverage = _check_unit_interval("min_percent_coverage", min_percent_coverage)
    return seg, keys, labels, seed, int(min_num_samples), min_percent_coverage


def num_class_samples(n: int, min_num_samples: int = 10000, min_percent_coverage: float = 0.01) -> int:
    """nnU-Net's number of stored locations for a class of `n` voxels:
    ``max(min(min_num_samples, n), int(np.ceil(n * min_percent_coverage)))`` (capped at `n`)."""
    k = max(min(min_num_samples, n), int(np.ceil(n * min_percent_coverage)))
    return min(k, n)


def _normalise_box(box, ndim: int) -> list[tuple[int, int]]:
    if isinstance(box, np.ndarray):
        if box.ndim != 2 or box.shape[1] != 2:
            raise KernelShapeError(f"box: expected pairs [lb, ub] per axis, got an array of shape {box.shape}")
        if box.dtype.kind not in "iu":
            raise KernelTypeError(f"box: expected integer bounds, got dtype {box.dtype}")
        box = box.tolist()
    if isinstance(box, (str, bytes)):
        raise KernelTypeError(f"box: expected a sequence of [lb, ub] pairs, got {type(box).__name__}")
    try:
        rows = list(box)
    except TypeError:
        raise KernelTypeError(f"box: expected a sequence of [lb, ub] pairs, got {type(box).__name__}") from None
    out = []
    for r in rows:
        try:
            pair = tuple(r)
        except TypeError:
            raise KernelTypeError(f"box: expected [lb, ub] pairs, got {r!r}") from None
        if len(pair) != 2:
            raise KernelShapeError(f"box: expected [lb, ub] pairs, got {r!r}")
        lb, ub = pair
        if not (type(lb) is int and type(ub) is int):  # fast path for plain ints
            if not (_is_int(lb) and _is_int(ub)):
                raise KernelTypeError(f"box: bounds must be integers, got {r!r}")
            lb, ub = int(lb), int(ub)
        if ub < lb:
            raise KernelValueError(f"box: upper bound {ub} < lower bound {lb} in {r!r}")
        if not (_INT64_MIN <= lb and ub <= _INT64_MAX):
            raise KernelValueError(f"box: bounds out of the int64 range in {r!r}")
        out.append((lb, ub))
    if len(out) > ndim:
        raise KernelShapeError(f"box: has {len(out)} axes but the array only has {ndim} dimensions")
    return out


def _check_crop_args(array, box, pad_value, dtype):
    """Returns (array, box pairs, output dtype, pad value as a numpy scalar of that dtype)."""
    if not isinstance(array, np.ndarray) and not _is_blosc2(array):
        raise KernelTypeError(f"array: expected a numpy array (or a blosc2 NDArray), got {type(array).__name__}")
    if array.dtype.kind not in "biufc" or array.dtype.itemsize not in (1, 2, 4, 8):
        raise KernelTypeError(
            f"array: dtype {array.dtype} is not supported (expected a bool, integer, float16/32/64 or complex64 array)"
        )
    if array.ndim < 1:
        raise KernelShapeError(f"array: expected at least 1 dimension, got {array.ndim} (shape {array.shape})")
    pairs = _normalise_box(box, array.ndim)
    if dtype is None:
        out_dtype = array.dtype
    else:
        try:
            out_dtype = np.dtype(dtype)
        except TypeError:
            raise KernelTypeError(f"dtype: not a numpy dtype: {dtype!r}") from None
        if out_dtype.kind not in "biufc":
            raise KernelTypeError(f"dtype: {out_dtype} is not a numeric dtype")
    pad = _check_pad_value(pad_value, out_dtype)
    return array, pairs, out_dtype, pad


def _check_pad_value(pad_value, dtype: np.dtype):
    if isinstance(pad_value, np.ndarray) and pad_value.ndim == 0:
        pad_value = pad_value[()]
    kind = dtype.kind
    if kind == "c":
        if not isinstance(pad_value, (complex, Real, np.number, bool, np.bool_)):
            raise KernelTypeError(f"pad_value: expected a number, got {type(pad_value).__name__}")
        return np.array(pad_value, dtype=dtype)[()]
    if not isinstance(pad_value, (Real, np.integer, np.floating, bool, np.bool_)):
        raise KernelTypeError(f"pad_value: expected a real number, got {type(pad_value).__name__}")
    if kind == "f":
        return np.array(float(pad_value), dtype=dtype)[()]
    # bool / integer output: the value must be an integer the dtype can hold
    v = float(pad_value) if not isinstance(pad_value, (Integral, np.integer, bool, np.bool_)) else int(pad_value)
    if isinstance(v, float):
        if not (math.isfinite(v) and v.is_integer()):
            raise KernelValueError(f"pad_value: {pad_value!r} is not an integer, but the array is {dtype}")
        v = int(v)
    if kind == "b":
        lo, hi = 0, 1
    else:
        info = np.iinfo(dtype)
        lo, hi = int(info.min), int(info.max)
    if not lo <= v <= hi:
        raise KernelValueError(f"pad_value: {pad_value!r} does not fit the array's dtype {dtype} (range [{lo}, {hi}])")
    return np.array(v, dtype=dtype)[()]


def _is_blosc2(obj) -> bool:
    return type(obj).__module__.startswith("blosc2") and hasattr(obj, "shape") and hasattr(obj, "dtype")


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


def _check_box_args(shape, patch_size, need_to_pad):
    shape = int_tuple("shape", shape, minimum=1)
    if len(shape) == 0:
        raise KernelShapeError("shape: expected at least one spatial axis, got ()")
    patch_size = int_tuple("patch_size", patch_size, length=len(shape), minimum=1)
    if need_to_pad is None:
        need_to_pad = (0,) * len(shape)
    else:
        need_to_pad = int_tuple("need_to_pad", need_to_pad, length=len(shape), minimum=0)
    return shape, patch_size, need_to_pad


def _check_class_locations_map(class_locations, ndim: int) -> Mapping:
    if class_locations is None:
        return {}
    if not isinstance(class_locations, Mapping):
        raise KernelTypeError(f"class_locations: expected a dict (class -> locations) or None, got {type(class_locations).__name__}")
    for key, locs in class_locations.items():
        if isinstance(locs, np.ndarray):
            if locs.size == 0:
                continue
            if locs.ndim != 2 or locs.shape[1] not in (ndim, ndim + 1):
                raise KernelShapeError(
                    f"class_locations: entry {key!r} has shape {locs.shape}; expected (k, {ndim}) or (k, {ndim + 1}) "
                    f"(with the leading channel index)"
                )
            if locs.dtype.kind not in "iu":
                raise KernelTypeError(f"class_locations: entry {key!r} has dtype {locs.dtype}; expected integers")
        elif not hasattr(locs, "__len__") or not hasattr(locs, "__getitem__"):
            raise KernelTypeError(f"class_locations: entry {key!r} is a {type(locs).__name__}, not an array of voxels")
    return class_locations


def _annotated_key(class_locations: Mapping, has_ignore):
    """The ignore-label "annotated" key (nnU-Net: ``(-1, *all_labels)``), or None when the
    dataset has no ignore label. `has_ignore` None = auto: a tuple key that contains -1."""
    if has_ignore is not None and not isinstance(has_ignore, (bool, np.bool_)):
        raise KernelTypeError(f"has_ignore: expected None or a bool, got {type(has_ignore).__name__}")
    key = next((k for k in class_locations if isinstance(k, tuple) and -1 in k), None)
    if has_ignore is None:
        return key
    if not has_ignore:
        return None
    if key is None:
        raise KernelValueError("class_locations: has_ignore=True but there is no annotated key (a tuple containing -1)")
    return key


def _voxel(locs, i: int, ndim: int) -> list[int]:
    """Spatial coordinates of stored voxel `i` (dropping the leading channel index if present)."""
    row = locs[i]
    n = len(row)
    if n not in (ndim, ndim + 1):
        raise KernelShapeError(f"class_locations: a voxel has {n} coordinates; expected {ndim} or {ndim + 1}")
    return [int(v) for v in row[n - ndim :]]


def _as_generator(rng, name: str = "rng") -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(_check_seed(rng, name))


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


def sample_class_locations(
    seg: np.ndarray,
    classes: Sequence[Union[int, Sequence[int]]],
    seed: int | None = 1234,
    *,
    min_num_samples: int = 10000,
    min_percent_coverage: float = 0.01,
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
    seg, keys, labels, seed, mns, mpc = _check_class_locations_args(
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


#: a batch is a list of patches in memory: beyond this it is a mistake, not a batch
MAX_BATCH_SIZE = 1 << 20


def foreground_flags(
    batch_size: int,
    oversample_foreground_percent: float = 0.33,
    probabilistic: bool = False,
    rng: np.random.Generator | int | None = None,
) -> list[bool]:
    """Which samples of a batch must contain foreground.

    Deterministic (nnU-Net's default): sample ``j`` is forced iff
    ``j >= round(batch_size * (1 - p))``. Probabilistic
    (``nnUNetTrainer_probabilisticOversampling``): each sample independently with probability ``p``.
    """
    if not _is_int(batch_size) or not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
        raise KernelValueError(f"batch_size: expected an integer between 1 and {MAX_BATCH_SIZE}, got {batch_size!r}")
    p = _check_unit_interval("oversample_foreground_percent", oversample_foreground_percent)
    if probabilistic:
        g = _as_generator(rng)
        return [bool(g.uniform() < p) for _ in range(int(batch_size))]
    first_forced = round(int(batch_size) * (1 - p))
    return [j >= first_forced for j in range(int(batch_size))]


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
        voxel = _voxel(locs, int(g.integers(len(locs))), dim)
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
    shape, patch, ntp = _check_box_args(shape, patch_size, need_to_pad)
    locs = _check_class_locations_map(class_locations, len(shape))
    annotated = _annotated_key(locs, has_ignore)
    if not isinstance(force_fg, (bool, np.bool_)):
        raise KernelTypeError(f"force_fg: expected a bool, got {type(force_fg).__name__}")
    return _box_one(shape, patch, ntp, locs, annotated, bool(force_fg), _as_generator(rng))


def sample_patch_boxes(
    shape: Sequence[int],
    patch_size: Sequence[int],
    batch_size: int,
    class_locations: Mapping[Any, Any] | None,
    oversample_foreground_percent: float = 0.33,
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
    shape, patch, ntp = _check_box_args(shape, patch_size, need_to_pad)
    locs = _check_class_locations_map(class_locations, len(shape))
    annotated = _annotated_key(locs, has_ignore)
    g = _as_generator(seed, "seed")
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
    array, pairs, out_dtype, pad = _check_crop_args(array, box, pad_value, dtype)
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
