"""Augmentation of whole batches on the training device (``--augment-on device``).

nnU-Net augments every sample on the CPU in 12+ worker processes and still starves fast GPUs.
Here the workers only read and crop the enlarged patches (the Rust sampler) and the training
process runs the same transforms on the whole batch where the network runs: the transforms are
written on batched torch tensors and draw their parameters per sample, so a batch of B on the GPU
draws from the same distributions as B batches of one in the workers (the same code does both).

Determinism: a batch's parameters come from a CPU generator seeded with the batch's
``aug_seed`` (a function of seed, epoch, stream and batch index, :func:`loader.augmentation_seed`),
so a batch's augmentation depends on its place in the run alone, not on what ran before it.
"""

from __future__ import annotations

AUGMENT_ON = ("device", "workers")


def resolve_augment_on(requested: str | None, device) -> str:
    """``device`` on CUDA and ``workers`` elsewhere unless asked; CPU training gains nothing from
    moving the work into the training process (it would only serialise it)."""
    import torch

    if requested is not None:
        if requested not in AUGMENT_ON:
            raise ValueError(f"augment_on must be one of {AUGMENT_ON}, got {requested!r}")
        return requested
    return "device" if torch.device(device).type == "cuda" else "workers"


def augment_batch(augmenter, batch: dict, device) -> dict:
    """A raw batch from the workers (``data``, ``seg``, ``aug_seed``) → the training batch
    (``data``, ``target``) augmented on `device`; batches that are already augmented pass through."""
    import torch

    if "seg" not in batch:
        return batch
    gen = torch.Generator().manual_seed(int(batch["aug_seed"]))
    data = batch["data"].to(device, non_blocking=True)
    seg = batch["seg"].to(device, non_blocking=True)
    data, target = augmenter.batch(data, seg, gen)
    return {"data": data.float(), "target": target, "keys": batch.get("keys", [])}


_END = object()


class DevicePrefetcher:
    """Augments the loader's raw batches on `device` ahead of the training step, in a background
    thread on its own CUDA stream, so the augmentation overlaps the previous step's forward and
    backward instead of adding to it. Batches come out in the loader's order, with the same
    augmentation (each batch's draws depend on its ``aug_seed`` alone).

    ``threaded`` defaults to on for CUDA; elsewhere batches are augmented in the caller's thread.
    """

    def __init__(self, loader, augmenter, device, depth: int = 2, threaded: bool | None = None):
        import torch

        self.loader, self.augmenter, self.device = loader, augmenter, torch.device(device)
        self.depth = max(1, int(depth))
        self.threaded = self.device.type == "cuda" if threaded is None else bool(threaded)

    def __iter__(self):
        if not self.threaded:
            for b in self.loader:
                yield augment_batch(self.augmenter, b, self.device)
            return
        yield from self._threaded()

    def _threaded(self):
        import queue
        import threading

        import torch

        cuda = self.device.type == "cuda"
        q: queue.Queue = queue.Queue(self.depth)
        stop = threading.Event()
        stream = torch.cuda.Stream(self.device) if cuda else None

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                ctx = torch.cuda.stream(stream) if cuda else _null()
                with ctx:
                    for b in self.loader:
                        out = augment_batch(self.augmenter, b, self.device)
                        event = None
                        if cuda:
                            event = torch.cuda.Event()
                            event.record(stream)
                        if not put((out, event)):
                            return
                put(_END)
            except BaseException as e:  # handed to the consumer, which raises it
                put(e)

        thread = threading.Thread(target=work, name="oxunet-device-augment", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                out, event = item
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    for t in _tensors(out):
                        t.record_stream(current)  # memory made on the side stream, used on this one
                yield out
        finally:
            stop.set()
            thread.join(timeout=10)


def _tensors(batch: dict):
    for v in batch.values():
        if hasattr(v, "record_stream"):
            yield v
        elif isinstance(v, list):
            yield from (t for t in v if hasattr(t, "record_stream"))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
