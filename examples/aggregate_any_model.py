"""Sliding-window inference around any PyTorch model with oxunet's Aggregator.

A tiny random Conv3d "segmentation network" is run over a synthetic volume, tiled with
nnU-Net's window rule (``sliding_window_starts``), and the window logits are aggregated twice:

* whole volume: ``Aggregator.add`` for every window, then ``argmax()`` (labels straight from the
  Gaussian-weighted sums, no normalised copy of the logits);
* streaming: the same windows in the same order; finished slabs of labels come back through
  ``pop_ready()`` as soon as no later window can touch them, so only about one patch depth of
  accumulators is ever held.

The model output (a float32 torch CPU tensor, or bfloat16 with ``--bf16``) is handed over as
it is: the aggregator reads it in place. Prints a short summary; exits with status 1 if the two
label maps differ.

    python examples/aggregate_any_model.py [--classes 4] [--shape 40 72 60] [--patch 24 32 32]
                                           [--step 0.5] [--dtype float32|float16] [--bf16]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from oxunet.kernels import Aggregator, sliding_window_starts


def synthetic_volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A few bright ellipsoids in noise, float32."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    vol = rng.normal(0, 0.2, shape).astype(np.float32)
    for _ in range(5):
        centre = np.array([rng.uniform(0, n) for n in shape], np.float32).reshape(-1, *[1] * len(shape))
        radius = np.array([rng.uniform(4, n / 3) for n in shape], np.float32).reshape(-1, *[1] * len(shape))
        vol += (((grid - centre) / radius) ** 2).sum(0) < 1
    return vol


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--shape", type=int, nargs=3, default=[40, 72, 60])
    ap.add_argument("--patch", type=int, nargs=3, default=[24, 32, 32])
    ap.add_argument("--step", type=float, default=0.5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="accumulator type")
    ap.add_argument("--bf16", action="store_true", help="hand the model output over as bfloat16")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv3d(1, 8, 3, padding=1),
        torch.nn.LeakyReLU(),
        torch.nn.Conv3d(8, args.classes, 3, padding=1),
    ).eval()

    shape, patch = tuple(args.shape), tuple(args.patch)
    # nnU-Net pads an image smaller than the patch (zeros, at the end here) and crops afterwards
    padded = tuple(max(n, p) for n, p in zip(shape, patch))
    vol = np.zeros(padded, np.float32)
    vol[tuple(slice(0, n) for n in shape)] = synthetic_volume(shape)
    image = torch.from_numpy(vol)[None]  # (1, X, Y, Z)

    starts = list(itertools.product(*sliding_window_starts(padded, patch, args.step)))
    whole = Aggregator(args.classes, padded, patch, dtype=args.dtype)
    stream = Aggregator(args.classes, padded, patch, dtype=args.dtype, streaming=True, output="labels")

    slabs: list[tuple[int, int, np.ndarray]] = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in starts:
            window = tuple(slice(s, s + p) for s, p in zip(start, patch))
            logits = model(image[(slice(None), *window)][None])[0]  # (C, *patch), float32 tensor
            if args.bf16:
                logits = logits.bfloat16()
            whole.add(logits, start)
            stream.add(logits, start)
            slabs += stream.pop_ready()
        slabs += stream.flush()
    labels = whole.argmax()
    elapsed = time.perf_counter() - t0

    streamed = np.concatenate([lab for _, _, lab in slabs], axis=0)
    crop = tuple(slice(0, n) for n in shape)
    labels, streamed = labels[crop], streamed[crop]
    agree = bool(np.array_equal(labels, streamed))
    counts = np.bincount(labels.ravel(), minlength=args.classes)

    print(f"model: {sum(p.numel() for p in model.parameters())} parameters, {args.classes} classes")
    print(f"volume {shape}, patch {patch}, step {args.step}: {len(starts)} windows")
    print(f"accumulator {args.dtype}, model output {'bfloat16' if args.bf16 else 'float32'} tensors")
    print(f"labels {labels.shape} {labels.dtype}, voxels per class {counts.tolist()}")
    print(f"streaming: {len(slabs)} slabs {[(a, b) for a, b, _ in slabs]}")
    print(f"labels agree (whole vs streaming): {agree}")
    print(f"time (model + both aggregations): {elapsed:.2f} s")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
