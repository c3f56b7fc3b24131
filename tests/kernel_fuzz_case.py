"""One fuzz case of tests/test_kernel_fuzz.py, run in its own process under a memory limit.

Reads a JSON case from argv[1], builds the input array (dtype, shape, memory layout), calls the
kernel and prints one JSON line: ``{"outcome": "ok"}`` or the exception's class, its bases and
message. It never catches signals: a kernel that aborts kills this process, which is the failure
the fuzz test looks for.
"""

from __future__ import annotations

import json
import os
import resource
import sys

if os.environ.get("OXUNET_FUZZ_MEMORY_LIMIT"):  # before numpy and the kernels allocate anything
    _limit = int(os.environ["OXUNET_FUZZ_MEMORY_LIMIT"])
    resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))

import numpy as np


def build_array(spec: dict) -> np.ndarray:
    shape = tuple(spec["shape"])
    dtype = np.dtype(spec["dtype"])
    rng = np.random.default_rng(spec.get("seed", 0))
    if dtype.kind == "f":
        a = (rng.random(shape) * 4 - 1).astype(dtype)
        if spec.get("specials") and a.size:
            a.flat[0] = np.nan
            a.flat[-1] = np.inf
    elif dtype.kind in "iu":
        a = rng.integers(0, 4, size=shape).astype(dtype)
    elif dtype.kind == "b":
        a = rng.integers(0, 2, size=shape).astype(bool)
    elif dtype.kind == "c":
        a = rng.random(shape).astype(dtype)
    else:
        a = np.zeros(shape, dtype=dtype)
    view = spec["view"]
    if view == "fortran":
        a = np.asfortranarray(a)
    elif view == "strided" and a.ndim:
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    elif view == "reversed" and a.ndim:
        a = a[::-1]
    elif view == "transposed":
        a = a.T
    elif view == "broadcast" and a.ndim:
        a = np.broadcast_to(a[:1], a.shape)
    elif view == "byteswapped":
        a = a.astype(a.dtype.newbyteorder())
    elif view == "readonly":
        a.flags.writeable = False
    return a


def run(case: dict):
    import oxunet.kernels as k

    name = case["kernel"]
    a = build_array(case["array"])
    ints, floats, flag = case["ints"], case["floats"], case["flag"]
    i0 = ints[0] if ints else 1
    i1 = ints[1] if len(ints) > 1 else 1
    f0, f1 = floats
    half = len(ints) // 2
    if case.get("threads") is not None:
        k.set_num_threads(case["threads"])
    if name == "resample_data":
        return k.resample_data(a, ints, [f0] * len(ints), [f1] * len(ints), order=i1 % 4, force_separate_z=flag)
    if name == "resample_seg":
        return k.resample_seg(a, ints, [f0] * len(ints), [f1] * len(ints), order=i1 % 4, force_separate_z=flag)
    if name == "crop_to_nonzero":
        seg = (a != 0).astype(np.int8) if flag and a.dtype.kind in "fiub" else None
        return k.crop_to_nonzero(a, seg, nonzero_label=-i0)
    if name == "label_components":
        return k.label_components(a, connectivity=i0 if ints else None)
    if name == "remove_all_but_largest_component":
        return k.remove_all_but_largest_component(a, ints or [1], background_label=i1)
    if name == "remove_small_components":
        return k.remove_small_components(a, ints or [1], min_size=i0, replace_with=0)
    if name == "sample_class_locations":
        return k.sample_class_locations(a, ints or [1], seed=i1, min_num_samples=i0, min_percent_coverage=f0)
    if name == "crop_and_pad":
        box = [(ints[2 * j], ints[2 * j + 1]) for j in range(half)]
        return k.crop_and_pad(a, box, pad_value=f0, parallel=flag)
    if name == "sample_patch_box":
        return k.sample_patch_box(ints[:half], ints[half:2 * half], None, force_fg=flag, rng=0)
    if name == "sample_patch_boxes":
        return k.sample_patch_boxes(ints[:half], ints[half:2 * half], i1, None, oversample_foreground_percent=f0, seed=0)
    if name == "foreground_flags":
        return k.foreground_flags(i0, f0, probabilistic=flag, rng=0)
    if name == "num_class_samples":
        return k.num_class_samples(i0, i1, f0)
    if name == "gaussian_importance_map":
        return k.gaussian_importance_map(ints, f0, f1, dtype=np.float16 if flag else np.float32)
    if name == "sliding_window_starts":
        return k.sliding_window_starts(ints[:half] or ints, ints[half:2 * half] or ints, f0)
    if name == "Aggregator":
        agg = k.Aggregator(i0, ints[1:1 + half] or [1], ints[1 + half:1 + 2 * half] or [1],
                           weighting="gaussian" if flag else "constant", streaming=flag, output="labels" if flag else "logits")
        agg.importance_map
        agg.add(a, [0] * a.ndim)
        return agg.flush() if flag else agg.finalize()
    if name == "set_num_threads":
        k.set_num_threads(i0)
        return k.crop_to_nonzero(np.ones((1, 4, 4), np.float32))
    raise SystemExit(f"unknown kernel {name}")


def main() -> None:
    case = json.loads(sys.argv[1])
    try:
        run(case)
        out = {"outcome": "ok"}
    except BaseException as exc:  # noqa: BLE001 - reporting every exception is the point
        out = {"outcome": type(exc).__name__, "bases": [c.__name__ for c in type(exc).__mro__], "message": str(exc)}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
