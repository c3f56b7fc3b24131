"""--precision: auto resolution rules, bf16/fp16 autocast steps on CPU vs fp32 on a tiny U-Net."""

from __future__ import annotations

import copy

import pytest
import torch

from oxunet.networks import build_network
from oxunet.training.losses import build_loss
from oxunet.training.precision import (PrecisionError, autocast, check_precision, cpu_has_native_bf16,
                                       make_grad_scaler, resolve_precision, training_step)

FLAGS_BF16 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
FLAGS_AMX = "flags\t\t: fpu avx2 amx_tile amx_bf16 amx_int8\n"
FLAGS_PLAIN = "flags\t\t: fpu sse avx2 avx512f avx512bw\n"


def test_cpu_flag_detection():
    assert cpu_has_native_bf16(FLAGS_BF16) and cpu_has_native_bf16(FLAGS_AMX)
    assert not cpu_has_native_bf16(FLAGS_PLAIN)
    assert not cpu_has_native_bf16("model name\t: avx512_bf16 mentioned outside flags\n")


def test_auto_resolution_rules():
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cpu", FLAGS_BF16) == "bf16"
    assert resolve_precision("auto", "cpu", FLAGS_AMX) == "bf16"
    assert resolve_precision("auto", "cpu", FLAGS_PLAIN) == "fp32"
    assert resolve_precision("auto", "mps", FLAGS_BF16) == "fp32"
    for p in ("fp32", "bf16", "fp16"):
        assert resolve_precision(p, "cpu", FLAGS_PLAIN) == p
    with pytest.raises(PrecisionError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")


def _tiny():
    arch = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 3, "features_per_stage": [4, 8, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
                            "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                            "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    torch.manual_seed(0)
    net = build_network(arch, 1, 3, deep_supervision=True)
    loss = build_loss("dice_ce", batch_dice=False, num_outputs=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 16, 16, 16, generator=g)
    seg = torch.randint(0, 3, (2, 1, 16, 16, 16), generator=g).float()
    target = [seg, seg[:, :, ::2, ::2, ::2]]
    return net, loss, x, target


def _step(precision: str):
    net, loss, x, target = _tiny()
    net = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), 1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    scaler = make_grad_scaler(precision, "cpu")
    l0 = training_step(net, loss, opt, net.parameters(), x, target, precision, "cpu", scaler, 12.0)
    with torch.no_grad():
        l1 = loss(net(x), target)
    return float(l0), float(l1), scaler


def test_bf16_step_close_to_fp32():
    check_precision("bf16", "cpu")
    with autocast("bf16", "cpu"):
        assert torch.nn.Conv3d(1, 2, 3)(torch.randn(1, 1, 5, 5, 5)).dtype == torch.bfloat16
    f0, f1, _ = _step("fp32")
    b0, b1, scaler = _step("bf16")
    assert scaler is None  # bf16 needs no loss scaling
    assert torch.isfinite(torch.tensor([b0, b1])).all()
    assert b0 == pytest.approx(f0, rel=0.02)
    assert b1 == pytest.approx(f1, rel=0.02)
    assert f1 < f0  # the step did something


def test_fp16_on_cpu_uses_grad_scaler():
    try:
        check_precision("fp16", "cpu")
    except PrecisionError as e:
        assert "use bf16 or fp32" in str(e)
        pytest.skip(f"this torch has no CPU fp16 autocast: {e}")
    f0, _, _ = _step("fp32")
    h0, h1, scaler = _step("fp16")
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    # one finite step: the scale is unchanged (nnU-Net's initial 2**16) and the loss is close to fp32's
    assert scaler.get_scale() == 2.0 ** 16
    assert h0 == pytest.approx(f0, rel=0.02) and torch.isfinite(torch.tensor(h1))
    assert make_grad_scaler("fp32", "cpu") is None and make_grad_scaler("bf16", "cuda") is None
