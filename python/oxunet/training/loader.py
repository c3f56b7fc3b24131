"""Training / validation batches following nnU-Net's ``nnUNetDataLoader`` rules (spec §9).

Cases are drawn uniformly with replacement; sample ``j`` of a batch is forced to contain
foreground per :func:`oxunet.kernels.foreground_flags`; boxes come from
:func:`oxunet.kernels.sample_patch_box` with the enlarged initial patch and ``need_to_pad =
initial − final``; patches are read from the memory-mapped cases (never whole datasets), augmented
per sample and stacked.

Augmentation on the device (``--augment-on device``): with ``augment_in_workers=False`` the workers
only read and crop the enlarged patches and stack them (``data``/``seg`` plus an ``aug_seed``
per batch); the training process augments the whole batch on its device
(:mod:`oxunet.training.device_augment`), where the same transforms draw the same per-sample
parameters from a generator seeded by ``aug_seed``.

Determinism: every epoch's stream is a pure function of ``(seed, epoch, stream, worker)``; the
DataLoader returns worker batches round-robin in a fixed order, so an epoch gives the same
batches for the same number of workers (a resumed run reproduces an uninterrupted one).
Workers are started per epoch (fork is cheap next to an epoch of training).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..kernels import foreground_flags, sample_patch_box
from ..preprocessing.storage import open_case, read_patch


def default_num_workers() -> int:
    """nnU-Net's ``nnUNet_n_proc_DA`` (default 12), capped at the CPU count."""
    env = os.environ.get("nnUNet_n_proc_DA")
    n = int(env) if env not in (None, "") else 12
    return max(0, min(n, os.cpu_count() or 1))


@dataclass
class LoaderSpec:
    """What one batch stream needs (picklable: it travels to the workers)."""

    folder: str
    cases: list[str]
    batch_size: int
    patch_size: tuple[int, ...]  # crop size read from disk (training: the initial, enlarged patch)
    final_patch_size: tuple[int, ...]
    oversample_foreground_percent: float
    probabilistic_oversampling: bool
    has_ignore: bool
    augmenter: object  # oxunet.training.augmentation.Augmenter
    prev_stage_folder: str | None = None  # cascade: the previous stage's segmentations (seg channel 1)
    augment_in_workers: bool = True  # False: batches of raw enlarged patches, augmented on the device


def need_to_pad(patch_size: Sequence[int], final_patch_size: Sequence[int]) -> tuple[int, ...]:
    """nnU-Net's padding allowance: ``initial − final`` per axis (the per-case widening for small
    cases is applied inside sample_patch_box)."""
    return tuple(int(i) - int(f) for i, f in zip(patch_size, final_patch_size))


class BatchStream:
    """Makes batches for one spec from a numpy Generator (boxes, cases) and a torch Generator (augmentation)."""

    def __init__(self, spec: LoaderSpec):
        self.spec = spec
        self._handles: dict = {}
        two_d = len(spec.patch_size) == 2
        # a 2D configuration reads (1, y, z) patches from the 3D-stored case: a random slice
        self._read_patch = (1, *spec.patch_size) if two_d else tuple(spec.patch_size)
        self._ntp = (0, *need_to_pad(spec.patch_size, spec.final_patch_size)) if two_d else need_to_pad(
            spec.patch_size, spec.final_patch_size)
        self._two_d = two_d

    def _handle(self, case: str):
        h = self._handles.get(case)
        if h is None:
            h = self._handles[case] = open_case(self.spec.folder, case)
        return h

    def _prev_patch(self, case: str, shape, box) -> np.ndarray:
        """The previous stage's seg cropped with the data's box, padded with -1 (nnU-Net's loader)."""
        from ..kernels import crop_and_pad
        from .cascade import load_stage_segmentation

        prev = load_stage_segmentation(cast(str, self.spec.prev_stage_folder), case, shape)  # set: cascade only
        return crop_and_pad(np.asarray(prev)[None], box, -1, dtype=np.int16)

    def batch(self, rng: np.random.Generator, gen: torch.Generator) -> dict:
        """One batch: augmented per sample, or (``augment_in_workers=False``) the raw patches."""
        s = self.spec
        forced = foreground_flags(s.batch_size, s.oversample_foreground_percent, s.probabilistic_oversampling, rng)
        datas: list[torch.Tensor] = []
        segs: list[Any] = []  # tensors, or per-resolution lists of them after deep-supervision augmentation
        keys = []
        for j in range(s.batch_size):
            case = s.cases[int(rng.integers(len(s.cases)))]
            h = self._handle(case)
            box = sample_patch_box(h.shape, self._read_patch, h.class_locations, bool(forced[j]), self._ntp, rng,
                                   has_ignore=s.has_ignore)
            data_np, seg_np = read_patch(h, box)
            if s.prev_stage_folder is not None:
                seg_np = np.concatenate([seg_np, self._prev_patch(case, h.shape, box)])
            data_t, seg_t = torch.from_numpy(data_np), torch.from_numpy(seg_np)
            if self._two_d:
                data_t, seg_t = data_t[:, 0], seg_t[:, 0]
            seg_out: Any = seg_t
            if s.augment_in_workers:
                data_t, seg_out = cast(Callable, s.augmenter)(data_t, seg_t, gen)
            datas.append(data_t)
            segs.append(seg_out)
            keys.append(case)
        data = torch.stack(datas).float()
        if not s.augment_in_workers:
            return {"data": data, "seg": torch.stack(segs), "keys": keys}
        target: torch.Tensor | list[torch.Tensor]
        if isinstance(segs[0], list):
            target = [torch.stack([sg[i] for sg in segs]) for i in range(len(segs[0]))]
        else:
            target = torch.stack(segs)
        return {"data": data, "target": target, "keys": keys}


def augmentation_seed(seed: int, epoch: int, stream: int, index: int) -> int:
    """The seed of batch ``index``'s device augmentation: a pure function of the batch's place
    in the run, so it does not depend on the number of workers."""
    ss = np.random.SeedSequence([int(seed), int(epoch), int(stream), int(index), 0xA06])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _seeds(seed: int, epoch: int, stream: int, worker: int) -> tuple[np.random.Generator, torch.Generator]:
    ss = np.random.SeedSequence([int(seed), int(epoch), int(stream), int(worker)])
    rng = np.random.default_rng(ss)
    gen = torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return rng, gen


class EpochBatches(IterableDataset):
    """``num_batches`` batches of one epoch; workers split them round-robin (worker w makes batches
    w, w + n, ...), matching the DataLoader's in-order collection."""

    def __init__(self, spec: LoaderSpec, num_batches: int, seed: int, epoch: int, stream: int):
        self.spec, self.num_batches, self.seed, self.epoch, self.stream = spec, num_batches, seed, epoch, stream

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, n = (0, 1) if info is None else (info.id, info.num_workers)
        torch.set_num_threads(1)
        rng, gen = _seeds(self.seed, self.epoch, self.stream, wid)
        maker = BatchStream(self.spec)
        for index in range(wid, self.num_batches, n):
            yield self._tag(maker.batch(rng, gen), index)

    def _tag(self, batch: dict, index: int) -> dict:
        if not self.spec.augment_in_workers:
            batch["aug_seed"] = augmentation_seed(self.seed, self.epoch, self.stream, index)
        return batch


def epoch_loader(spec: LoaderSpec, num_batches: int, seed: int, epoch: int, *, stream: int = 0,
                 num_workers: int = 0, pin_memory: bool = False) -> Iterator[dict]:
    """An iterator over one epoch's batches (``num_workers`` = 0: in this process)."""
    ds = EpochBatches(spec, num_batches, seed, epoch, stream)
    if num_workers <= 0:
        # in-process: keep the caller's torch thread count
        info_free = iter(_inprocess(ds))
        return info_free
    workers = min(num_workers, num_batches)
    return _worker_deaths_named(iter(DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                                                prefetch_factor=max(2, 6 // max(workers, 1)),
                                                persistent_workers=False)))


def _worker_deaths_named(batches: Iterator[dict]) -> Iterator[dict]:
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except RuntimeError as e:
            named = worker_death_error(e)
            if named is None:
                raise
            raise named from None
        yield batch


def worker_death_error(exc: BaseException):
    """Torch notices a dead loader worker within seconds (its SIGCHLD handler raises wherever the
    main thread is, or the next batch does) with a RuntimeError that reads like an internal
    error; this is the TrainingError naming the worker and the likely cause (None: not that)."""
    import re

    from ..errors import TrainingError

    text = str(exc)
    if not isinstance(exc, RuntimeError) or "DataLoader worker" not in text:
        return None
    # torch says "DataLoader worker (pid 123) is killed by signal: ..." from its SIGCHLD handler and
    # "DataLoader worker (pid(s) 123, 456) exited unexpectedly" when a batch is missing
    listed = re.search(r"DataLoader worker \(pid(?:\(s\))?\s*([\d,\s]*)\)", text)
    pids = re.findall(r"\d+", listed.group(1)) if listed else []
    signal_part = re.search(r"killed by signal: ([^.]+)", text)
    how = f"was killed by signal {signal_part.group(1).strip()}" if signal_part else "exited unexpectedly"
    return TrainingError(
        f"data-loading worker (pid {', '.join(pids) or '?'}) {how}: most likely the system killed it for memory "
        "(out-of-memory killer); retry with fewer workers (--num-workers) or more RAM / shared memory; "
        "--continue resumes from the last checkpoint")


def _inprocess(ds: EpochBatches) -> Iterator[dict]:
    rng, gen = _seeds(ds.seed, ds.epoch, ds.stream, 0)
    maker = BatchStream(ds.spec)
    for index in range(ds.num_batches):
        yield ds._tag(maker.batch(rng, gen), index)


class _Skip(dict):
    """A worker's placeholder where its share of an epoch is one batch short (never read)."""


class MultiEpochBatches(IterableDataset):
    """The batches of several epochs from workers that live through all of them. Worker ``w``
    makes, per epoch, the batches ``w, w + n, ...`` of :class:`EpochBatches` from the same seeds,
    and pads its share to ``ceil(num_batches / n)`` with placeholders so that the DataLoader's
    round-robin order stays aligned with the batch index across epoch boundaries."""

    def __init__(self, spec: LoaderSpec, num_batches: int, seed: int, epochs: Sequence[int], stream: int,
                 num_workers: int):
        self.spec, self.num_batches, self.seed, self.stream = spec, num_batches, seed, stream
        self.epochs, self.num_workers = list(epochs), num_workers

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, n = (0, 1) if info is None else (info.id, info.num_workers)
        torch.set_num_threads(1)
        maker = BatchStream(self.spec)
        share = -(-self.num_batches // n)
        for epoch in self.epochs:
            rng, gen = _seeds(self.seed, epoch, self.stream, wid)
            tagger = EpochBatches(self.spec, self.num_batches, self.seed, epoch, self.stream)
            for k in range(share):
                index = wid + k * n
                yield tagger._tag(maker.batch(rng, gen), index) if index < self.num_batches else _Skip()


class PersistentLoader:
    """Batches of consecutive epochs from one set of workers: no start-up per epoch, and the
    workers prepare the next epoch's first batches while the current one ends (validation,
    checkpoints). ``epoch(e)`` gives exactly what ``epoch_loader(spec, num_batches, seed, e, ...)``
    gives with the same number of workers; epochs must be read in order, each to its end."""

    def __init__(self, spec: LoaderSpec, num_batches: int, seed: int, first_epoch: int, last_epoch: int, *,
                 stream: int = 0, num_workers: int = 1, pin_memory: bool = False):
        self.num_batches = num_batches
        self.workers = max(1, min(int(num_workers), num_batches))
        self.share = -(-num_batches // self.workers)
        self.next_epoch, self.last_epoch = first_epoch, last_epoch
        ds = MultiEpochBatches(spec, num_batches, seed, range(first_epoch, last_epoch), stream, self.workers)
        self._it: Iterator[Any] | None = iter(DataLoader(ds, batch_size=None, num_workers=self.workers, pin_memory=pin_memory,
                                   prefetch_factor=max(2, 6 // self.workers), persistent_workers=False))

    def epoch(self, epoch: int) -> Iterator[dict]:
        if epoch != self.next_epoch or epoch >= self.last_epoch:
            raise ValueError(f"persistent loader: epoch {epoch} requested, next is {self.next_epoch} "
                             f"(epochs up to {self.last_epoch - 1})")
        self.next_epoch += 1
        return self._epoch()

    def _epoch(self) -> Iterator[dict]:
        for _ in range(self.workers * self.share):
            if self._it is None:
                raise RuntimeError("persistent loader: used after close()")
            item = next(self._it)
            if not isinstance(item, _Skip) and item:
                yield item

    def close(self) -> None:
        self._it = None  # the DataLoader iterator shuts its workers down when collected
