"""The CUDA path: training steps in fp16 AMP (grad scaler) and bf16, with and without torch.compile,
augmentation on the device, DDP over NCCL (world size 1), and the predictor on CUDA with on-device
aggregation and export agreeing with the CPU path. Every test is skipped where torch sees no CUDA
device; benches/device/check.sh runs them on the GPU machine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from oxunet.bench.synthetic import write_preprocessed_dataset

    root = tmp_path_factory.mktemp("cuda")
    write_preprocessed_dataset(root / "pre", 991, num_cases=5, shape=(40, 48, 40), patch_size=(32, 32, 32),
                               batch_size=2, features=(8, 16, 32))
    return root


def _paths(root, results):
    from oxunet.dataset import resolve_paths

    return resolve_paths(preprocessed_dir=root / "pre", results_dir=results, environ={})


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("compiled", [False, True])
def test_training_steps_on_cuda(tiny, tmp_path, precision, compiled):
    from oxunet.training.config import TrainerConfig
    from oxunet.training.trainer import Trainer

    cfg = TrainerConfig(name="cuda", epochs=1, iterations_per_epoch=3, val_iterations=1, num_workers=1,
                        precision=precision, compile=compiled, seed=1, progress_plot=False)
    tr = Trainer("991", "3d_fullres", 0, paths=_paths(tiny, tmp_path), config=cfg, device="cuda", quiet=True)
    tr._build()
    before = {k: v.detach().clone() for k, v in tr.network.state_dict().items()}
    fold = tr.run(validate=False)
    assert tr.compiled is compiled and tr.augment_on == "device" and tr.precision == precision
    assert (tr.grad_scaler is not None) is (precision == "fp16")  # AMP fp16 needs the scaler, bf16 does not
    log = json.loads((fold / "training_log.json").read_text())
    assert np.isfinite(log["epochs"][0]["train_loss"]) and np.isfinite(log["epochs"][0]["val_loss"])
    after = tr.network.state_dict()
    assert all(v.is_cuda for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    assert (fold / "checkpoint_final.pth").is_file()


def test_augmentation_on_cuda_matches_cpu_shapes_and_labels(tiny, tmp_path):
    from oxunet.training.config import TrainerConfig
    from oxunet.training.device_augment import augment_batch
    from oxunet.training.loader import epoch_loader
    from oxunet.training.trainer import Trainer

    cfg = TrainerConfig(name="aug", num_workers=0, precision="fp32", seed=2, augment_on="device")
    tr = Trainer("991", "3d_fullres", 0, paths=_paths(tiny, tmp_path), config=cfg, device="cuda", quiet=True)
    tr._build()
    for raw in epoch_loader(tr.train_spec, 3, seed=2, epoch=0):
        gpu = augment_batch(tr.train_augmenter, raw, torch.device("cuda"))
        cpu = augment_batch(tr.train_augmenter, raw, torch.device("cpu"))
        assert gpu["data"].is_cuda and gpu["data"].shape == cpu["data"].shape == (2, 1, 32, 32, 32)
        assert [t.shape for t in gpu["target"]] == [t.shape for t in cpu["target"]]
        assert set(torch.unique(gpu["target"][0]).tolist()) <= {0, 1, 2, 3}
        assert torch.isfinite(gpu["data"]).all()


def _nccl_worker(root: str, out: str) -> None:
    import torch.distributed as dist

    from oxunet.training.config import TrainerConfig
    from oxunet.training.trainer import Trainer

    assert dist.get_backend() == "nccl"
    cfg = TrainerConfig(name="nccl", epochs=1, iterations_per_epoch=2, val_iterations=1, num_workers=0,
                        precision="fp16", compile=False, seed=3, progress_plot=False)
    from pathlib import Path

    tr = Trainer("991", "3d_fullres", 0, paths=_paths(Path(root), out), config=cfg, device="cuda", quiet=True)
    tr.run(validate=False)
    torch.save({"world": dist.get_world_size(), "ddp": type(tr._forward).__name__}, f"{out}/rank0.pt")


def test_ddp_over_nccl(tiny, tmp_path):
    from oxunet.training.distributed import launch

    launch(_nccl_worker, 1, str(tiny), str(tmp_path), backend="nccl")
    info = torch.load(tmp_path / "rank0.pt", weights_only=True)
    assert info["world"] == 1
    assert list(tmp_path.rglob("checkpoint_final.pth"))


def test_predictor_on_cuda_agrees_with_cpu(tiny):
    from oxunet.bench.synthetic import body_volume
    from oxunet.inference import Predictor
    from oxunet.networks import build_network

    pre = next((tiny / "pre").iterdir())
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    ds = json.loads((pre / "dataset.json").read_text())
    torch.manual_seed(0)
    net = build_network(plans["configurations"]["3d_fullres"]["architecture"], 1, 4, deep_supervision=False)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    image, _ = body_volume((50, 61, 57), 3, seed=4)
    spacing = (1.4, 0.8, 0.9)

    def predict(device, export_on):
        p = Predictor.from_networks(plans, "3d_fullres", ds, [state], (0, 1, 2), device=device, precision="fp32",
                                    export_on=export_on)
        return p.predict_array(image, spacing, return_probabilities=True)

    cpu = predict("cpu", "cpu")
    gpu = predict("cuda", "auto")
    gpu_rust = predict("cuda", "cpu")
    assert gpu.on_device and not gpu_rust.on_device
    assert gpu.peak_gpu_memory_bytes and gpu.peak_gpu_memory_bytes > 0
    for res in (gpu, gpu_rust):
        agree = float((res.segmentation == cpu.segmentation).mean())
        assert agree >= 0.999, agree
        # cuDNN's fp32 convolutions may use TF32 (torch's default): a few probabilities move by ~1e-2
        close = np.isclose(res.probabilities, cpu.probabilities, atol=5e-3).mean()
        assert close >= 0.9999, close
    assert len(np.unique(cpu.segmentation)) >= 2
