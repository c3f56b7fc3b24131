"""Augmentation throughput: oxunet's training pipeline vs batchgeneratorsv2's as nnU-Net builds it.

One CPU thread (as in nnU-Net's loader workers), per sample: the input is the enlarged crop
(``initial_patch_size``), the output the final patch plus deep-supervision targets. Both pipelines
get the same arguments (rotation, mirror axes, dummy 2D, deep-supervision scales, labels); inputs
are copied before each call and the copy is not timed. Times are thread CPU time (robust on a
shared machine; equal to wall time on an idle core) and wall time; the two implementations run in
alternating rounds so load drift hits both alike. Throughput = samples / total time.

    python benches/augmentation.py                   # Hippocampus (40, 56, 40) and CT-like (128, 128, 128)
    python benches/augmentation.py --quick           # fewer samples
    python benches/augmentation.py --steps           # also time each step (ms per call, mean)
    python benches/augmentation.py --preset da5      # another preset (theirs: the matching trainer)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from oxunet.training.augmentation import (  # noqa: E402
    build_training_transforms,
    configure_augmentation,
    ds_scales_from_pooling,
    get_preset,
)

CASES = {
    # name: (patch size, pool op kernel sizes of the plan, channels, labels)
    "hippocampus": ((40, 56, 40), [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], 1, 3),
    "ct128": ((128, 128, 128), [[1, 1, 1]] + [[2, 2, 2]] * 5, 1, 3),
}
TRAINERS = {"default": "nnUNetTrainer", "da5": "nnUNetTrainerDA5", "no-mirroring": "nnUNetTrainerNoMirroring"}


def synthetic_case(shape, channels: int, n_labels: int, seed: int):
    """A smooth image and a label map of a few ellipsoids (background dominant), as float32/int16."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    seg = np.zeros(shape, np.int16)
    for label in range(1, n_labels):
        for _ in range(2):
            centre = rng.uniform(-0.5, 0.5, len(shape))
            radii = rng.uniform(0.15, 0.35, len(shape))
            inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1
            seg[inside] = label
    img = rng.normal(0, 0.3, (channels, *shape)).astype(np.float32) + seg[None].astype(np.float32)
    return torch.from_numpy(img), torch.from_numpy(seg[None])


HIPPOCAMPUS = Path(os.environ.get("OXUNET_HIPPOCAMPUS", "/work/shared/data/Dataset004_Hippocampus"))


def hippocampus_cases(shape, n: int = 4):
    """Real Hippocampus cases (z-scored), centred in ``shape`` and padded as nnU-Net's loader pads
    (data 0, seg -1); None when the dataset is not there."""
    images = sorted((HIPPOCAMPUS / "imagesTr").glob("*_0000.nii.gz"))[:n]
    if not images:
        return None
    import SimpleITK as sitk

    cases = []
    for img_path in images:
        case = img_path.name[: -len("_0000.nii.gz")]
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(img_path))).astype(np.float32)
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(HIPPOCAMPUS / "labelsTr" / f"{case}.nii.gz")))
        img = (img - img.mean()) / max(img.std(), 1e-8)
        data = np.zeros(shape, np.float32)
        lab = np.full(shape, -1, np.int16)
        src = tuple(slice(max(0, (a - b) // 2), max(0, (a - b) // 2) + min(a, b)) for a, b in zip(img.shape, shape))
        dst = tuple(slice(max(0, (b - a) // 2), max(0, (b - a) // 2) + min(a, b)) for a, b in zip(img.shape, shape))
        data[dst] = img[src]
        lab[dst] = seg[src]
        cases.append((torch.from_numpy(data[None]), torch.from_numpy(lab[None])))
    return cases


def nnunet_pipeline(preset: str, patch, setup, ds_scales, n_labels: int):
    """nnU-Net's own training transforms for the preset's trainer, with the same arguments as ours."""
    import importlib

    name = TRAINERS[preset]
    if name == "nnUNetTrainer":
        module = importlib.import_module("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    else:
        module = importlib.import_module(f"nnunetv2.training.nnUNetTrainer.variants.data_augmentation.{name}")
    trainer = getattr(module, name)
    return trainer.get_training_transforms(
        patch, setup.rotation, ds_scales, setup.mirror_axes, setup.do_dummy_2d,
        use_mask_for_norm=[False], is_cascaded=False, foreground_labels=list(range(1, n_labels)),
        regions=None, ignore_label=None,
    )


def _name(step) -> str:
    inner = getattr(step, "inner", None) or getattr(step, "transform", None)
    return type(inner or step).__name__


def run(case: str, preset: str, n: int, rounds: int, steps: bool) -> dict:
    patch, pools, channels, n_labels = CASES[case]
    p = get_preset(preset)
    setup = configure_augmentation(patch, patch_scale_range=p.patch_scale_range, mirror=p.mirror)
    ds = ds_scales_from_pooling(pools)
    ours = build_training_transforms(patch, preset, deep_supervision_scales=ds)
    theirs = None
    try:
        theirs = nnunet_pipeline(preset, patch, setup, ds, n_labels)
    except ImportError as e:
        print(f"  nnunetv2 / batchgeneratorsv2 not importable ({e}); timing oxunet only")
    inputs = hippocampus_cases(setup.initial_patch_size) if case == "hippocampus" else None
    source = "Dataset004_Hippocampus cases" if inputs else "synthetic ellipsoids"
    if not inputs:
        inputs = [synthetic_case(setup.initial_patch_size, channels, n_labels, s) for s in range(4)]

    # prepare(i) builds the call's arguments outside the timer (theirs modify their input in place)
    def ours_prepare(i):
        img, seg = inputs[i % len(inputs)]
        return img, seg, torch.Generator().manual_seed(i)

    def theirs_prepare(i):
        img, seg = inputs[i % len(inputs)]
        return {"image": img.clone(), "segmentation": seg.clone()}

    def ours_call(args):
        return ours(*args)

    def theirs_call(args):
        return theirs(**args)

    def ours_once(i):
        return ours_call(ours_prepare(i))

    def theirs_once(i):
        return theirs_call(theirs_prepare(i))

    def timed(impl, i):
        """(thread CPU seconds, wall seconds) of one call."""
        prepare, call = impl
        args = prepare(i)
        c0, w0 = time.thread_time(), time.perf_counter()
        call(args)
        return time.thread_time() - c0, time.perf_counter() - w0

    impls = {"oxunet": (ours_prepare, ours_call)}
    if theirs is not None:
        impls["batchgeneratorsv2"] = (theirs_prepare, theirs_call)
    for impl in impls.values():
        timed(impl, 0)  # warm-up (caches, lazy imports, one-time self-checks)
    cpu = {k: 0.0 for k in impls}
    wall = {k: 0.0 for k in impls}
    np.random.seed(0)
    torch.manual_seed(0)
    for r in range(rounds):  # alternate so load drift on a shared machine hits both alike
        for name, fn in impls.items():
            for i in range(n):
                c, w = timed(fn, r * n + i)
                cpu[name] += c
                wall[name] += w
    total = n * rounds
    result = {"case": case, "patch": patch, "input": setup.initial_patch_size, "preset": preset, "samples": total,
              "data": source}
    for name in impls:
        result[f"{name}_per_cpu_s"] = total / cpu[name]
        result[f"{name}_per_wall_s"] = total / wall[name]
    if theirs is not None:
        result["speedup_cpu"] = result["oxunet_per_cpu_s"] / result["batchgeneratorsv2_per_cpu_s"]
        result["speedup_wall"] = result["oxunet_per_wall_s"] / result["batchgeneratorsv2_per_wall_s"]
    if steps:
        result["steps_ms"] = step_breakdown(ours, theirs, ours_once, theirs_once, n)
    return result


def step_breakdown(ours, theirs, ours_once, theirs_once, n) -> dict:
    """Mean thread CPU ms per call of each top-level step (probabilistic steps averaged over all calls)."""
    out = {}
    original = ours.transform.transforms
    totals = [0.0] * len(original)

    def make(step, i):
        def timed(batch, gen):
            t0 = time.thread_time()
            r = step(batch, gen)
            totals[i] += time.thread_time() - t0
            return r
        return _Callable(timed)

    ours.transform.transforms = [make(s, i) for i, s in enumerate(original)]
    for i in range(n):
        ours_once(10_000 + i)
    ours.transform.transforms = original
    out["oxunet"] = {f"{j:02d} {_name(s)}": round(1000 * t / n, 2) for j, (s, t) in enumerate(zip(original, totals))}
    if theirs is not None:
        orig_t = theirs.transforms
        totals_t = [0.0] * len(orig_t)

        class Timed:
            def __init__(self, t, i):
                self.t, self.i = t, i

            def __call__(self, **d):
                t0 = time.thread_time()
                r = self.t(**d)
                totals_t[self.i] += time.thread_time() - t0
                return r

        theirs.transforms = [Timed(t, i) for i, t in enumerate(orig_t)]
        for i in range(n):
            theirs_once(10_000 + i)
        theirs.transforms = orig_t
        out["batchgeneratorsv2"] = {f"{j:02d} {_name(t)}": round(1000 * s / n, 2)
                                    for j, (t, s) in enumerate(zip(orig_t, totals_t))}
    return out


class _Callable:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, batch, gen):
        return self.fn(batch, gen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", action="store_true", help="per-step mean time")
    ap.add_argument("--preset", default="default", choices=sorted(TRAINERS))
    ap.add_argument("--only", default=None, help="case name filter")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = []
    for case in CASES:
        if args.only and args.only not in case:
            continue
        small = case == "hippocampus"
        n = (20 if small else 4) if args.quick else (100 if small else 50)
        rounds = 2 if args.quick else 4
        res = run(case, args.preset, n, rounds, args.steps)
        results.append(res)
        line = (f"{case:12s} patch {res['patch']} from {res['input']} ({res['data']}), {res['samples']} samples: "
                f"oxunet {res['oxunet_per_cpu_s']:.1f} patches/CPU-s ({res['oxunet_per_wall_s']:.1f}/wall-s)")
        if "batchgeneratorsv2_per_cpu_s" in res:
            line += (f", batchgeneratorsv2 {res['batchgeneratorsv2_per_cpu_s']:.1f} "
                     f"({res['batchgeneratorsv2_per_wall_s']:.1f}); speed-up {res['speedup_cpu']:.2f}x CPU, "
                     f"{res['speedup_wall']:.2f}x wall")
        print(line, flush=True)
        if args.steps:
            for impl, table in res["steps_ms"].items():
                print(f"  {impl} ms/call: " + ", ".join(f"{k} {v}" for k, v in table.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
