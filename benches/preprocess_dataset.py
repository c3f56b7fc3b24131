"""Whole-dataset preprocessing: oxunet vs nnunetv2 (wall time, peak memory, disk, agreement).

    python benches/preprocess_dataset.py --raw ../shared/data/Dataset004_Hippocampus --work /tmp/ppbench -np 2

Plans come from nnunetv2 (``nnUNetv2_plan_and_preprocess --no_pp``, run once into ``--work``; not
timed). Then each tool preprocesses the same configuration into its own preprocessed root, in a
fresh subprocess, once: ``oxunet``'s ``preprocess_dataset`` and ``nnUNetv2_preprocess``. Peak
memory is the largest sum of PSS (proportional set size, so pages shared between forked workers
count once) over the process tree, polled every 0.1 s. Finally every case of both outputs is
compared (nnU-Net's .b2nd read with blosc2).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _tree_pss(proc) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def timed(cmd: list[str], env: dict) -> tuple[float, int]:
    """(wall seconds, peak PSS bytes of the process tree) of one run of `cmd`."""
    import psutil

    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, _tree_pss(proc))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    err = child.stderr.read().decode(errors="replace")
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({child.returncode}):\n{err[-3000:]}")
    return wall, peak


def _env(raw: Path, pre: Path, work: Path) -> dict:
    env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre), nnUNet_results=str(work / "results"),
               PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OXUNET_RAW", "OXUNET_PREPROCESSED", "OXUNET_RESULTS"):
        env.pop(var, None)
    return env


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def compare(ours_dir: Path, theirs_dir: Path) -> dict:
    import blosc2

    from oxunet.preprocessing import list_cases, open_case

    worst_data, worst_seg, count_mismatch, n = 0.0, 1.0, 0, 0
    for case in list_cases(ours_dir):
        h = open_case(ours_dir, case)
        d_t = blosc2.open(str(theirs_dir / f"{case}.b2nd"), mode="r")[:]
        s_t = blosc2.open(str(theirs_dir / f"{case}_seg.b2nd"), mode="r")[:]
        with open(theirs_dir / f"{case}.pkl", "rb") as f:
            p_t = pickle.load(f)
        rng = max(float(d_t.max() - d_t.min()), 1e-6)
        worst_data = max(worst_data, float(np.abs(np.asarray(h.data) - d_t).max()) / rng)
        worst_seg = min(worst_seg, float((np.asarray(h.seg) == s_t).mean()))
        assert h.properties["bbox_used_for_cropping"] == [list(map(int, b)) for b in p_t["bbox_used_for_cropping"]], case
        ours_counts = {k: len(v) for k, v in h.class_locations.items()}
        theirs_counts = {k: len(v) for k, v in p_t["class_locations"].items()}
        count_mismatch += ours_counts != theirs_counts
        n += 1
    return {"cases": n, "max_data_diff_over_range": worst_data, "min_seg_agreement": worst_seg,
            "cases_with_other_class_location_counts": count_mismatch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", type=Path, required=True, help="a raw dataset folder (DatasetXXX_Name)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (plans are kept there between runs)")
    ap.add_argument("-c", "--configuration", default="3d_fullres")
    ap.add_argument("-np", "--num-processes", type=int, default=2)
    ap.add_argument("--skip", choices=["ours", "nnunet"], action="append", default=[])
    args = ap.parse_args()

    name = args.raw.name
    dataset_id = int(name[7:10])
    work = args.work.resolve()
    raw_root = work / "raw"
    raw_root.mkdir(parents=True, exist_ok=True)
    if not (raw_root / name).exists():
        (raw_root / name).symlink_to(args.raw.resolve())
    plans_root = work / "plans"
    if not (plans_root / name / "nnUNetPlans.json").is_file():
        print("planning with nnunetv2 (not timed) ...", flush=True)
        timed(["nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "--no_pp", "-npfp", str(args.num_processes)],
              _env(raw_root, plans_root, work))
    plans = json.loads((plans_root / name / "nnUNetPlans.json").read_text())
    identifier = plans["configurations"][args.configuration]["data_identifier"]

    results = {}
    for tool in ("ours", "nnunet"):
        if tool in args.skip:
            continue
        pre = work / f"pre_{tool}"
        shutil.rmtree(pre, ignore_errors=True)
        shutil.copytree(plans_root, pre)
        if tool == "ours":
            code = ("from oxunet.preprocessing import preprocess_dataset; "
                    f"preprocess_dataset({dataset_id}, configurations=[{args.configuration!r}], "
                    f"num_processes={args.num_processes}, quiet=True)")
            cmd = [sys.executable, "-c", code]
        else:
            cmd = ["nnUNetv2_preprocess", "-d", str(dataset_id), "-c", args.configuration, "-np", str(args.num_processes)]
        wall, peak = timed(cmd, _env(raw_root, pre, work))
        results[tool] = {"wall_s": round(wall, 2), "peak_pss_mib": round(peak / 2**20, 1),
                         "disk_mib": round(du(pre / name / identifier) / 2**20, 2)}
        print(tool, results[tool], flush=True)
    ours_dir, theirs_dir = (work / f"pre_{t}" / name / identifier for t in ("ours", "nnunet"))
    if ours_dir.is_dir() and theirs_dir.is_dir():
        results["agreement"] = compare(ours_dir, theirs_dir)
        print("agreement", results["agreement"])
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
