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
