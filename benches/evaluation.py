"""Evaluation speed: oxunet vs nnunetv2 (Dice summary) and oxunet vs MONAI (HD95/ASSD/NSD).

    PYTHONPATH=python python3 benches/evaluation.py [--hippo-cases 20] [--ct-cases 2] [--ct-shape 512 512 200]

Builds GT/prediction folders in a temporary directory (Hippocampus-sized 36×50×35 cases with 2
labels; CT-like volumes with 3 organ labels at 0.8×0.8×2.5 mm), then times
* folder evaluation, Dice etc. only: ``oxunet.evaluation.evaluate_folders`` vs nnunetv2's
  ``compute_metrics_on_folder`` (both 1 process; nnunetv2's spawn-pool start is part of its
  cost, so its per-case ``compute_metrics`` is timed in-process as well);
* surface metrics per case and label: ours (bounding-box EDT) vs MONAI's
  ``compute_hausdorff_distance(percentile=95)`` + ``compute_average_surface_distance`` +
  ``compute_surface_dice`` on the same arrays (I/O excluded).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


def _ellipsoids(shape, rng, labels, scale):
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    seg = np.zeros(shape, np.uint8)
    for lab in labels:
        c = [rng.uniform(0.3, 0.7) * s for s in shape]
        r = [rng.uniform(*scale) * s for s in shape]
        seg[sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, r)) < 1] = lab
    return seg


def _write(path, seg, spacing):
    img = sitk.GetImageFromArray(seg)
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    sitk.WriteImage(img, str(path), True)


def make_folder(root: Path, n, shape, labels, spacing, scale, seed):
    rng = np.random.default_rng(seed)
    gt, pred = root / "gt", root / "pred"
    gt.mkdir(parents=True)
    pred.mkdir()
    arrays = []
    for i in range(n):
        ref = _ellipsoids(shape, rng, labels, scale)
        p = np.roll(ref, 2, axis=1)
        p[tuple(slice(int(s * 0.1), int(s * 0.1) + 3) for s in shape)] = labels[0]  # a false-positive speck
        _write(gt / f"case_{i:03d}.nii.gz", ref, spacing)
        _write(pred / f"case_{i:03d}.nii.gz", p, spacing)
        arrays.append((ref, p))
    return gt, pred, arrays


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return time.perf_counter() - t, out


def bench_dice(name, gt, pred, labels):
    from oxunet.evaluation import evaluate_folders

    evaluate_folders(gt, pred, labels, num_processes=1, quiet=True)  # warm-up (imports)
    t_ours, ours = timed(evaluate_folders, gt, pred, labels, num_processes=1, quiet=True)
    line = f"{name:<28} oxunet evaluate_folders: {t_ours:7.2f} s"
    try:
        from nnunetv2.evaluation.evaluate_predictions import compute_metrics, compute_metrics_on_folder
        from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    except ImportError:
        print(line + "   (nnunetv2 not installed)")
        return
    compute_metrics(str(Path(gt) / "case_000.nii.gz"), str(Path(pred) / "case_000.nii.gz"), SimpleITKIO(), labels)  # warm-up
    t_theirs, theirs = timed(compute_metrics_on_folder, str(gt), str(pred), None, SimpleITKIO(), ".nii.gz", labels, None, 1)
    files = sorted(p.name for p in Path(gt).glob("*.nii.gz"))
    t0 = time.perf_counter()
    for f in files:
        compute_metrics(str(Path(gt) / f), str(Path(pred) / f), SimpleITKIO(), labels)
    t_inproc = time.perf_counter() - t0
    same = all(
        abs(ours["mean"][str(k)]["Dice"] - theirs["mean"][k]["Dice"]) == 0 for k in labels
    )
    print(f"{line} | nnunetv2 compute_metrics_on_folder: {t_theirs:7.2f} s (in-process per-case loop {t_inproc:7.2f} s)"
          f" | speed-up {t_theirs / t_ours:5.1f}x ({t_inproc / t_ours:4.1f}x in-process) | identical Dice: {same}")


def bench_surface(name, arrays, labels, spacing, max_cases):
    from oxunet.evaluation import surface_metrics

    arrays = arrays[:max_cases]
    t0 = time.perf_counter()
    ours = [surface_metrics(r == lab, p == lab, spacing, 1.0) for r, p in arrays for lab in labels]
    t_ours = time.perf_counter() - t0
    try:
        import torch
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice
    except ImportError:
        print(f"{name:<28} oxunet HD95+ASSD+NSD: {t_ours:7.2f} s   (MONAI not installed)")
        return
    import warnings

    warnings.filterwarnings("ignore")
    r0 = torch.from_numpy(np.stack([arrays[0][0] == 0, arrays[0][0] != 0])[None])
    compute_hausdorff_distance(r0, r0, percentile=95)  # warm-up (imports)
    t0 = time.perf_counter()
    theirs = []
    for r, p in arrays:
        for lab in labels:
            y = torch.from_numpy(np.stack([r != lab, r == lab])[None])
            x = torch.from_numpy(np.stack([p != lab, p == lab])[None])
            hd = compute_hausdorff_distance(x, y, percentile=95, spacing=list(spacing))
            asd = compute_average_surface_distance(x, y, symmetric=True, spacing=list(spacing))
            nsd = compute_surface_dice(x, y, [1.0], spacing=list(spacing))
            theirs.append((float(hd), float(asd), float(nsd)))
    t_monai = time.perf_counter() - t0
    err = max(max(abs(o["HD95"] - t[0]) / max(t[0], 1e-9), abs(o["ASSD"] - t[1]) / max(t[1], 1e-9), abs(o["NSD"] - t[2]))
              for o, t in zip(ours, theirs))
    print(f"{name:<28} oxunet HD95+ASSD+NSD: {t_ours:7.2f} s | MONAI: {t_monai:7.2f} s | speed-up {t_monai / t_ours:5.1f}x"
          f" | max rel. difference {err:.1e} ({len(arrays)} cases × {len(labels)} labels)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hippo-cases", type=int, default=20)
    ap.add_argument("--ct-cases", type=int, default=2)
    ap.add_argument("--ct-shape", type=int, nargs=3, default=(200, 512, 512), help="z y x")
    ap.add_argument("--surface-cases", type=int, default=20, help="cases per set for the MONAI comparison")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hippo = make_folder(tmp / "hippo", args.hippo_cases, (36, 50, 35), (1, 2), (1.0, 1.0, 1.0), (0.1, 0.25), 0)
        bench_dice(f"hippocampus {args.hippo_cases}×36×50×35", hippo[0], hippo[1], [1, 2])
        bench_surface("hippocampus surface", hippo[2], (1, 2), (1.0, 1.0, 1.0), args.surface_cases)
        if args.ct_cases:
            shape = tuple(args.ct_shape)
            ct = make_folder(tmp / "ct", args.ct_cases, shape, (1, 2, 3), (2.5, 0.8, 0.8), (0.08, 0.2), 1)
            bench_dice(f"CT {args.ct_cases}×{'×'.join(map(str, shape))}", ct[0], ct[1], [1, 2, 3])
            bench_surface("CT surface", ct[2], (1, 2, 3), (2.5, 0.8, 0.8), args.surface_cases)


if __name__ == "__main__":
    main()
