"""Side-by-side training accuracy: oxunet vs nnunetv2 on fold 0 of Hippocampus 3d_fullres.

Both train with the same short budget that fits a 2-core CPU (issue 4): batch size 2, 40 epochs x
25 iterations, 5 validation iterations, same plans and split; both validate the fold's cases on full
images, and both validation folders are scored by the same evaluator (nnunetv2's
``compute_metrics_on_folder``) against the original ground truth.

    W=/tmp/oxacc
    python benches/train_accuracy.py --work $W setup                   # plan + preprocess, both tools
    python benches/train_accuracy.py --work $W nnunetv2                # nnUNetTrainer subclass, fp32
    python benches/train_accuracy.py --work $W oxunet --precision fp32
    python benches/train_accuracy.py --work $W oxunet --precision auto
    python benches/train_accuracy.py --work $W oxunet --precision fp32 --seed 1   # a fixed seed: own run folder
    python benches/train_accuracy.py --work $W report                  # Dice + epoch times, JSON

``--threads`` pins torch's intra-op threads per run (runs side by side on a small machine share
it fairly); ``--epochs/--iters/--val-iters/--batch-size`` change the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASET = "Dataset004_Hippocampus"
CONFIG = "3d_fullres"


def _paths(work: Path) -> dict[str, Path]:
    return {
        "raw": work / "raw",
        "pre_nn": work / "nnunetv2" / "preprocessed",
        "res_nn": work / "nnunetv2" / "results",
        "pre_ox": work / "oxunet" / "preprocessed",
        "res_ox": work / "oxunet" / "results",
    }


def _env(work: Path, tool: str) -> dict:
    p = _paths(work)
    side = "nn" if tool == "nnunetv2" else "ox"
    return dict(os.environ, nnUNet_raw=str(p["raw"]), nnUNet_preprocessed=str(p[f"pre_{side}"]),
                nnUNet_results=str(p[f"res_{side}"]), OXUNET_RAW=str(p["raw"]),
                OXUNET_PREPROCESSED=str(p[f"pre_{side}"]), OXUNET_RESULTS=str(p[f"res_{side}"]))


def _default_dataset() -> Path:
    env = os.environ.get("OXUNET_HIPPOCAMPUS")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / DATASET,
                                                Path("/work/shared/data") / DATASET]:
        if (c / "dataset.json").is_file():
            return c
    raise SystemExit(f"{DATASET} not found: pass --dataset or set OXUNET_HIPPOCAMPUS")


def setup(args) -> None:
    work, p = args.work, _paths(args.work)
    p["raw"].mkdir(parents=True, exist_ok=True)
    link = p["raw"] / DATASET
    if not link.exists():
        link.symlink_to(Path(args.dataset or _default_dataset()).resolve())
    np_ = str(args.processes)
    subprocess.run([sys.executable, "-c", "from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import "
                    "plan_and_preprocess_entry; plan_and_preprocess_entry()", "-d", "4", "-c", CONFIG, "-np", np_],
                   env=_env(work, "nnunetv2"), check=True)
    subprocess.run([sys.executable, "-m", "oxunet.cli", "plan-and-preprocess", "-d", "4", "-c", CONFIG, "-np", np_,
                    "--quiet"], env=_env(work, "oxunet"), check=True)
    # Same plans and the same split for both: the planner is parity-tested, but the benchmark
    # must not depend on that, so oxunet trains with nnunetv2's plans file and splits.
    nn_dir, ox_dir = p["pre_nn"] / DATASET, p["pre_ox"] / DATASET
    nn_plans = json.loads((nn_dir / "nnUNetPlans.json").read_text())
    ox_plans = json.loads((ox_dir / "nnUNetPlans.json").read_text())
    same = nn_plans["configurations"][CONFIG] == ox_plans["configurations"][CONFIG]
    print(f"plans {CONFIG} identical: {same}")
    if not same:
        shutil.copy(nn_dir / "nnUNetPlans.json", ox_dir / "nnUNetPlans.json")
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    cases = sorted(f.name[: -len(".b2nd")] for f in (nn_dir / f"nnUNetPlans_{CONFIG}").glob("*.b2nd")
                   if not f.name.endswith("_seg.b2nd"))
    splits = generate_crossval_split(cases, seed=12345, n_splits=5)
    for d in (nn_dir, ox_dir):
        (d / "splits_final.json").write_text(json.dumps(splits, indent=1))
    print(f"{len(cases)} cases, fold 0: {len(splits[0]['train'])} train / {len(splits[0]['val'])} val")


NNUNET_CHILD = r"""
import json, sys, torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
epochs, iters, val_iters, batch, threads, pre = sys.argv[1:7]
torch.set_num_threads(int(threads))

class nnUNetTrainerBench(nnUNetTrainer):
    # the issue's CPU budget; batch size goes through the plans dict nnU-Net reads it from
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cpu")):
        plans["configurations"][configuration]["batch_size"] = int(batch)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(epochs)
        self.num_iterations_per_epoch = int(iters)
        self.num_val_iterations_per_epoch = int(val_iters)

d = pre + "/Dataset004_Hippocampus"
plans = json.load(open(d + "/nnUNetPlans.json"))
dj = json.load(open(d + "/dataset.json"))
plans["continue_training"] = False  # nnunetv2 2.8.1 passes this flag through the plans dict
t = nnUNetTrainerBench(plans, "3d_fullres", 0, dj, torch.device("cpu"))
t.run_training()
t.perform_actual_validation(False)
"""


def run_nnunetv2(args) -> None:
    env = _env(args.work, "nnunetv2")
    env.setdefault("nnUNet_n_proc_DA", str(args.workers))
    env["nnUNet_compile"] = "f"
    t0 = time.time()
    subprocess.run([sys.executable, "-c", NNUNET_CHILD, str(args.epochs), str(args.iters), str(args.val_iters),
                    str(args.batch_size), str(args.threads), str(_paths(args.work)["pre_nn"])], env=env, check=True)
    _record(args.work, "nnunetv2", {"wall_s": time.time() - t0, "threads": args.threads, "workers": args.workers})


def run_oxunet(args) -> None:
    env = _env(args.work, "oxunet")
    env["OMP_NUM_THREADS"] = str(args.threads)
    trainer = f"oxunetBench_{args.precision}" + ("" if args.seed is None else f"_seed{args.seed}")
    cfg = args.work / f"{trainer}.json"  # a trainer config named after the run, so every run gets its own folder
    config = {"name": trainer, "base": "nnUNetTrainer"}
    if args.seed is not None:
        config["seed"] = args.seed
    cfg.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "oxunet.cli", "train", "4", CONFIG, "0", "--epochs", str(args.epochs),
           "--iters-per-epoch", str(args.iters), "--val-iters", str(args.val_iters), "--batch-size",
           str(args.batch_size), "--precision", args.precision, "--device", "cpu", "--num-workers", str(args.workers),
           "-tr", str(cfg), "--quiet"]
    t0 = time.time()
    subprocess.run(cmd, env=env, check=True)
    _record(args.work, trainer.replace("oxunetBench", "oxunet", 1), {"wall_s": time.time() - t0, "threads": args.threads,
                                                     "workers": args.workers})


def _record(work: Path, key: str, value: dict) -> None:
    f = work / "runs.json"
    runs = json.loads(f.read_text()) if f.is_file() else {}
    runs[key] = value
    f.write_text(json.dumps(runs, indent=1))


def _epoch_times_nnunet(fold_dir: Path) -> list[float]:
    from oxunet.networks import load_nnunet_checkpoint

    log = load_nnunet_checkpoint(fold_dir / "checkpoint_final.pth")["logging"]
    return [e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])]


def _epoch_times_oxunet(fold_dir: Path) -> list[float]:
    epochs = json.loads((fold_dir / "training_log.json").read_text())["epochs"]
    return [e["epoch_time_s"] for e in epochs if e["epoch_time_s"] is not None]


def _score(val_dir: Path, gt_dir: Path, out: Path) -> dict:
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    s = compute_metrics_on_folder(str(gt_dir), str(val_dir), str(out), SimpleITKIO(), ".nii.gz", [1, 2], None, 2)
    return {"foreground_mean_dice": s["foreground_mean"]["Dice"],
            "per_class_dice": {k: v["Dice"] for k, v in s["mean"].items()}}


def report(args) -> None:
    import statistics

    p = _paths(args.work)
    runs = json.loads((args.work / "runs.json").read_text()) if (args.work / "runs.json").is_file() else {}
    folds = {"nnunetv2": p["res_nn"] / DATASET / f"nnUNetTrainerBench__nnUNetPlans__{CONFIG}" / "fold_0"}
    for run in sorted((p["res_ox"] / DATASET).glob(f"oxunetBench_*__nnUNetPlans__{CONFIG}")):
        folds[run.name.split("__")[0].replace("oxunetBench", "oxunet", 1)] = run / "fold_0"
    gt = p["pre_nn"] / DATASET / "gt_segmentations"
    result = {}
    for name, fold in folds.items():
        if not (fold / "checkpoint_final.pth").is_file():
            continue
        times = _epoch_times_nnunet(fold) if name == "nnunetv2" else _epoch_times_oxunet(fold)
        entry = {"median_epoch_s": statistics.median(times), "epochs": len(times), **runs.get(name, {})}
        val = fold / "validation"
        if any(val.glob("*.nii.gz")):
            entry.update(_score(val, gt, args.work / f"summary_{name}.json"))
        result[name] = entry
    if "nnunetv2" in result:
        for name, e in result.items():
            e["epoch_time_ratio_vs_nnunetv2"] = e["median_epoch_s"] / result["nnunetv2"]["median_epoch_s"]
    print(json.dumps(result, indent=1))
    (args.work / "report.json").write_text(json.dumps(result, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("-np", "--processes", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--iters", type=int, default=25)
    ap.add_argument("--val-iters", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--workers", type=int, default=1, help="data-augmentation worker processes")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "auto", "bf16"])
    ap.add_argument("--seed", type=int, help="oxunet's training seed (default: drawn once and stored)")
    ap.add_argument("step", choices=["setup", "nnunetv2", "oxunet", "report"])
    args = ap.parse_args(argv)
    args.work = args.work.resolve()
    {"setup": setup, "nnunetv2": run_nnunetv2, "oxunet": run_oxunet, "report": report}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
