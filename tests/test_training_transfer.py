"""--pretrained (ours / nnU-Net checkpoints, label-count change, input-channel adaptation) and --freeze."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from oxunet.dataset import resolve_paths
from oxunet.networks import build_network, load_nnunet_checkpoint
from oxunet.training.config import TrainerConfig, TrainerConfigError
from oxunet.training.trainer import Trainer, TrainingError
from oxunet.training.transfer import (TransferError, adapt_input_filters, apply_freeze, first_conv_keys,
                                      load_pretrained_weights, parse_freeze)
from peers import require
from test_trainer import prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)

ARCH = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": 3, "features_per_stage": [4, 8, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                        "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                        "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def _dna(arch: dict, cin: int, cout: int, seed: int = 5):
    require("nnunetv2")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    torch.manual_seed(seed)
    return get_network_from_plans(arch["network_class_name"], copy.deepcopy(arch["arch_kwargs"]),
                                  arch["_kw_requires_import"], cin, cout, deep_supervision=True)


def _save_nnunet_checkpoint(net, path):
    """The dict nnunetv2's trainer saves (keys its predictor reads), weights as DNA names them."""
    torch.save({"network_weights": net.state_dict(), "optimizer_state": {}, "grad_scaler_state": None,
                "logging": {}, "_best_ema": 0.5, "current_epoch": 1000,
                "init_args": {"configuration": "3d_fullres", "fold": 0}, "trainer_name": "nnUNetTrainer",
                "inference_allowed_mirroring_axes": (0, 1, 2)}, path)


def test_nnunet_checkpoint_other_label_count(tmp_path):
    theirs = _dna(ARCH, 1, 5)
    ck = tmp_path / "checkpoint_final.pth"
    _save_nnunet_checkpoint(theirs, ck)
    torch.manual_seed(0)
    ours = build_network(ARCH, 1, 3)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    report = load_pretrained_weights(ours, load_nnunet_checkpoint(ck)["network_weights"], source=str(ck))
    after, ref = ours.state_dict(), theirs.state_dict()
    seg = [k for k in after if ".seg_layers." in k]
    assert seg and sorted(r["name"] for r in report.reinitialised) == sorted(seg)
    assert all(r["reason"] == "label count changed" for r in report.reinitialised)
    assert {tuple(r["pretrained"]) for r in report.reinitialised if r["name"].endswith("weight")} == {(5, 4, 1, 1, 1), (5, 8, 1, 1, 1)}
    for k in after:
        if k in seg:
            assert torch.equal(after[k], before[k])  # fresh initialisation kept
        else:
            assert torch.equal(after[k], ref[k]), k
    assert len(report.loaded) == len(after) - len(seg) and not report.adapted and not report.unused
    d = report.to_dict()
    assert d["version"] == 1 and d["loaded"] == len(report.loaded)
    json.dumps(d)
    assert any("label count changed" in line for line in report.lines())


def test_input_channel_adaptation():
    torch.manual_seed(1)
    src = build_network(ARCH, 1, 3)
    torch.manual_seed(2)
    dst = build_network(ARCH, 3, 3)
    report = load_pretrained_weights(dst, src.state_dict(), source="ours")
    keys = first_conv_keys(dst)
    assert "encoder.stages.0.0.convs.0.conv.weight" in keys
    assert sorted(a["name"] for a in report.adapted) == sorted(keys) and not report.reinitialised
    w_src = src.state_dict()[keys[0]]
    w_dst = dst.state_dict()[keys[0]]
    assert w_dst.shape == (4, 3, 3, 3, 3)
    assert torch.allclose(w_dst, w_src.expand(-1, 3, -1, -1, -1) / 3)
    # the documented property: an image copied into every channel gives the pretrained response
    conv_src, conv_dst = src.encoder.stages[0][0].convs[0].conv, dst.encoder.stages[0][0].convs[0].conv
    x = torch.randn(1, 1, 6, 6, 6)
    assert torch.allclose(conv_dst(x.expand(-1, 3, -1, -1, -1)), conv_src(x), atol=1e-5)
    # 4 → 2 channels: mean filter × 4/2
    w4 = torch.randn(4, 4, 3, 3, 3)
    assert torch.allclose(adapt_input_filters(w4, 2), w4.mean(1, keepdim=True).expand(-1, 2, -1, -1, -1) * 2)


def test_unrelated_checkpoint_is_an_error():
    net = build_network(ARCH, 1, 3)
    with pytest.raises(TransferError, match="no tensor of the checkpoint fits"):
        load_pretrained_weights(net, {"foo.weight": torch.zeros(2)}, source="x.pth")


def test_freeze_values():
    assert parse_freeze("encoder") == "encoder" and parse_freeze("2") == 2 and parse_freeze(None) is None
    for bad in ("0", "decoder", -1, 0):
        with pytest.raises(TransferError, match="--freeze"):
            parse_freeze(bad)
    with pytest.raises(TrainerConfigError, match="--freeze"):
        TrainerConfig(freeze="all")
    net = build_network(ARCH, 1, 3)
    names = apply_freeze(net, 1)
    assert names and all(n.startswith("encoder.stages.0.") for n in names)
    assert all(not p.requires_grad for n, p in net.named_parameters() if n.startswith("encoder.stages.0."))
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith("encoder.stages.1."))
    with pytest.raises(TransferError, match="only 3 stages"):
        apply_freeze(build_network(ARCH, 1, 3), 4)


def test_trainer_pretrained_and_freeze(prepared, tmp_path):  # noqa: F811
    tiny = json.loads((prepared / "pre" / "Dataset900_Tiny" / "nnUNetPlans.json").read_text())
    arch = tiny["configurations"]["3d_fullres"]["architecture"]
    theirs = _dna(arch, 1, 5)  # the tiny dataset has 3 labels: seg layers must be re-initialised
    ck = tmp_path / "nnunet_checkpoint_final.pth"
    _save_nnunet_checkpoint(theirs, ck)
    res = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=tmp_path / "res", environ={})
    cfg = TrainerConfig(name="tiny", epochs=1, iterations_per_epoch=2, val_iterations=1, num_workers=0, precision="fp32",
                        seed=3, freeze="encoder")
    tr = Trainer("900", "3d_fullres", 0, paths=res, config=cfg, quiet=True)
    fold = tr.run(pretrained=str(ck), validate=False)
    n_opt = sum(p.numel() for g in tr.optimizer.param_groups for p in g["params"])
    n_train = sum(p.numel() for p in tr.network.parameters() if p.requires_grad)
    assert n_opt == n_train < sum(p.numel() for p in tr.network.parameters())
    final = load_nnunet_checkpoint(fold / "checkpoint_final.pth")["network_weights"]
    ref = theirs.state_dict()
    enc = [k for k in final if k.startswith("encoder.")]
    dec = [k for k in final if k.startswith("decoder.stages.") or k.startswith("decoder.transpconvs.")]
    assert enc and all(torch.equal(final[k], ref[k]) for k in enc)  # frozen: unchanged by the steps
    assert any(not torch.equal(final[k], ref[k]) for k in dec)  # trained
    log = json.loads((fold / "training_log.json").read_text())
    assert log["pretrained"]["loaded"] == len(final) - len([k for k in final if ".seg_layers." in k])
    assert {r["reason"] for r in log["pretrained"]["reinitialised"]} == {"label count changed"}
    text = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "re-initialised decoder.seg_layers.0.weight" in text
    assert (fold / "progress.png").stat().st_size > 1000
    with pytest.raises(TrainingError, match="only 3 stages"):
        Trainer("900", "3d_fullres", 0, paths=res, config=cfg.replace(freeze=4), quiet=True)._build()


def test_resenc_first_conv_and_freeze_include_the_stem():
    arch = copy.deepcopy(ARCH)
    arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    kw = arch["arch_kwargs"]
    kw["n_blocks_per_stage"] = kw.pop("n_conv_per_stage")
    kw["n_conv_per_stage_decoder"] = [1, 1]
    net = build_network(arch, 2, 3)
    assert any(k.startswith("encoder.stem.") for k in first_conv_keys(net))
    names = apply_freeze(net, 1)
    assert any(n.startswith("encoder.stem.") for n in names) and any(n.startswith("encoder.stages.0.") for n in names)
    assert not any(n.startswith("encoder.stages.1.") for n in names)
    src = build_network(arch, 1, 3)
    report = load_pretrained_weights(build_network(arch, 2, 3), src.state_dict())
    assert report.adapted and all(a["name"].startswith(("encoder.stem.", "decoder.encoder.stem.")) for a in report.adapted)
