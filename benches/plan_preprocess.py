"""End-to-end ``oxunet plan-and-preprocess`` vs ``nnUNetv2_plan_and_preprocess``, side by side.

Each tool runs once in its own subprocess, on a copy of the same raw dataset, with the same
number of processes; we record wall time and the peak resident memory of the whole process
tree (sampled every 50 ms with psutil, summed over the tool and all its workers).

    python benches/plan_preprocess.py --dataset ../shared/data/Dataset004_Hippocampus -np 4
    python benches/plan_preprocess.py --synthetic-ct 8 -np 2      # 8 cases of 512x512x(100-300)
    python benches/plan_preprocess.py ... -c 3d_fullres            # one configuration only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(cmd: list[str], env: dict) -> dict:
    """Wall time and peak process-tree RSS of ``cmd``."""
    import psutil

    t0 = time.perf_counter()
    popen = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = psutil.Process(popen.pid)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = popen.communicate()
    done.set()
    t.join()
    return {"wall_s": time.perf_counter() - t0, "peak_rss_gib": peak / 2**30, "rc": popen.returncode, "tail": out[-2000:]}


def synthetic_ct(root: Path, n: int) -> Path:
    """n CT-like cases of 512x512x(100-300) voxels, anisotropic (z 1.5-5 mm)."""
    import numpy as np
    import SimpleITK as sitk

    sys.path.insert(0, str(HERE.parent / "tests"))
    from synthetic import body_case

    ds = root / "Dataset301_SynthCT"
    (ds / "imagesTr").mkdir(parents=True, exist_ok=True)
    (ds / "labelsTr").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        depth = int(rng.integers(100, 301))
        spacing = (float(rng.choice([1.5, 2.5, 5.0])), float(rng.uniform(0.6, 0.9)), 0.0)
        spacing = (spacing[0], spacing[1], spacing[1])
        img, seg = body_case((depth, 512, 512), rng, labels=2)
        img = (img - 1000 * (img == 0)).astype(np.int16)  # air at -1000 HU, as CT
        for arr, path in ((img, ds / "imagesTr" / f"ct_{i:03d}_0000.nii.gz"), (seg, ds / "labelsTr" / f"ct_{i:03d}.nii.gz")):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing(spacing[::-1])
            sitk.WriteImage(im, str(path), True)
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "organ1": 1, "organ2": 2},
        "numTraining": n, "file_ending": ".nii.gz",
    }))
    return ds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path, help="a raw dataset folder (DatasetXXX_Name)")
    src.add_argument("--synthetic-ct", type=int, metavar="N", help="generate N CT-like cases of 512x512x(100-300)")
    ap.add_argument("-np", "--num-processes", type=int, default=2)
    ap.add_argument("-c", "--configurations", nargs="+", default=None, help="configurations (default: both tools' defaults)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to put raw/preprocessed copies (default: a temp dir)")
    ap.add_argument("--skip", default="", help="comma-separated tools to skip: oxunet,nnunetv2")
    args = ap.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="oxunet-bench-"))
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if args.synthetic_ct:
        ds = synthetic_ct(raw, args.synthetic_ct)
    else:
        ds = raw / args.dataset.name
        if not ds.exists():
            shutil.copytree(args.dataset, ds)
    dataset_id = str(int(ds.name[7:10]))
    results = {}
    skip = set(filter(None, args.skip.split(",")))
    configs = args.configurations
    for tool in ("oxunet", "nnunetv2"):
        if tool in skip:
            continue
        pre = work / f"pre-{tool}"
        shutil.rmtree(pre, ignore_errors=True)
        pre.mkdir()
        env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre), nnUNet_results=str(work / "results"),
                   OXUNET_RAW=str(raw), OXUNET_PREPROCESSED=str(pre), OXUNET_RESULTS=str(work / "results"))
        if tool == "oxunet":
            cmd = [sys.executable, "-m", "oxunet.cli", "plan-and-preprocess", "-d", dataset_id, "-np", str(args.num_processes),
                   "-npfp", str(args.num_processes), "--quiet"]
        else:
            exe = shutil.which("nnUNetv2_plan_and_preprocess")
            if exe is None:
                print("nnunetv2: skipped (nnUNetv2_plan_and_preprocess not installed; pip install '.[bench]')")
                continue
            cmd = [exe, "-d", dataset_id, "-np", str(args.num_processes), "-npfp", str(args.num_processes)]
        if configs:
            cmd += ["-c", *configs]
        print(f"running {tool}: {' '.join(cmd)}", flush=True)
        results[tool] = r = run_measured(cmd, env)
        status = "ok" if r["rc"] == 0 else f"FAILED (rc {r['rc']})\n{r['tail']}"
        print(f"  {tool}: {r['wall_s']:.1f} s wall, peak RSS {r['peak_rss_gib']:.2f} GiB — {status}", flush=True)
    if "oxunet" in results and "nnunetv2" in results:
        o, n = results["oxunet"], results["nnunetv2"]
        print(f"oxunet is {n['wall_s'] / o['wall_s']:.1f}x faster end to end; peak memory "
              f"{o['peak_rss_gib']:.2f} vs {n['peak_rss_gib']:.2f} GiB ({ds.name}, -np {args.num_processes})")
    print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
