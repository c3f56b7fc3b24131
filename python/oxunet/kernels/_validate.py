"""Every argument check of the kernels, in one place: the Rust-backed wrappers
(:mod:`oxunet.kernels`) and their NumPy twins (:mod:`oxunet.kernels.reference`) both call these,
so both reject the same bad input with the same exception and the same message.

Importable without the Rust extension and without torch (tensors are recognised duck-typed).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Union

import numpy as np

from .errors import KernelShapeError, KernelTypeError, KernelValueError

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
LABEL_DTYPES = (np.int8, np.int16, np.int32, np.uint8, np.uint16)
_INT_LIMIT = 2**62


def array(name: str, value, dtypes: Sequence[type] | None = None, ndim: Iterable[int] | None = None) -> np.ndarray:
    """Checks that `value` is a numpy array of one of `dtypes` with one of the `ndim`s."""
    if not isinstance(value, np.ndarray):
        raise KernelTypeError(f"{name}: expected a numpy array, got {type(value).__name__}")
    if dtypes is not None and value.dtype.type not in dtypes:
        allowed = ", ".join(np.dtype(d).name for d in dtypes)
        raise KernelTypeError(f"{name}: dtype {value.dtype} is not supported (expected one of {allowed})")
    if ndim is not None:
        ndim = tuple(ndim)
        if value.ndim not in ndim:
            want = " or ".join(str(n) for n in ndim)
            raise KernelShapeError(f"{name}: expected {want} dimensions, got {value.ndim} (shape {value.shape})")
    return value


def int_tuple(name: str, value, length: int | None = None, minimum: int | None = None) -> tuple[int, ...]:
    """A sequence of integers (numpy integers accepted), optionally of a given length and lower bound."""
    try:
        items = tuple(value)
    except TypeError:
        raise KernelTypeError(f"{name}: expected a sequence of integers, got {type(value).__name__}") from None
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                v = int(v)
            else:
                raise KernelTypeError(f"{name}: expected integers, got {v!r}")
        out.append(int(v))
    # beyond int64 no kernel argument makes sense, and the bindings could not even convert it
    if any(abs(v) > _INT_LIMIT for v in out):
        raise KernelValueError(f"{name}: values must lie within +-2**62, got {tuple(out)}")
    if length is not None and len(out) != length:
        raise KernelShapeError(f"{name}: expected {length} values, got {len(out)} ({tuple(out)})")
    if minimum is not None and any(v < minimum for v in out):
        raise KernelValueError(f"{name}: every value must be >= {minimum}, got {tuple(out)}")
    return tuple(out)


def spacing(name: str, value, length: int) -> tuple[float, ...]:
    """A positive, finite spacing of `length` values."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise KernelTypeError(f"{name}: expected a sequence of {length} numbers, got {value!r}") from None
    if len(out) != length:
        raise KernelShapeError(f"{name}: expected {length} values, got {len(out)} ({out})")
    if not all(np.isfinite(v) and v > 0 for v in out):
        raise KernelValueError(f"{name}: every spacing must be positive and finite, got {out}")
    return out


def is_int(v) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


# ----------------------------------------------------------------------------------------------
# resampling (resample_data / resample_seg)

ORDERS = (0, 1, 3)


def as_numpy(value):
    """Torch tensors (duck-typed, torch is never imported here) become numpy arrays, as nnU-Net does."""
    if type(value).__module__.split(".")[0] == "torch":
        return value.detach().cpu().numpy()
    return value


def check_order(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise KernelTypeError(f"{name}: expected an integer spline order (0, 1 or 3), got {value!r}")
    if int(value) not in ORDERS:
        raise KernelValueError(f"{name}: spline order must be 0, 1 or 3, got {int(value)}")
    return int(value)


def check_force(value) -> bool | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise KernelTypeError(f"force_separate_z: expected None, True or False, got {value!r}")


def check_resample_args(name: str, arr, dtypes, new_shape, current_spacing, new_spacing, order, order_z,
                        force_separate_z):
    """Validates the arguments of resample_data / resample_seg (`name` is 'data' or 'seg').

    Returns ``(arr, new_shape, current_spacing, new_spacing, order, order_z, force_separate_z)``
    normalised (tuples of int / float, ints, bool or None)."""
    arr = array(name, as_numpy(arr), dtypes, ndim=(3, 4))
    nsp = arr.ndim - 1
    if any(s == 0 for s in arr.shape[1:]):
        raise KernelShapeError(f"{name}: every spatial axis needs at least one voxel, got shape {arr.shape}")
    new_shape = int_tuple("new_shape", new_shape, length=nsp, minimum=1)
    current_spacing = spacing("current_spacing", current_spacing, nsp)
    new_spacing = spacing("new_spacing", new_spacing, nsp)
    order = check_order("order", order)
    order_z = check_order("order_z", order_z)
    force_separate_z = check_force(force_separate_z)
    return arr, new_shape, current_spacing, new_spacing, order, order_z, force_separate_z


def check_band_args(band, first_plane, depth, planes, new_shape, current_spacing, new_spacing, order, order_z,
                    force_separate_z):
    """Validates the arguments of resample_data_band (shared with the reference twin); returns
    them normalised: ``(band, first_plane, depth, (o0, o1), new_shape, cs, ns, order, order_z, force)``."""
    band = array("band", as_numpy(band), FLOAT_DTYPES, ndim=(4,))
    first_plane = int_tuple("first_plane", [first_plane], length=1, minimum=0)[0]
    depth = int_tuple("depth", [depth], length=1, minimum=1)[0]
    if band.shape[1] == 0 or first_plane + band.shape[1] > depth:
        raise KernelValueError(f"first_plane: a band of {band.shape[1]} planes from plane {first_plane} "
                               f"does not fit a depth of {depth}")
    if any(s == 0 for s in band.shape[2:]):
        raise KernelShapeError(f"band: every spatial axis needs at least one voxel, got shape {band.shape}")
    new_shape = int_tuple("new_shape", new_shape, length=3, minimum=1)
    o0, o1 = int_tuple("planes", planes, length=2, minimum=0)
    if not o0 < o1 <= new_shape[0]:
        raise KernelValueError(f"planes: expected 0 <= o0 < o1 <= {new_shape[0]}, got {(o0, o1)}")
    cs = spacing("current_spacing", current_spacing, 3)
    ns = spacing("new_spacing", new_spacing, 3)
    order = check_order("order", order)
    order_z = check_order("order_z", order_z)
    force = check_force(force_separate_z)
    return band, first_plane, depth, (o0, o1), new_shape, cs, ns, order, order_z, force


def check_band_covers(deps, why: str, band_planes: int, first_plane: int, planes: tuple[int, int]) -> None:
    """Raises unless bands are exact for the geometry (`deps` not None) and the band holds every
    input plane that output `planes` read."""
    if deps is None:
        raise KernelValueError(f"order: no exact band resampling: {why}")
    o0, o1 = planes
    lo, hi = int(deps[o0:o1, 0].min()), int(deps[o0:o1, 1].max())
    if lo < first_plane or hi >= first_plane + band_planes:
        raise KernelValueError(f"band: output planes {o0}..{o1} read input planes {lo}..={hi}, "
                               f"the band holds {first_plane}..{first_plane + band_planes}")


# ----------------------------------------------------------------------------------------------
# cropping (crop_to_nonzero); label values shared with the components filters


def native(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def label_value(name: str, value, dtype) -> int:
    """An integer (not bool) that fits `dtype`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise KernelTypeError(f"{name}: expected an integer, got {value!r}")
    info = np.iinfo(dtype)
    if not info.min <= int(value) <= info.max:
        raise KernelValueError(
            f"{name}: {int(value)} does not fit the seg dtype {np.dtype(dtype).name} ([{info.min}, {info.max}])"
        )
    return int(value)


def check_crop_to_nonzero_args(data, seg, nonzero_label) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Validates the arguments of :func:`crop_to_nonzero` (shared with the reference twin)."""
    data = array("data", data, FLOAT_DTYPES, ndim=(3, 4))
    if 0 in data.shape:
        raise KernelShapeError(f"data: every axis must have at least one element, got shape {data.shape}")
    if seg is not None:
        seg = array("seg", seg, LABEL_DTYPES, ndim=(data.ndim,))
        if seg.shape[1:] != data.shape[1:] or seg.shape[0] < 1:
            raise KernelShapeError(
                f"seg: expected shape (k, {', '.join(map(str, data.shape[1:]))}) with k >= 1 to match data "
                f"{data.shape}, got {seg.shape}"
            )
        seg = native(seg)
    nonzero_label = label_value("nonzero_label", nonzero_label, seg.dtype if seg is not None else np.int8)
    return native(data), seg, nonzero_label


# ----------------------------------------------------------------------------------------------
# connected components

MASK_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
_CONNECTIVITIES = {2: (4, 8), 3: (6, 18, 26)}

LabelsOrRegions = int | tuple[int, ...] | Sequence[int | tuple[int, ...]]


def check_mask(mask) -> np.ndarray:
    """A 2D/3D bool or integer array (nonzero = foreground)."""
    return native(array("mask", mask, MASK_DTYPES, ndim=(2, 3)))


def check_connectivity(connectivity, ndim: int) -> int:
    """Neighbour count: None (full: 8 in 2D, 26 in 3D), 4/8 in 2D, 6/18/26 in 3D."""
    allowed = _CONNECTIVITIES[ndim]
    if connectivity is None:
        return allowed[-1]
    if isinstance(connectivity, (bool, np.bool_)) or not isinstance(connectivity, (int, np.integer)):
        raise KernelTypeError(f"connectivity: expected None or an integer, got {connectivity!r}")
    if int(connectivity) not in allowed:
        want = " or ".join(map(str, allowed))
        raise KernelValueError(f"connectivity: must be {want} for a {ndim}D mask, got {int(connectivity)}")
    return int(connectivity)


def check_seg(seg) -> np.ndarray:
    """A 2D/3D label map of one of the label dtypes."""
    return native(array("seg", seg, LABEL_DTYPES, ndim=(2, 3)))


def check_labels(labels_or_regions, dtype) -> list[int]:
    """The label values whose union forms the mask, as nnU-Net reads `labels_or_regions`: an
    int, a tuple of ints (a region), or a list of ints and tuples. Values that do not fit
    `dtype` match nothing (like numpy's ``==``) and are dropped."""
    items = labels_or_regions if isinstance(labels_or_regions, list) else [labels_or_regions]
    values: list[int] = []
    for item in items:
        group = item if isinstance(item, tuple) else (item,)
        for v in group:
            if not is_int(v):
                raise KernelTypeError(
                    "labels_or_regions: expected an int, a tuple of ints or a list of ints and tuples, "
                    f"got {labels_or_regions!r}"
                )
            values.append(int(v))
    info = np.iinfo(dtype)
    return sorted({v for v in values if info.min <= v <= info.max})


def check_min_size(min_size) -> int:
    if not is_int(min_size):
        raise KernelTypeError(f"min_size: expected an integer, got {min_size!r}")
    if int(min_size) < 0:
        raise KernelValueError(f"min_size: must be >= 0, got {int(min_size)}")
    return int(min_size)


# ----------------------------------------------------------------------------------------------
# sampling (class locations, patch boxes, crop_and_pad)

ClassKey = Union[int, tuple[int, ...]]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: a batch is a list of patches in memory: beyond this it is a mistake, not a batch
MAX_BATCH_SIZE = 1 << 20


def check_seed(seed, name: str = "seed"):
    """None, a non-negative integer below 2**64, or (where allowed by the caller) a Generator."""
    if seed is None:
        return None
    if not is_int(seed):
        raise KernelTypeError(f"{name}: expected None or a non-negative integer, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise KernelValueError(f"{name}: must be in [0, 2**64), got {seed}")
    return seed


def check_unit_interval(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.floating, np.integer)):
        raise KernelTypeError(f"{name}: expected a number in [0, 1], got {type(value).__name__}")
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise KernelValueError(f"{name}: must be in [0, 1], got {value}")
    return value


def check_classes(classes) -> tuple[list[ClassKey], list[tuple[int, ...]]]:
    """(dict keys, label tuples): an int item → key ``int(c)``; a tuple/list → a region, key ``tuple(...)``."""
    if isinstance(classes, (str, bytes, Mapping)) or is_int(classes):
        raise KernelTypeError(f"classes: expected a list of labels or label tuples, got {type(classes).__name__}")
    try:
        items = list(classes)
    except TypeError:
        raise KernelTypeError(f"classes: expected a list of labels or label tuples, got {type(classes).__name__}") from None
    keys: list[ClassKey] = []
    labels: list[tuple[int, ...]] = []
    for c in items:
        labs: tuple[int, ...]
        if is_int(c):
            labs = (int(c),)
            key: ClassKey = labs[0]
        elif isinstance(c, (tuple, list, np.ndarray)):
            if isinstance(c, np.ndarray) and c.ndim != 1:
                raise KernelTypeError(f"classes: a region must be a flat sequence of labels, got an array of shape {c.shape}")
            if not all(is_int(x) for x in c):
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


def check_class_locations_args(seg, classes, seed, min_num_samples, min_percent_coverage):
    seg = array("seg", seg, LABEL_DTYPES)
    if seg.ndim < 1:
        raise KernelShapeError(f"seg: expected at least 1 dimension, got {seg.ndim} (shape {seg.shape})")
    keys, labels = check_classes(classes)
    seed = check_seed(seed)
    if not is_int(min_num_samples) or int(min_num_samples) < 0:
        raise KernelValueError(f"min_num_samples: expected a non-negative integer, got {min_num_samples!r}")
    min_percent_coverage = check_unit_interval("min_percent_coverage", min_percent_coverage)
    return seg, keys, labels, seed, int(min_num_samples), min_percent_coverage


def normalise_box(box, ndim: int) -> list[tuple[int, int]]:
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
            if not (is_int(lb) and is_int(ub)):
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


def check_crop_args(array, box, pad_value, dtype):
    """Returns (array, box pairs, output dtype, pad value as a numpy scalar of that dtype)."""
    if not isinstance(array, np.ndarray) and not is_blosc2(array):
        raise KernelTypeError(f"array: expected a numpy array (or a blosc2 NDArray), got {type(array).__name__}")
    if array.dtype.kind not in "biufc" or array.dtype.itemsize not in (1, 2, 4, 8):
        raise KernelTypeError(
            f"array: dtype {array.dtype} is not supported (expected a bool, integer, float16/32/64 or complex64 array)"
        )
    if array.ndim < 1:
        raise KernelShapeError(f"array: expected at least 1 dimension, got {array.ndim} (shape {array.shape})")
    pairs = normalise_box(box, array.ndim)
    if dtype is None:
        out_dtype = array.dtype
    else:
        try:
            out_dtype = np.dtype(dtype)
        except TypeError:
            raise KernelTypeError(f"dtype: not a numpy dtype: {dtype!r}") from None
        if out_dtype.kind not in "biufc":
            raise KernelTypeError(f"dtype: {out_dtype} is not a numeric dtype")
    pad = check_pad_value(pad_value, out_dtype)
    return array, pairs, out_dtype, pad


def check_pad_value(pad_value, dtype: np.dtype):
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


def is_blosc2(obj) -> bool:
    return type(obj).__module__.startswith("blosc2") and hasattr(obj, "shape") and hasattr(obj, "dtype")


def check_box_args(shape, patch_size, need_to_pad):
    shape = int_tuple("shape", shape, minimum=1)
    if len(shape) == 0:
        raise KernelShapeError("shape: expected at least one spatial axis, got ()")
    patch_size = int_tuple("patch_size", patch_size, length=len(shape), minimum=1)
    if need_to_pad is None:
        need_to_pad = (0,) * len(shape)
    else:
        need_to_pad = int_tuple("need_to_pad", need_to_pad, length=len(shape), minimum=0)
    return shape, patch_size, need_to_pad


def check_class_locations_map(class_locations, ndim: int) -> Mapping:
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


def annotated_key(class_locations: Mapping, has_ignore):
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


def voxel(locs, i: int, ndim: int) -> list[int]:
    """Spatial coordinates of stored voxel `i` (dropping the leading channel index if present)."""
    row = locs[i]
    n = len(row)
    if n not in (ndim, ndim + 1):
        raise KernelShapeError(f"class_locations: a voxel has {n} coordinates; expected {ndim} or {ndim + 1}")
    return [int(v) for v in row[n - ndim :]]


def as_generator(rng, name: str = "rng") -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(check_seed(rng, name))


def check_batch_size(batch_size) -> int:
    if not is_int(batch_size) or not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
        raise KernelValueError(f"batch_size: expected an integer between 1 and {MAX_BATCH_SIZE}, got {batch_size!r}")
    return int(batch_size)


# ----------------------------------------------------------------------------------------------
# sliding window (starts, Gaussian map, Aggregator)

_WEIGHTINGS = ("gaussian", "constant")
_OUTPUTS = ("logits", "labels")
_UNCOVERED = ("error", "zero")
MAX_CHANNELS = 65536


def positive_float(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise KernelTypeError(f"{name}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise KernelTypeError(f"{name}: expected a number, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise KernelValueError(f"{name}: must be positive and finite, got {value!r}")
    return out


def choice(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise KernelTypeError(f"{name}: expected one of {list(choices)}, got {value!r}")
    if value not in choices:
        raise KernelValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def float_dtype(name: str, value) -> np.dtype:
    """float32 or float16, given as a string, a numpy type or a dtype."""
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise KernelTypeError(f"{name}: {value!r} is not supported (expected 'float32' or 'float16')")
    return dt


def check_starts_args(image_size, patch_size, step_size):
    image_size = int_tuple("image_size", image_size, minimum=0)
    if not image_size:
        raise KernelShapeError("image_size: needs at least one axis")
    patch_size = int_tuple("patch_size", patch_size, length=len(image_size), minimum=1)
    if isinstance(step_size, (bool, np.bool_)):
        raise KernelTypeError(f"step_size: expected a number, got {step_size!r}")
    try:
        step = float(step_size)
    except (TypeError, ValueError):
        raise KernelTypeError(f"step_size: expected a number, got {step_size!r}") from None
    if not (0 < step <= 1):
        raise KernelValueError(f"step_size: must be in (0, 1], got {step_size!r}")
    if any(i < p for i, p in zip(image_size, patch_size)):
        raise KernelValueError(
            f"image_size: {image_size} is smaller than patch_size {patch_size} along some axis "
            "(pad the image to at least the patch size first, as nnU-Net does)"
        )
    return image_size, patch_size, step


def check_gaussian_args(patch_size, sigma_scale, value_scaling_factor, dtype):
    patch_size = int_tuple("patch_size", patch_size, minimum=1)
    if not patch_size:
        raise KernelShapeError("patch_size: needs at least one axis")
    return (
        patch_size,
        positive_float("sigma_scale", sigma_scale),
        positive_float("value_scaling_factor", value_scaling_factor),
        float_dtype("dtype", dtype),
    )


def check_aggregator_args(
    num_channels, shape, patch_size, weighting, dtype, streaming, output, uncovered, sigma_scale, value_scaling_factor
) -> dict:
    if isinstance(num_channels, (bool, np.bool_)) or not isinstance(num_channels, (int, np.integer)):
        raise KernelTypeError(f"num_channels: expected an integer, got {num_channels!r}")
    if not 1 <= int(num_channels) <= MAX_CHANNELS:
        raise KernelValueError(f"num_channels: must be between 1 and {MAX_CHANNELS}, got {num_channels}")
    shape = int_tuple("shape", shape, minimum=1)
    if len(shape) not in (2, 3):
        raise KernelShapeError(f"shape: expected 2 or 3 spatial axes, got {shape}")
    patch_size = int_tuple("patch_size", patch_size, length=len(shape), minimum=1)
    if not isinstance(streaming, (bool, np.bool_)):
        raise KernelTypeError(f"streaming: expected True or False, got {streaming!r}")
    return dict(
        num_channels=int(num_channels),
        shape=shape,
        patch_size=patch_size,
        weighting=choice("weighting", weighting, _WEIGHTINGS),
        dtype=float_dtype("dtype", dtype).name,
        streaming=bool(streaming),
        output=choice("output", output, _OUTPUTS),
        uncovered=choice("uncovered", uncovered, _UNCOVERED),
        sigma_scale=positive_float("sigma_scale", sigma_scale),
        value_scaling_factor=positive_float("value_scaling_factor", value_scaling_factor),
    )


def is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def prediction_array(prediction) -> tuple[np.ndarray, str]:
    """A numpy view of `prediction` (no copy) and its kind: 'f32', 'f16' or 'bf16' (raw bits, int16).

    torch CPU tensors are read in place: float32/float16 through ``tensor.detach().numpy()``,
    bfloat16 through ``tensor.detach().view(torch.int16).numpy()`` (converted in Rust).
    """
    if is_torch(prediction):
        torch = sys.modules["torch"]
        if not isinstance(prediction, torch.Tensor):
            raise KernelTypeError(f"prediction: expected a numpy array or a torch tensor, got {type(prediction).__name__}")
        if prediction.device.type != "cpu":
            raise KernelValueError(
                f"prediction: torch tensor is on device {prediction.device}; move it to the CPU first (.cpu())"
            )
        t = prediction.detach()
        if t.dtype == torch.float32:
            return t.numpy(), "f32"
        if t.dtype == torch.float16:
            return t.numpy(), "f16"
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy(), "bf16"
        raise KernelTypeError(
            f"prediction: dtype {t.dtype} is not supported (expected torch.float32, torch.float16 or torch.bfloat16)"
        )
    arr = array("prediction", prediction, (np.float32, np.float16))
    return arr, ("f32" if arr.dtype == np.float32 else "f16")


def check_window(arr: np.ndarray, start, num_channels: int, shape: tuple, patch_size: tuple) -> tuple[int, ...]:
    """Checks a window prediction `(C, *patch_size)` and its start; returns the start."""
    nd = len(shape)
    if arr.ndim != nd + 1:
        raise KernelShapeError(
            f"prediction: expected {nd + 1} dimensions (C, *patch_size), got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] != num_channels:
        raise KernelShapeError(f"prediction: has {arr.shape[0]} channels, expected num_channels={num_channels}")
    if tuple(arr.shape[1:]) != patch_size:
        raise KernelShapeError(f"prediction: spatial shape {tuple(arr.shape[1:])} differs from patch_size {patch_size}")
    start = int_tuple("start", start, length=nd)
    for s, p, n in zip(start, patch_size, shape):
        if max(s, 0) >= min(s + p, n):
            raise KernelValueError(
                f"start: window at {start} with patch_size {patch_size} lies entirely outside the volume of shape {shape}"
            )
    return start


def labels_dtype(num_channels: int) -> type:
    return np.uint8 if num_channels - 1 <= 255 else np.uint16

