"""Storage formats for preprocessed cases: oxunet's memory-mapped .npy vs nnU-Net 2.8's blosc2.

    python benches/preprocess_storage.py                         # synthetic CT-like volume, 128^3 patches
    python benches/preprocess_storage.py --folders OURS THEIRS   # two preprocessed folders of the same cases
                                                                 # (oxunet's and nnU-Net's), e.g. from
                                                                 # benches/preprocess_dataset.py

Measures, with a warm page cache (files just written / read once before timing):
* disk bytes per case;
* random patches per second as a data loader reads them, *opening the case for every patch*
  (nnU-Net's ``load_case`` + ``crop_and_pad_nd`` for data and seg; oxunet's ``open_case`` +
  ``read_patch`` + one class-location row), and with the case kept open;
* write time per case (nnU-Net's ``save_case`` with ``comp_blosc2_params`` for the patch size
  vs ``write_case``).
Single-threaded (nnU-Net's loader sets blosc2 and BLAS to 1 thread), one process.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _boxes(shapes: dict, patch, n: int, seed: int = 0):
    """n (case, box) pairs; corners may overhang by a quarter patch, as the loader's padding does."""
    rng = np.random.default_rng(seed)
    names = sorted(shapes)
    out = []
    for _ in range(n):
        case = names[int(rng.integers(len(names)))]
        shape = shapes[case]
        box = []
        for s, p in zip(shape, patch):
            lo, hi = -(p // 4), max(s - p + p // 4, -(p // 4))
            c = int(rng.integers(lo, hi + 1))
            box.append([c, c + p])
        out.append((case, box))
    return out


def _rate(fn, jobs, min_seconds: float = 2.0) -> float:
    for job in jobs[: max(1, len(jobs) // 10)]:  # warm up (page cache, imports)
        fn(*job)
    t0 = time.perf_counter()
    n = 0
    while True:
        for job in jobs:
            fn(*job)
            n += 1
        if time.perf_counter() - t0 >= min_seconds:
            return n / (time.perf_counter() - t0)


def bench_folders(ours: Path, theirs: Path, patch, n: int) -> dict:
    import blosc2
    from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    from oxunet.preprocessing import list_cases, open_case, read_patch

    blosc2.set_nthreads(1)
    cases = list_cases(ours)
    shapes = {c: open_case(ours, c).shape for c in cases}
    jobs = _boxes(shapes, patch, n)
    ds = nnUNetDatasetBlosc2(str(theirs), cases)

    def nnunet_open_read(case, box):
        data, seg, _, props = ds.load_case(case)
        locs = props["class_locations"]
        k = next((k for k in locs if len(locs[k])), None)
        _ = locs[k][0] if k is not None else None
        return crop_and_pad_nd(data, box, 0), crop_and_pad_nd(seg, box, -1, cast_cropped_to=np.int16)

    def ours_open_read(case, box):
        h = open_case(ours, case)
        locs = h.class_locations
        k = next((k for k in locs if len(locs[k])), None)
        _ = locs[k][0] if k is not None else None
        return read_patch(h, box)

    opened_t = {c: ds.load_case(c) for c in cases}
    opened_o = {c: open_case(ours, c) for c in cases}

    def nnunet_read(case, box):
        data, seg, _, _ = opened_t[case]
        return crop_and_pad_nd(data, box, 0), crop_and_pad_nd(seg, box, -1, cast_cropped_to=np.int16)

    def ours_read(case, box):
        return read_patch(opened_o[case], box)

    for case, box in jobs[:50]:  # same patches from both
        a, b = ours_read(case, box), nnunet_read(case, box)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), case

    def size(folder, names):
        return sum(p.stat().st_size for p in folder.iterdir() if any(p.name.startswith(c + s) for c in names for s in (".", "_seg.")))

    return {
        "cases": len(cases),
        "patch": list(patch),
        "disk_kib_per_case": {"oxunet_npy": size(ours, cases) / len(cases) / 1024,
                              "nnunet_blosc2": size(theirs, cases) / len(cases) / 1024},
        "patches_per_s_open_each_time": {"oxunet_npy": _rate(ours_open_read, jobs),
                                         "nnunet_blosc2": _rate(nnunet_open_read, jobs)},
        "patches_per_s_case_kept_open": {"oxunet_npy": _rate(ours_read, jobs),
                                         "nnunet_blosc2": _rate(nnunet_read, jobs)},
    }


def synthetic_case(shape, seed=0):
    """A smooth CT-like volume (body, organs, correlated noise) normalized like CTNormalization,
    resampled-looking (continuous values), with a 3-label seg and -1 outside the body."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[tuple(slice(0, s) for s in shape)]
    body = ((y - shape[1] / 2) / (0.45 * shape[1])) ** 2 + ((x - shape[2] / 2) / (0.47 * shape[2])) ** 2 < 1
    body = np.broadcast_to(body, shape)
    img = gaussian_filter(rng.normal(0, 1, size=shape).astype(np.float32), 1.5) * 8
    seg = np.where(body, 0, -1).astype(np.int8)
    for lab in (1, 2, 3):
        c = [rng.uniform(0.3, 0.7) * s for s in shape]
        r = [rng.uniform(0.08, 0.18) * s for s in shape]
        m = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1
        m &= body
        seg[m] = lab
        img[m] += 30 * lab
    img[body] += 40
    img[~body] = -1000
    img = np.clip(img, -200, 300)
    img = (img - 50) / 80
    return img[None].astype(np.float32), seg[None]


def bench_synthetic(shape, patch, n: int, work: Path) -> dict:
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    from oxunet.kernels import sample_class_locations
    from oxunet.preprocessing import write_case

    data, seg = synthetic_case(shape)
    locs = sample_class_locations(seg, [1, 2, 3], seed=1234)
    props = {"spacing": [1.0, 1.0, 1.0], "class_locations": locs}
    ours, theirs = work / "ours", work / "theirs"
    theirs.mkdir(parents=True)
    t0 = time.perf_counter()
    write_case(ours, "big", data, seg, props, locs)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    bd, cd = comp_blosc2_params(data.shape, tuple(patch), data.itemsize)
    bs, cs = comp_blosc2_params(seg.shape, tuple(patch), 2)
    nnUNetDatasetBlosc2.save_case(data, seg.astype(np.int16), props, str(theirs / "big"), chunks=cd, blocks=bd,
                                  chunks_seg=cs, blocks_seg=bs)
    t_theirs = time.perf_counter() - t0
    out = bench_folders(ours, theirs, patch, n)
    out["shape"] = list(shape)
    out["write_s_per_case"] = {"oxunet_npy": t_ours, "nnunet_blosc2": t_theirs}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folders", nargs=2, type=Path, metavar=("OURS", "THEIRS"))
    ap.add_argument("--patch", type=int, nargs="+", default=None, help="patch size (default: 128^3 synthetic, plans' for --folders)")
    ap.add_argument("--shape", type=int, nargs=3, default=[200, 320, 320])
    ap.add_argument("-n", type=int, default=200, help="distinct random patches")
    args = ap.parse_args()
    from oxunet.kernels import set_num_threads

    set_num_threads(1)
    if args.folders:
        patch = args.patch
        if patch is None:
            plans = json.loads((args.folders[1].parent / "nnUNetPlans.json").read_text())
            ident = args.folders[1].name
            patch = next(c["patch_size"] for c in plans["configurations"].values() if c.get("data_identifier") == ident)
        result = bench_folders(args.folders[0], args.folders[1], patch, args.n)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = bench_synthetic(tuple(args.shape), args.patch or [128, 128, 128], args.n, Path(tmp))
    print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
