"""``oxunet bench train``: nnU-Net's two benchmark trainers in one command.

nnU-Net ships ``nnUNetTrainerBenchmark_5epochs`` (the real data pipeline) and
``..._noDataLoading`` (one synthetic batch reused, so the GPU never waits) so users can see whether
data loading holds their GPU back: both train 5 epochs and report the fastest epoch. Here one
process builds the trainer once (one ``torch.compile``) and times, for each requested worker count,
epochs fed by the real pipeline, plus epochs fed by a batch already on the device. No validation,
no checkpoints. ``benchmark_result.json`` holds every figure with the GPU, torch/cuDNN versions,
workers, precision, compile state and where augmentation ran.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

RESULT_FORMAT = "oxunet-benchmark-train"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch(tr, batches, device, waits: list | None = None) -> float:
    """Seconds for one epoch; `waits` gets the seconds the step spent waiting for its batch (the
    data pipeline's share: zero when the GPU never starves)."""
    _sync(device)
    t0 = time.perf_counter()
    waited = 0.0
    it = iter(batches)
    while True:
        t = time.perf_counter()
        b = next(it, None)
        waited += time.perf_counter() - t
        if b is None:
            break
        tr.train_step(b)
    _sync(device)
    if waits is not None:
        waits.append(waited)
    return time.perf_counter() - t0


def _synthetic_batch(tr):
    """One real batch, augmented and moved to the device once (nnU-Net's noDataLoading trainer
    reuses one dummy batch the same way)."""
    from ..training.device_augment import augment_batch
    from ..training.loader import epoch_loader

    batch = next(iter(epoch_loader(tr.train_spec, 1, tr.seed, 0, num_workers=0)))
    batch = augment_batch(tr.train_augmenter, batch, tr.device)
    target = batch["target"]
    moved = [t.to(tr.device) for t in target] if isinstance(target, list) else target.to(tr.device)
    return {"data": batch["data"].to(tr.device), "target": moved}


def _environment(tr) -> dict:
    import torch

    cuda = tr.device.type == "cuda"
    return {"device": str(tr.device), "gpu_name": torch.cuda.get_device_name(tr.device) if cuda else None,
            "torch_version": torch.__version__, "cudnn_version": torch.backends.cudnn.version() if cuda else None,
            "cpu_count": os.cpu_count(), "hostname": platform.node(), "torch_threads": torch.get_num_threads()}


def bench_train(dataset, configuration: str, fold=0, *, paths, epochs: int = 5, iterations: int = 250,
                num_workers: Sequence[int] = (12,), data_loading: bool = True, no_data_loading: bool = True,
                device="cuda", precision: str = "auto", compile: bool | None = None, augment_on: str | None = None,
                batch_size: int | None = None, plans_name: str = "nnUNetPlans", seed: int = 0, quiet: bool = False,
                pin_memory: bool | None = None,
                output: str | os.PathLike | None = None, log=print) -> dict:
    """Times ``epochs`` epochs of ``iterations`` training steps per setting; returns (and writes) the result."""
    import torch

    from ..training.config import TrainerConfig
    from ..training.trainer import Trainer

    cfg = TrainerConfig(name="nnUNetTrainerBenchmark_5epochs", epochs=epochs, iterations_per_epoch=iterations,
                        val_iterations=0, precision=precision, compile=compile, augment_on=augment_on,
                        batch_size=batch_size, progress_plot=False, seed=seed, num_workers=0)
    tr = Trainer(dataset, configuration, fold, paths=paths, config=cfg, plans_name=plans_name, device=device,
                 quiet=True)
    torch.manual_seed(seed)
    tr.seed = seed
    t_build = time.perf_counter()
    tr._build()
    tr.network.train()
    pin = tr.device.type == "cuda" if pin_memory is None else bool(pin_memory)
    runs = []

    def report(run: dict) -> None:
        runs.append(run)
        if not quiet:
            log(f"bench train: {run['setting']}: fastest epoch {run['fastest_epoch_s']:.2f} s "
                f"({run['iterations_per_s']:.1f} it/s), epochs {[round(t, 2) for t in run['epoch_s']]}")

    warm = None
    if no_data_loading:
        batch = _synthetic_batch(tr)
        warm = _epoch(tr, [batch] * min(3, iterations), tr.device)  # compile / cuDNN autotune outside the timing
        times = [_epoch(tr, [batch] * iterations, tr.device) for _ in range(epochs)]
        report(_run("no data loading", None, times, iterations))
    if data_loading:
        for n in num_workers:
            times = []
            waits: list[float] = []
            for e in range(epochs):
                times.append(_epoch(tr, tr.train_batches(e, pin, num_workers=int(n)), tr.device, waits))
            run = _run(f"data loading, {n} workers", int(n), times, iterations)
            run["waiting_for_data_s"] = waits
            report(run)
        tr.close_loaders()
    result = {
        "format": RESULT_FORMAT, "version": 1, "dataset": tr.dataset_name, "configuration": configuration,
        "fold": tr.fold, "plans": plans_name, "patch_size": list(tr.cfg["patch_size"]), "batch_size": tr.batch_size,
        "epochs": epochs, "iterations_per_epoch": iterations, "precision": tr.precision, "compiled": tr.compiled,
        "augment_on": tr.augment_on, "pin_memory": pin, "warmup_s": warm, "setup_s": time.perf_counter() - t_build,
        **_environment(tr), "runs": runs,
    }
    if tr.device.type == "cuda":
        result["peak_gpu_memory_bytes"] = int(torch.cuda.max_memory_allocated(tr.device))
    nodl = next((r for r in runs if r["num_workers"] is None), None)
    for r in runs:
        if nodl is not None and r is not nodl:
            r["slowdown_vs_no_data_loading"] = r["fastest_epoch_s"] / nodl["fastest_epoch_s"] - 1
    out = Path(output) if output is not None else tr.fold_dir / "benchmark_result.json"
    write_json(out, result)
    result["output_file"] = str(out)
    return result


def _run(setting: str, workers: int | None, times: list[float], iterations: int) -> dict:
    fastest = min(times)
    return {"setting": setting, "num_workers": workers, "epoch_s": times, "fastest_epoch_s": fastest,
            "iterations_per_s": iterations / fastest, "fastest_epoch_250_iterations_s": fastest * 250 / iterations}


def write_json(path: Path, obj: dict) -> None:
    from ..io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
