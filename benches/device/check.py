"""The prepared GPU check (issue 13): CUDA tests, `bench train` with and without data loading at
several worker counts (Hippocampus 3d_fullres and a CT-like 128³ configuration), and prediction of a
CT-like case on the device vs the Rust export path. Every figure goes into one JSON.

    python3 benches/device/check.py --out DIR [--hippocampus PRE_DIR] [--dry-run] [--budget-s 540]

Each step runs in a child process with its own time limit; a failing step is recorded (with the
tail of its output) and the rest still run. ``--dry-run`` runs the same steps on the CPU at a tiny
size (the default test suite does this).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOG_DIR = Path(tempfile.mkdtemp(prefix="oxunet_check_logs_"))  # $OUT returns at most 8 files: logs stay here
REPO = HERE.parents[1]


def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    return env


def run_step(name: str, argv: list[str], timeout: float, results: dict, out_dir: Path) -> dict:
    """Runs one child; records seconds, exit code and the tail of its output."""
    t0 = time.perf_counter()
    log = LOG_DIR / f"{name}.log"
    try:
        proc = subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=max(5, timeout))
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        text = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        text += (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
    step = {"name": name, "rc": rc, "seconds": round(time.perf_counter() - t0, 2), "tail": text[-3000:]}
    results["steps"].append(step)
    try:
        log.write_text(text)
    except OSError:
        pass
    print(f"[check] {name}: rc={rc} in {step['seconds']} s", flush=True)
    return step


def _bench_argv(dataset: str, pre: Path, res: Path, out: Path, *, device: str, epochs: int, iterations: int,
                workers: str, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "oxunet.cli", "bench", "train", "-d", dataset, "-c", "3d_fullres",
            "--device", device, "--epochs", str(epochs), "--iterations", str(iterations), "-np", workers,
            "--preprocessed-dir", str(pre), "--results-dir", str(res), "-o", str(out), *extra]


PREDICT_CHILD = r"""
import json, sys, time
import numpy as np, torch
from pathlib import Path
from oxunet.bench.synthetic import body_volume
from oxunet.inference import Predictor
from oxunet.networks import build_network

args = json.loads(sys.argv[1])
plans = json.loads(Path(args["plans"]).read_text())
ds = json.loads(Path(args["dataset_json"]).read_text())
cfg = plans["configurations"]["3d_fullres"]
cfg["spacing"] = args["plan_spacing"]
classes = args["classes"]
ds["labels"] = {"background": 0, **{f"organ{i}": i for i in range(1, classes)}}
torch.manual_seed(0)
net = build_network(cfg["architecture"], 1, classes, deep_supervision=False)
state = {k: v.clone() for k, v in net.state_dict().items()}
image, _ = body_volume(args["shape"], min(classes - 1, 12), seed=0)
out = {"shape": args["shape"], "spacing": args["spacing"], "plan_spacing": args["plan_spacing"], "classes": classes,
       "patch_size": cfg["patch_size"], "runs": {}}
segs = {}
for name, kw in args["runs"].items():
    p = Predictor.from_networks(plans, "3d_fullres", ds, [state], (0, 1, 2), tta="none", quiet=True, **kw)
    if args["device"] == "cuda":
        p.predict_array(image[:, :160, :160].copy(), args["spacing"])  # warm-up: cuDNN plans, allocator
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = p.predict_array(image, args["spacing"])
    wall = time.perf_counter() - t0
    t = {k: round(v, 3) for k, v in r.times.items()}
    non_network = sum(v for k, v in r.times.items() if k in ("preprocessing", "aggregation", "export"))
    out["runs"][name] = {"seconds": t, "wall_s": round(wall, 3), "non_network_s": round(non_network, 3),
                         "non_network_share": round(non_network / max(r.times.get("total", wall), 1e-9), 4),
                         "peak_gpu_memory_bytes": r.peak_gpu_memory_bytes, "peak_rss_bytes": r.peak_rss_bytes,
                         "on_device": r.on_device, "options": {k: str(v) for k, v in kw.items()}}
    segs[name] = r.segmentation
    print(name, out["runs"][name], flush=True)
names = list(segs)
for other in names[1:]:
    out["runs"][other]["agreement_with_" + names[0]] = float((segs[other] == segs[names[0]]).mean())
Path(args["out"]).write_text(json.dumps(out, indent=1))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "device-check-out")
    ap.add_argument("--hippocampus", help="preprocessed folder holding Dataset004_Hippocampus (prepare.sh makes it)")
    ap.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at a tiny size")
    ap.add_argument("--budget-s", type=float, default=540, help="stop starting steps after this many seconds")
    ap.add_argument("--skip", default="", help="comma-separated step names to skip")
    ap.add_argument("--cuda-tests", default="", help="pytest -k expression selecting some of the cuda tests")
    ap.add_argument("--iterations", type=int, default=60, help="training steps per timed epoch (GPU)")
    ap.add_argument("--workers", default="2,4,8,16", help="data-loading worker counts to time (GPU)")
    ap.add_argument("--compare-pin-memory", action="store_true", help="also time 4 workers without pinned memory")
    ap.add_argument("--compare-worker-augmentation", action="store_true",
                    help="also time nnU-Net's way (augmentation in 4 and 16 workers)")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    skip = {s for s in args.skip.split(",") if s}
    t_start = time.perf_counter()
    dry = args.dry_run
    import torch

    results: dict = {"format": "oxunet-device-check", "version": 1, "dry_run": dry, "steps": [],
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
                     "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count(),
                     "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        results["gpu_name"] = torch.cuda.get_device_name()
        results["cudnn"] = torch.backends.cudnn.version()
        results["cuda"] = torch.version.cuda
    device = "cpu" if dry else "cuda"
    work = Path(tempfile.mkdtemp(prefix="oxunet_check_"))

    def left() -> float:
        return args.budget_s - (time.perf_counter() - t_start)

    def write() -> None:
        results["seconds"] = round(time.perf_counter() - t_start, 2)
        (out_dir / "device_check.json").write_text(json.dumps(results, indent=1, default=str))

    # 1. the cuda tests (skipped, not failed, on a CPU)
    if "cuda_tests" not in skip:
        step = run_step("cuda_tests", [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-m", "cuda", "-q",
                                       "-p", "no:cacheprovider", "-o", "addopts="]
                        + (["-k", args.cuda_tests] if args.cuda_tests else []), min(240, left()), results, out_dir)
        summary = [line for line in step["tail"].splitlines() if " passed" in line or " skipped" in line
                   or " failed" in line]
        results["cuda_tests"] = summary[-1] if summary else None
        write()

    # 2. synthetic CT-like preprocessed data (made here: nothing to carry)
    from oxunet.bench.synthetic import write_preprocessed_dataset

    pre = work / "pre"
    if dry:
        ct = write_preprocessed_dataset(pre, 992, num_cases=5, shape=(40, 48, 40), patch_size=(32, 32, 32),
                                        batch_size=2, features=(4, 8, 16))
    else:
        ct = write_preprocessed_dataset(pre, 992, num_cases=6, shape=(160, 176, 176))
    results["ct_dataset"] = json.loads((ct / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"][
        "patch_size"]

    epochs, iters = (2, 2) if dry else (3, args.iterations)
    workers = "0,1" if dry else args.workers
    sets = []
    hippo_pre = Path(args.hippocampus) if args.hippocampus else None
    if hippo_pre is not None and (hippo_pre / "Dataset004_Hippocampus").is_dir():
        sets.append(("bench_train_hippocampus", "4", hippo_pre, ["--batch-size", "9"]))  # the full dataset's plan
    elif dry:
        sets.append(("bench_train_hippocampus", "992", pre, []))  # no Hippocampus beside a dry run: the synthetic set
    else:
        results["bench_train_hippocampus"] = {"error": f"no preprocessed Hippocampus under {hippo_pre}"}
    sets.append(("bench_train_ct", "992", pre, []))
    for name, ds_id, pre_dir, more in sets:
        if name in skip or left() < 60:
            continue
        def bench(step: str, workers_: str, extra_: list[str], limit: float) -> None:
            out = LOG_DIR / f"{step}.json"
            run_step(step, _bench_argv(ds_id, pre_dir, work / "res", out, device=device, epochs=epochs,
                                       iterations=iters, workers=workers_, extra=[*extra_, *more]),
                     min(limit, left() - 30), results, out_dir)
            if out.is_file():
                results[step] = json.loads(out.read_text())
            write()

        bench(name, workers, ["--no-compile"] if not dry else ["--precision", "fp32"], 200)
        comparisons = [  # (step, flag, workers, options): what a GPU session measures next to the default
            (name + "_no_pin", args.compare_pin_memory, "4", ["--no-pin-memory"]),  # the prefetch thread copies
            (name + "_workers_augment", args.compare_worker_augmentation, "4,16", ["--augment-on", "workers"]),
        ]
        for step, wanted, workers_, options in comparisons:
            if not dry and wanted and step not in skip and left() > 90:
                bench(step, workers_, ["--no-compile", "--data-loading-only", *options], 150)

    # 3. prediction of a CT-like case: on the device vs the Rust export path
    if "predict_ct" not in skip and left() > 30:
        spec = {"plans": str(ct / "nnUNetPlans.json"), "dataset_json": str(ct / "dataset.json"),
                "out": str(LOG_DIR / "predict_ct.json"), "device": device,
                "shape": [12, 40, 40] if dry else [200, 512, 512], "spacing": [3.0, 0.78, 0.78],
                "plan_spacing": [2.0, 1.0, 1.0] if not dry else [2.0, 1.0, 1.0],
                "classes": 5 if dry else 21,
                "runs": ({"device export": {"device": device, "precision": "fp32", "export_on": "device"},
                          "rust export": {"device": device, "precision": "fp32", "export_on": "cpu"}} if dry else
                         {"fp16 device": {"device": "cuda", "precision": "fp16", "export_on": "device"},
                          "fp16 rust export": {"device": "cuda", "precision": "fp16", "export_on": "cpu"},
                          "fp32 device": {"device": "cuda", "precision": "fp32", "export_on": "device"}})}
        run_step("predict_ct", [sys.executable, "-c", PREDICT_CHILD, json.dumps(spec)], max(10, left() - 5), results,
                 out_dir)
        p = LOG_DIR / "predict_ct.json"
        if p.is_file():
            results["predict_ct"] = json.loads(p.read_text())
    write()
    failed = [s["name"] for s in results["steps"] if s["rc"] != 0]
    print(f"[check] done in {results['seconds']} s; failed steps: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
