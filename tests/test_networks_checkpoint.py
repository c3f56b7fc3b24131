"""load_nnunet_checkpoint: weights-only loading of nnU-Net-style checkpoint files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oxunet.networks import build_network, load_nnunet_checkpoint, network_state_dict
from test_networks import PLAIN, both, small_arch


class NotAllowed:
    """A class no allow-list should admit (stands in for arbitrary code in a pickle)."""

    def __init__(self, value):
        self.value = value


def nnunet_style_checkpoint(network: torch.nn.Module, arch: dict) -> dict:
    """What nnUNetTrainer.save_checkpoint writes, with the numpy scalars its logging produces."""
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    out = network(torch.randn(1, 2, 16, 16, 16))
    sum(o.mean() for o in out).backward()
    optimizer.step()
    plans = {"plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {"architecture": arch, "batch_dice": False}}}
    return {
        "network_weights": network.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": {
            "mean_fg_dice": [np.float64(0.41), np.float64(0.52)],
            "ema_fg_dice": [np.float64(0.41), np.float64(0.421)],
            "dice_per_class_or_region": [[np.float64(0.3), np.float32(0.5)]],
            "train_losses": [np.float64(-0.2), -0.3],
            "lrs": [0.01, 0.00999],
            "epoch_start_timestamps": [1.7e9, 1.7e9 + 60],
            "class_counts": np.array([3, 4], dtype=np.int64),
        },
        "_best_ema": np.float64(0.421),
        "current_epoch": 2,
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": np.int64(0),
                      "dataset_json": {"labels": {"background": 0, "a": 1}}, "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (np.int64(0), np.int64(1), 2),
    }


def test_loads_nnunet_style_checkpoint_into_our_network(tmp_path):
    arch = small_arch(PLAIN, 3)
    ours, theirs = both(arch, cin=2, cout=3)
    saved = nnunet_style_checkpoint(theirs, arch)
    path = tmp_path / "checkpoint_final.pth"
    torch.save(saved, path)

    # the file really needs the allow-list: plain weights-only loading refuses it
    with pytest.raises(Exception, match="numpy"):
        torch.load(path, weights_only=True)

    loaded = load_nnunet_checkpoint(path)
    assert loaded["trainer_name"] == "nnUNetTrainer"
    assert loaded["inference_allowed_mirroring_axes"] == (0, 1, 2)
    assert isinstance(loaded["_best_ema"], np.float64) and loaded["_best_ema"] == pytest.approx(0.421)
    assert loaded["init_args"]["device"] == torch.device("cpu")
    np.testing.assert_array_equal(loaded["logging"]["class_counts"], [3, 4])
    assert loaded["optimizer_state"]["param_groups"][0]["momentum"] == 0.99

    ours.load_state_dict(network_state_dict(loaded), strict=True)
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_refuses_pickled_objects_outside_the_allow_list(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"network_weights": {}, "payload": NotAllowed(1)}, path)
    with pytest.raises(ValueError, match=r"evil\.pth: refused to load.*allow-list.*NotAllowed"):
        load_nnunet_checkpoint(path)


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_nnunet_checkpoint(tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pth: not a readable torch checkpoint"):
        load_nnunet_checkpoint(garbage)
    weights_only = tmp_path / "weights.pth"
    torch.save({"state_dict": {}}, weights_only)
    with pytest.raises(ValueError, match=r"no 'network_weights'; found \['state_dict'\]"):
        load_nnunet_checkpoint(weights_only)


def test_wrapper_prefixes_are_stripped():
    net = build_network(small_arch(PLAIN, 2), 1, 2)
    wrapped = {f"module._orig_mod.{k}": v for k, v in net.state_dict().items()}
    net.load_state_dict(network_state_dict({"network_weights": wrapped}), strict=True)
