"""Augmentation throughput: oxunet's training pipeline vs batchgeneratorsv2's as nnU-Net builds it.

One CPU thread (as in nnU-Net's loader workers), per sample: the input is the enlarged crop
(``initial_patch_size``), the output the final patch plus deep-supervision targets. Both pipelines
get the same arguments (rotation, mirror axes, dummy 2D, deep-supervision scales, labels); inputs
are copied before each call and the copy is not timed. The two run in alternating rounds so load
drift on a shared machine hits both alike; the median round is reported.

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
import statistics
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


def nnunet_pipeline(preset: str, patch, setup, ds_scales, n_labels: int):
    from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as module
    import importlib

    name = TRAINERS[preset]
    if name == "nnUNetTrainerDA5":
        module = importlib.import_module("nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5")
    elif name == "nnUNetTrainerNoMirroring":
        module = importlib.import_module(
            "nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring")
    trainer = getattr(module, name)
    return trainer.get_training_transforms(
        patch, setup.rotation, ds_scales, setup.mirror_axes, setup.do_dummy_2d,
        use_mask_for_norm=[False], is_cascaded=False, foreground_labels=list(range(1, n_labels)),
        regions=None, ignore_label=None,
    )


class StepTimer:
    """Wraps each step's __call__ to accumulate wall time (ours: Compose.transforms; theirs: ComposeTransforms)."""

    def __init__(self, steps: list, call):
        self.totals = [0.0] * len(steps)
        self.count = 0
        self.names = [self._name(s) for s in steps]
        for i, s in enumerate(steps):
            self._wrap(s, i, call)

    @staticmethod
    def _name(step) -> str:
        inner = getattr(step, "inner", None) or getattr(step, "transform", None)
        return type(inner or step).__name__

    def _wrap(self, step, i, call):
        orig = step.__call__

        def timed(*a, **k):
            t0 = time.perf_counter()
            r = orig(*a, **k)
            self.totals[i] += time.perf_counter() - t0
            return r

        call(step, timed)


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
    inputs = [synthetic_case(setup.initial_patch_size, channels, n_labels, s) for s in range(4)]

    def ours_once(i):
        img, seg = inputs[i % len(inputs)]
        return ours(img, seg, torch.Generator().manual_seed(i))

    def theirs_once(i):
        img, seg = inputs[i % len(inputs)]
        d = {"image": img.clone(), "segmentation": seg.clone()}
        t0 = time.perf_counter()
        theirs(**d)
        return time.perf_counter() - t0

    def time_ours(i):
        t0 = time.perf_counter()
        ours_once(i)
        return time.perf_counter() - t0

    ours_once(0)
    if theirs is not None:
        theirs_once(0)
    rates = {"oxunet": [], "batchgeneratorsv2": []}
    np.random.seed(0)
    torch.manual_seed(0)
    for r in range(rounds):
        t = sum(time_ours(r * n + i) for i in range(n))
        rates["oxunet"].append(n / t)
        if theirs is not None:
            t = sum(theirs_once(r * n + i) for i in range(n))
            rates["batchgeneratorsv2"].append(n / t)
    result = {"case": case, "patch": patch, "input": setup.initial_patch_size, "preset": preset,
              "samples_per_round": n, "rounds": rounds}
    for k, v in rates.items():
        if v:
            result[f"{k}_patches_per_s"] = statistics.median(v)
    if theirs is not None:
        result["speedup"] = result["oxunet_patches_per_s"] / result["batchgeneratorsv2_patches_per_s"]
    if steps:
        result["steps_ms"] = step_breakdown(ours, theirs, ours_once, theirs_once, n)
    return result


def step_breakdown(ours, theirs, ours_once, theirs_once, n) -> dict:
    def set_ours(step, fn):
        step.__call__ = fn  # instance attribute is not used by Python's call protocol: patch the list
    out = {}
    wrapped = []
    totals = []
    for step in ours.transform.transforms:
        i = len(totals)
        totals.append(0.0)

        def make(s, i):
            def timed(batch, gen):
                t0 = time.perf_counter()
                r = s(batch, gen)
                totals[i] += time.perf_counter() - t0
                return r
            return timed
        wrapped.append(make(step, i))
    original = ours.transform.transforms
    names = [StepTimer._name(s) for s in original]
    ours.transform.transforms = [_Callable(w) for w in wrapped]
    for i in range(n):
        ours_once(10_000 + i)
    ours.transform.transforms = original
    out["oxunet"] = {f"{j:02d} {nm}": round(1000 * t / n, 2) for j, (nm, t) in enumerate(zip(names, totals))}
    if theirs is not None:
        totals_t = [0.0] * len(theirs.transforms)
        orig_t = theirs.transforms

        class Timed:
            def __init__(self, t, i):
                self.t, self.i = t, i

            def __call__(self, **d):
                t0 = time.perf_counter()
                r = self.t(**d)
                totals_t[self.i] += time.perf_counter() - t0
                return r

        theirs.transforms = [Timed(t, i) for i, t in enumerate(orig_t)]
        for i in range(n):
            theirs_once(10_000 + i)
        theirs.transforms = orig_t
        out["batchgeneratorsv2"] = {f"{j:02d} {StepTimer._name(t)}": round(1000 * s / n, 2)
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
        n = (20 if small else 4) if args.quick else (100 if small else 12)
        rounds = 3 if args.quick else 5
        res = run(case, args.preset, n, rounds, args.steps)
        results.append(res)
        line = f"{case:12s} patch {res['patch']} from {res['input']}: oxunet {res['oxunet_patches_per_s']:.1f}/s"
        if "batchgeneratorsv2_patches_per_s" in res:
            line += (f", batchgeneratorsv2 {res['batchgeneratorsv2_patches_per_s']:.1f}/s, "
                     f"speed-up {res['speedup']:.2f}x")
        print(line)
        if args.steps:
            for impl, table in res["steps_ms"].items():
                print(f"  {impl} ms/call: " + ", ".join(f"{k} {v}" for k, v in table.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
