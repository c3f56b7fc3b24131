"""Training throughput on CPU: iterations/s and where the time goes, Hippocampus 3d_fullres.

Per iteration: data wait (time blocked on the loader: patch sampling, reading, augmentation in
the background workers), host→device copy, forward + loss, backward, optimizer (grad clip + SGD
step). The first iteration is a warm-up and reported apart. Precisions: fp32 and ``auto``
(bf16 autocast on CPUs with native bf16, see oxunet.training.precision). Optionally nnunetv2's
``nnUNetTrainer.train_step`` (its network from dynamic-network-architectures, its DC_and_CE loss
with deep supervision, its SGD; fp32 as nnU-Net runs on CPU) against ours on the same batches,
compute only, alternating step by step so the machine's load hits both alike (``--nnunet``).

Data: ``--preprocessed-dir`` (a folder holding our preprocessed Dataset004_Hippocampus), else the
first ``--cases`` raw cases of the shared Hippocampus are planned and preprocessed into ``--work``
(cached), with 3d_fullres patch size [40, 56, 40] as nnU-Net plans for the full dataset.

    python benches/training.py --iters 5                    # fp32 and auto, batch 2
    python benches/training.py --iters 20 --nnunet --workers 2 --json out.json
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests"))

DATASET = "Dataset004_Hippocampus"
NNUNET_PATCH = [40, 56, 40]  # nnunetv2 2.8.1's 3d_fullres plan for the whole Hippocampus dataset


def prepare(work: Path, cases: int) -> Path:
    """Plan + preprocess (3d_fullres) the first `cases` Hippocampus cases into work/pre (cached)."""
    from oxunet.dataset import resolve_paths
    from oxunet.planning import plan_experiment
    from oxunet.preprocessing.run import preprocess_dataset
    from synthetic import copy_dataset_subset, find_shared_dataset

    pre = work / "pre"
    marker = work / f"ready-{cases}"
    if marker.is_file():
        return pre
    src = Path(os.environ.get("OXUNET_HIPPOCAMPUS", "") or (find_shared_dataset(DATASET) or ""))
    if not (src / "dataset.json").is_file():
        sys.exit("Hippocampus raw data not found: set OXUNET_HIPPOCAMPUS or pass --preprocessed-dir")
    raw = work / "raw"
    if not (raw / DATASET).is_dir():
        copy_dataset_subset(src, raw / DATASET, cases)
    paths = resolve_paths(raw_dir=raw, preprocessed_dir=pre, results_dir=work / "res", environ={})
    plans = plan_experiment("4", paths, quiet=True, num_processes=2)
    plans["configurations"]["3d_fullres"]["patch_size"] = NNUNET_PATCH
    (pre / DATASET / "nnUNetPlans.json").write_text(json.dumps(plans, indent=1))
    preprocess_dataset("4", paths, configurations=["3d_fullres"], num_processes=[2], quiet=True)
    marker.write_text("ok")
    return pre


def _summ(xs: list[float]) -> dict:
    return {"mean_s": statistics.fmean(xs), "median_s": statistics.median(xs)} if xs else {}


def bench_oxunet(pre: Path, work: Path, precision: str, iters: int, batch: int, workers: int) -> tuple[dict, list]:
    from oxunet.dataset import resolve_paths
    from oxunet.training.config import TrainerConfig
    from oxunet.training.loader import epoch_loader
    from oxunet.training.precision import autocast
    from oxunet.training.trainer import Trainer

    paths = resolve_paths(preprocessed_dir=pre, results_dir=work / "res", environ={})
    cfg = TrainerConfig(name="bench", precision=precision, batch_size=batch, num_workers=workers, seed=0)
    tr = Trainer("4", "3d_fullres", 0, paths=paths, config=cfg, quiet=True)
    tr._build()
    tr.network.train()
    parts = {k: [] for k in ("data_wait", "to_device", "forward_loss", "backward", "optimizer", "total")}
    batches = []
    it = epoch_loader(tr.train_spec, iters + 1, 0, 0, num_workers=workers)
    for i in range(iters + 1):
        t0 = time.perf_counter()
        b = next(it)
        t1 = time.perf_counter()
        data, target = tr._to_device(b)
        t2 = time.perf_counter()
        tr.optimizer.zero_grad(set_to_none=True)
        with autocast(tr.precision, tr.device):
            out = tr._forward(data)
            loss = tr.loss(out, target)
        t3 = time.perf_counter()
        if tr.grad_scaler is not None:
            tr.grad_scaler.scale(loss).backward()
        else:
            loss.backward()
        t4 = time.perf_counter()
        if tr.grad_scaler is not None:
            tr.grad_scaler.unscale_(tr.optimizer)
        torch.nn.utils.clip_grad_norm_(tr._trainable_params(), 12)
        if tr.grad_scaler is not None:
            tr.grad_scaler.step(tr.optimizer)
            tr.grad_scaler.update()
        else:
            tr.optimizer.step()
        float(loss.detach())  # waits for the step to finish (as the trainer does)
        t5 = time.perf_counter()
        if i == 0:
            warm = t5 - t0
            batches.append(b)
            continue
        if len(batches) < 3:
            batches.append(b)
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
            parts[k].append(v)
    total = sum(parts["total"])
    res = {"impl": "oxunet", "precision": tr.precision, "requested": precision, "batch_size": tr.batch_size,
           "patch_size": list(tr.cfg["patch_size"]), "workers": workers, "iters": iters,
           "warmup_s": warm, "iters_per_s": iters / total if total else None,
           **{k: _summ(v) for k, v in parts.items()},
           "data_wait_fraction": sum(parts["data_wait"]) / total if total else None}
    return res, batches


def bench_compute(pre: Path, work: Path, batches: list, steps: int, precisions: list[str]) -> dict:
    """Compute-only step times on the same batches, alternating in rounds (load drift hits all
    alike): nnunetv2's ``nnUNetTrainer.train_step`` (its network, DC_and_CE loss with deep
    supervision, SGD; fp32 as nnU-Net on CPU) and ours (:func:`training_step`) per precision."""
    import numpy as np
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from oxunet.dataset import resolve_paths
    from oxunet.training.config import TrainerConfig
    from oxunet.training.precision import training_step
    from oxunet.training.trainer import Trainer

    plans = json.loads((pre / DATASET / "nnUNetPlans.json").read_text())
    c = plans["configurations"]["3d_fullres"]
    arch = c["architecture"]
    torch.manual_seed(0)
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1, 3,
                                 deep_supervision=True)
    n = len(arch["arch_kwargs"]["strides"]) - 1
    w = np.array([1 / 2**i for i in range(n)])
    w[-1] = 0
    loss = DeepSupervisionWrapper(DC_and_CE_loss({"batch_dice": c["batch_dice"], "smooth": 1e-5, "do_bg": False, "ddp": False},
                                                 {}, weight_ce=1, weight_dice=1, ignore_label=None,
                                                 dice_class=MemoryEfficientSoftDiceLoss), w / w.sum())

    class _Self:  # the attributes nnUNetTrainer.train_step reads
        device = torch.device("cpu")
        grad_scaler = None

    me = _Self()
    me.network, me.loss = net, loss
    me.optimizer = torch.optim.SGD(net.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True)
    net.train()
    paths = resolve_paths(preprocessed_dir=pre, results_dir=work / "res", environ={})
    ours = {}
    for p in precisions:
        tr = Trainer("4", "3d_fullres", 0, paths=paths, quiet=True,
                     config=TrainerConfig(name="bench", precision=p, batch_size=batches[0]["data"].shape[0], seed=0))
        tr._build()
        tr.network.train()
        ours[p] = tr
    times: dict[str, list[float]] = {"nnunetv2 fp32": [], **{f"oxunet {t.precision}": [] for t in ours.values()}}
    for i in range(steps + 1):
        b = batches[i % len(batches)]
        t = time.perf_counter()
        nnUNetTrainer.train_step(me, {"data": b["data"], "target": b["target"]})
        if i:
            times["nnunetv2 fp32"].append(time.perf_counter() - t)
        for tr in ours.values():
            t = time.perf_counter()
            float(training_step(tr._forward, tr.loss, tr.optimizer, tr._trainable_params(), b["data"], b["target"],
                                tr.precision, tr.device, tr.grad_scaler, 12.0))
            if i:
                times[f"oxunet {tr.precision}"].append(time.perf_counter() - t)
    return {"impl": "compute-only, alternating", "steps": steps, **{k: _summ(v) for k, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per precision (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="loader workers (0: in-process)")
    ap.add_argument("--precision", nargs="+", default=["fp32", "auto"])
    ap.add_argument("--nnunet", action="store_true", help="also time nnunetv2's train_step on the same batches")
    ap.add_argument("--preprocessed-dir", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/oxunet-bench-training"))
    ap.add_argument("--cases", type=int, default=30, help="raw cases to preprocess when no --preprocessed-dir")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    pre = a.preprocessed_dir or prepare(a.work, a.cases)
    load = os.getloadavg()
    info = {"host": platform.node(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "loadavg_start": load}
    print(json.dumps(info))
    results, batches = [], []
    for p in a.precision:
        r, b = bench_oxunet(pre, a.work, p, a.iters, a.batch_size, a.workers)
        batches = batches or b
        results.append(r)
        print(f"oxunet {r['requested']}->{r['precision']}: {r['iters_per_s']:.3f} it/s; per iteration (mean s): "
              + ", ".join(f"{k} {r[k]['mean_s']:.3f}" for k in ("data_wait", "to_device", "forward_loss", "backward",
                                                                  "optimizer", "total"))
              + f"; warm-up {r['warmup_s']:.2f}s")
    if a.nnunet:
        r = bench_compute(pre, a.work, batches, max(2, min(a.iters, 5)), a.precision)
        results.append(r)
        print(f"compute-only step, same batches, alternating ({r['steps']} steps): "
              + "; ".join(f"{k} median {v['median_s']:.3f}s" for k, v in r.items() if isinstance(v, dict)))
    info["loadavg_end"] = os.getloadavg()
    print(json.dumps({"loadavg_end": info["loadavg_end"]}))
    if a.json:
        a.json.write_text(json.dumps({"info": info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
