"""Augmentation of whole batches on the training device (--augment-on device), run here with device=cpu:
the same shapes and labels as the per-sample worker path, per-sample random draws with the same
statistics, determinism under a seed whatever the number of workers, and a training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oxunet.training.augmentation import build_training_transforms
from oxunet.training.augmentation.geometry import Mirror
from oxunet.training.augmentation.intensity import GaussianNoise
from oxunet.training.augmentation._base import Compose, Maybe
from oxunet.training.augmentation.pipeline import Augmenter
from oxunet.training.device_augment import augment_batch, resolve_augment_on
from oxunet.training.loader import epoch_loader
from oxunet.training.trainer import Trainer
from test_trainer import _cfg, _paths, prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)


def test_resolve_augment_on():
    assert resolve_augment_on(None, "cpu") == "workers"
    assert resolve_augment_on(None, "cuda") == "device"
    assert resolve_augment_on("device", "cpu") == "device"
    with pytest.raises(ValueError, match="augment_on"):
        resolve_augment_on("gpu", "cpu")


def _trainer(root, **kw):
    tr = Trainer("900", "3d_fullres", 0, paths=_paths(root), config=_cfg(**kw), quiet=True)
    tr._build()
    return tr


def test_raw_batches_and_device_path_shapes_and_labels(prepared):  # noqa: F811
    workers = _trainer(prepared, augment_on="workers")
    device = _trainer(prepared, augment_on="device")
    assert device.augment_on == "device" and not device.train_spec.augment_in_workers
    raw = list(epoch_loader(device.train_spec, 3, seed=5, epoch=0))
    initial = device.train_spec.patch_size
    assert raw[0]["data"].shape == (2, 1, *initial) and raw[0]["seg"].shape == (2, 1, *initial)
    assert len({b["aug_seed"] for b in raw}) == 3  # one augmentation seed per batch
    ref = list(epoch_loader(workers.train_spec, 3, seed=5, epoch=0))
    for r, w in zip(raw, ref):
        assert r["keys"] == w["keys"]  # same cases and boxes: only where augmentation runs differs
        out = augment_batch(device.train_augmenter, r, torch.device("cpu"))
        assert out["data"].shape == w["data"].shape == (2, 1, 16, 16, 16) and out["data"].dtype == torch.float32
        assert [t.shape for t in out["target"]] == [t.shape for t in w["target"]]
        labels_in = set(torch.unique(r["seg"]).tolist()) | {0}
        labels_out = set(torch.unique(out["target"][0]).tolist())
        assert labels_out <= labels_in - {-1} | {0}  # augmentation never invents a label; -1 padding becomes 0
        assert torch.isfinite(out["data"]).all()


def test_determinism_under_a_seed(prepared):  # noqa: F811
    tr = _trainer(prepared, augment_on="device")
    raw = list(epoch_loader(tr.train_spec, 4, seed=9, epoch=1))
    a = [augment_batch(tr.train_augmenter, b, "cpu") for b in raw]
    b = [augment_batch(tr.train_augmenter, x, "cpu")
         for x in epoch_loader(tr.train_spec, 4, seed=9, epoch=1, num_workers=1)]
    for x, y in zip(a, b):
        assert torch.equal(x["data"], y["data"]) and torch.equal(x["target"][0], y["target"][0])
    # the draws depend on the batch's seed alone (its place in the run), not on what ran before
    again = augment_batch(tr.train_augmenter, raw[2], "cpu")
    assert torch.equal(again["data"], a[2]["data"])
    other = augment_batch(tr.train_augmenter, {**raw[2], "aug_seed": raw[2]["aug_seed"] + 1}, "cpu")
    assert not torch.equal(other["data"], a[2]["data"])


def test_batch_draws_match_per_sample_statistics():
    """Mirroring (p 0.5 per axis) and noise (p 0.3) drawn per sample: a batch of 16 on the device and
    samples one at a time in the workers apply them at the same rates."""
    aug = Augmenter(Compose([Mirror((0, 1, 2)), Maybe(GaussianNoise((0.1, 0.1)), 0.3)]), "test")
    ramp = torch.arange(4 * 5 * 6, dtype=torch.float32).view(1, 1, 4, 5, 6)

    def flips_and_noise(out):
        rows = []
        for x in out:
            clean = x[0].round()
            flipped = [bool(clean[(slice(None),) * a + (0,)].mean() > clean[(slice(None),) * a + (-1,)].mean())
                       for a in range(3)]
            rows.append(flipped + [bool((x[0] - clean).abs().max() > 1e-4)])
        return rows

    n = 640
    gen = torch.Generator().manual_seed(0)
    batched = []
    for _ in range(n // 16):
        out, _ = aug.batch(ramp.expand(16, -1, -1, -1, -1), None, gen)
        batched += flips_and_noise(out)
    single = []
    gen = torch.Generator().manual_seed(1)
    for _ in range(n):
        out, _ = aug(ramp[0], None, gen)
        single += flips_and_noise(out[None])
    rb, rs = np.mean(batched, 0), np.mean(single, 0)
    tol = 4 * np.sqrt(0.25 / n)  # 4 standard deviations of a rate near 0.5
    assert np.all(np.abs(rb - [0.5, 0.5, 0.5, 0.3]) < tol), rb
    assert np.all(np.abs(rs - [0.5, 0.5, 0.5, 0.3]) < tol), rs
    # samples of one batch are drawn independently (not one draw for the whole batch)
    first = np.array(batched[:16])
    assert 0 < first[:, 0].sum() < 16


def test_training_with_device_augmentation(prepared, tmp_path):  # noqa: F811
    import json

    from oxunet.dataset import resolve_paths
    from oxunet.training.config import TrainerConfig

    paths = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=tmp_path, environ={})
    cfg = TrainerConfig(name="dev", epochs=1, iterations_per_epoch=2, val_iterations=1, num_workers=1,
                        precision="fp32", seed=3, augment_on="device", progress_plot=False)
    tr = Trainer("900", "3d_fullres", 0, paths=paths, config=cfg, quiet=True)
    fold = tr.run(validate=False)
    log = json.loads((fold / "training_log.json").read_text())
    assert np.isfinite(log["epochs"][0]["train_loss"])
    assert json.loads((fold / "debug.json").read_text())["augment_on"] == "device"


def test_training_transforms_on_batches_match_single_sample_shapes():
    aug = build_training_transforms((16, 16, 16), "default", deep_supervision_scales=[[1, 1, 1], [0.5, 0.5, 0.5]],
                                    foreground_labels=[1, 2])
    data = torch.randn(3, 1, 24, 24, 24)
    seg = torch.randint(0, 3, (3, 1, 24, 24, 24), dtype=torch.int16)
    out, target = aug.batch(data, seg, torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 16, 16, 16) and [t.shape for t in target] == [(3, 1, 16, 16, 16), (3, 1, 8, 8, 8)]


def test_prefetcher_thread_gives_the_same_batches_in_order(prepared):  # noqa: F811
    from oxunet.training.device_augment import DevicePrefetcher

    tr = _trainer(prepared, augment_on="device")
    raw = list(epoch_loader(tr.train_spec, 5, seed=4, epoch=0))
    sync = list(DevicePrefetcher(raw, tr.train_augmenter, "cpu", threaded=False))
    threaded = list(DevicePrefetcher(raw, tr.train_augmenter, "cpu", threaded=True, depth=2))
    assert len(sync) == len(threaded) == 5
    for a, b in zip(sync, threaded):
        assert a["keys"] == b["keys"] and torch.equal(a["data"], b["data"])
        assert all(torch.equal(x, y) for x, y in zip(a["target"], b["target"]))
    # an error in the loader reaches the consumer; stopping early leaves no thread behind
    def broken():
        yield raw[0]
        raise RuntimeError("worker died")
    with pytest.raises(RuntimeError, match="worker died"):
        list(DevicePrefetcher(broken(), tr.train_augmenter, "cpu", threaded=True))
    it = iter(DevicePrefetcher(raw * 4, tr.train_augmenter, "cpu", threaded=True, depth=1))
    next(it)
    it.close()
    import threading
    assert not [t for t in threading.enumerate() if t.name == "oxunet-device-augment" and t.is_alive()]


@pytest.mark.parametrize("workers,iters", [(2, 5), (3, 3), (2, 4)])
def test_persistent_loader_equals_per_epoch_loaders(prepared, workers, iters):  # noqa: F811
    from oxunet.training.loader import PersistentLoader

    tr = _trainer(prepared, augment_on="workers")
    loader = PersistentLoader(tr.train_spec, iters, 6, 1, 4, num_workers=workers)
    for epoch in (1, 2, 3):
        got = list(loader.epoch(epoch))
        ref = list(epoch_loader(tr.train_spec, iters, 6, epoch, num_workers=workers))
        assert len(got) == len(ref) == iters
        for a, b in zip(got, ref):
            assert a["keys"] == b["keys"] and torch.equal(a["data"], b["data"])
    with pytest.raises(ValueError, match="epoch 5 requested"):
        loader.epoch(5)
    loader.close()
