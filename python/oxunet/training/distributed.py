"""Multi-process training with torch.distributed (DDP), as nnU-Net's ``nnUNetv2_train --num_gpus N``.

* Launch: ``oxunet train ... --num-gpus N`` spawns N ranks on this machine (:func:`launch`), or
  ``torchrun --nproc-per-node N -m oxunet train ...``: ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``
  (and ``MASTER_ADDR`` / ``MASTER_PORT``) are read from the environment (:func:`init_from_env`),
  which also covers multi-node runs. Backend: NCCL on CUDA, gloo on CPU (``--device cpu`` runs N
  CPU ranks, which is how the tests exercise DDP).
* The plan's (or ``--batch-size``) batch is the GLOBAL batch, split across ranks with nnU-Net's
  ``_set_batch_size_and_oversample`` rule (:func:`split_batch`), including its per-rank oversampling
  percentages, so the whole step forces the same samples to foreground as one process would.
* Seeding: every rank starts from the same seed (rank 0's, broadcast) so DDP's initial weights
  agree; rank r draws its batches from its own streams (loader streams ``2r`` / ``2r + 1``), the
  equivalent of a DistributedSampler's per-rank shard. Rank 0's streams are the single-process ones.
* Batch Dice: the per-rank Dice terms (after summing over the local batch) are all-gathered with
  gradient (:class:`AllGatherGrad`, nnU-Net's) and summed, so every rank optimises the global batch
  Dice. Deviation: nnU-Net gathers the (batch, class) tensors before summing, which fails when ranks
  hold different batch sizes; summing first is the same value and works for uneven splits.
* Logging: train/val losses and pseudo-Dice tp/fp/fn are gathered to every rank; only rank 0 writes
  checkpoints, logs, progress.png and runs the final validation.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class RankSplit:
    """One rank's share of the global batch."""

    batch_size: int
    oversample_foreground_percent: float


def split_batch(global_batch_size: int, world_size: int, oversample_foreground_percent: float,
                probabilistic: bool = False) -> list[RankSplit]:
    """nnU-Net's ``_set_batch_size_and_oversample`` for every rank: sizes differ by at most one
    (the first ranks take the remainder); deterministic oversampling keeps the global batch's
    forced samples (the last ``b − round(b·(1−p))``) on the ranks that hold those positions;
    probabilistic oversampling keeps ``p`` on every rank."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if global_batch_size < world_size:
        raise ValueError(f"cannot split a batch of {global_batch_size} across {world_size} ranks "
                         "(the batch size must be at least the number of ranks)")
    b, p = int(global_batch_size), float(oversample_foreground_percent)
    sizes = [b // world_size + (1 if (b // world_size) * world_size + i < b else 0) for i in range(world_size)]
    if world_size == 1 or probabilistic:
        return [RankSplit(s, p) for s in sizes]
    forced = [not i < round(b * (1 - p)) for i in range(b)]
    out = []
    for r, size in enumerate(sizes):
        lo, hi = sum(sizes[:r]), sum(sizes[:r + 1])
        if hi / b < 1 - p:
            q = 0.0
        elif lo / b > 1 - p:
            q = 1.0
        else:
            q = sum(forced[lo:hi]) / size
        out.append(RankSplit(size, q))
    return out


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", rank()))


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_from_env(device_type: str) -> bool:
    """Join the process group torchrun describes in the environment; False when not under torchrun."""
    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend_for(device_type), init_method="env://")
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank_: int, fn: Callable[..., Any], nprocs: int, port: int, backend: str, args: tuple) -> None:
    os.environ.update({"RANK": str(rank_), "LOCAL_RANK": str(rank_), "WORLD_SIZE": str(nprocs),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if backend == "nccl":
        torch.cuda.set_device(rank_)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank_, world_size=nprocs)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], nprocs: int, *args: Any, backend: str = "gloo") -> None:
    """Run ``fn(*args)`` in ``nprocs`` spawned processes that share one process group (this machine).
    ``fn`` must be importable (a module-level function). Raises if any rank fails."""
    import torch.multiprocessing as mp

    mp.spawn(_entry, args=(fn, nprocs, _free_port(), backend, args), nprocs=nprocs, join=True)


class AllGatherGrad(torch.autograd.Function):
    """all_gather that passes gradients back (nnU-Net's / Lightning's): forward stacks every rank's
    tensor; backward all-reduces the incoming gradient and returns this rank's slice."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(out, tensor.contiguous())
        return torch.stack(out, 0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[dist.get_rank()]


def gather_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks, differentiable (identity outside DDP)."""
    if not is_distributed():
        return t
    return AllGatherGrad.apply(t).sum(0, dtype=torch.float32)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (``[obj]`` outside DDP)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def train_rank(trainer_args: tuple, trainer_kwargs: dict, run_kwargs: dict | None = None) -> None:
    """One rank of a DDP training (the process group is already joined): build the Trainer, run it.
    ``trainer_kwargs["options"]`` (a RunOptions) carries every run flag (``--npz``, ``--val-best``...)
    to this rank; ranks other than 0 are quiet."""
    from .trainer import Trainer

    kwargs = dict(trainer_kwargs)
    if rank() != 0:
        kwargs["quiet"] = True
        kwargs["on_epoch_end"] = None
    Trainer(*trainer_args, **kwargs).run(**(run_kwargs or {}))


def train_rank_with_class(trainer_cls: type, trainer_args: tuple, trainer_kwargs: dict) -> None:
    """:func:`train_rank` for a Trainer subclass (``-tr module:Class``); the class must be importable."""
    kwargs = dict(trainer_kwargs)
    if rank() != 0:
        kwargs["quiet"] = True
        kwargs["on_epoch_end"] = None
    trainer_cls(*trainer_args, **kwargs).run()
