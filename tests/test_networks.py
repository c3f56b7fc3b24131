"""Our U-Nets vs dynamic-network-architectures (built through nnunetv2's get_network_from_plans)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from oxunet.networks import (
    ArchitectureError,
    build_network,
    check_patch_size,
    describe_network,
    format_network_table,
    parse_architecture,
)
from peers import require

PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
IMPORTS = ["conv_op", "norm_op", "dropout_op", "nonlin"]


def small_arch(cls: str = PLAIN, dim: int = 3, **overrides) -> dict:
    """A 4-stage plans architecture with an anisotropic stage (kernel 1 / stride 1 on the first axis)."""
    kwargs = {
        "n_stages": 4,
        "features_per_stage": [4, 8, 16, 16],
        "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
        "kernel_sizes": [[3] * dim, [3] * dim, [1] + [3] * (dim - 1), [3] * dim],
        "strides": [[1] * dim, [2] * dim, [1] + [2] * (dim - 1), [2] * dim],
        "n_conv_per_stage_decoder": [1, 2, 1],
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    if cls.endswith("ResidualEncoderUNet"):
        kwargs["n_blocks_per_stage"] = [1, 2, 2, 1]
    else:
        kwargs["n_conv_per_stage"] = [2, 2, 1, 2]
    kwargs.update(overrides)
    return {"network_class_name": cls, "arch_kwargs": kwargs, "_kw_requires_import": list(IMPORTS)}


def dna_network(arch: dict, cin: int, cout: int, deep_supervision: bool = True):
    require("nnunetv2")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(arch["network_class_name"], copy.deepcopy(arch["arch_kwargs"]),
                                  arch["_kw_requires_import"], cin, cout, deep_supervision=deep_supervision)


def both(arch: dict, cin: int = 2, cout: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    ours = build_network(arch, cin, cout, deep_supervision=True)
    torch.manual_seed(seed)
    theirs = dna_network(arch, cin, cout)
    return ours, theirs


def assert_same_state_dict(ours: torch.nn.Module, theirs: torch.nn.Module, *, values: bool) -> None:
    so, st = ours.state_dict(), theirs.state_dict()
    assert list(so) == list(st), sorted(set(so) ^ set(st))[:10]
    for key in so:
        assert so[key].shape == st[key].shape, key
        if values:
            assert torch.equal(so[key], st[key]), key


def assert_same_outputs(ours, theirs, x: torch.Tensor) -> None:
    with torch.no_grad():
        for ds in (True, False):  # switched after construction, as nnU-Net's trainer does
            ours.decoder.deep_supervision = ds
            theirs.decoder.deep_supervision = ds
            o, t = ours(x), theirs(x)
            if ds:
                assert isinstance(o, list) and len(o) == len(t) == len(ours.decoder.stages)
            else:
                o, t = [o], [t]
            for a, b in zip(o, t):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [PLAIN, RESENC])
@pytest.mark.parametrize("dim", [2, 3])
def test_same_keys_init_and_outputs_as_dna(cls, dim):
    arch = small_arch(cls, dim)
    ours, theirs = both(arch)
    # same module order + same RNG draws: identical He init under the same seed
    assert_same_state_dict(ours, theirs, values=True)
    torch.manual_seed(1)
    theirs.apply(theirs.initialize)  # fresh weights, loaded strictly into ours
    ours.load_state_dict(theirs.state_dict(), strict=True)
    size = 16 if dim == 3 else 32
    assert_same_outputs(ours, theirs, torch.randn(2, 2, *([size] * dim)))


def test_train_mode_outputs_and_gradients_match_dna():
    ours, theirs = both(small_arch(RESENC, 2))
    ours.train(), theirs.train()
    x = torch.randn(2, 2, 32, 32)
    lo = sum(o.square().mean() for o in ours(x))
    lt = sum(o.square().mean() for o in theirs(x))
    lo.backward(), lt.backward()
    torch.testing.assert_close(lo, lt)
    grads_t = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads_t[name].grad, rtol=1e-4, atol=1e-6, msg=name)


def test_batchnorm_dropout_nonlin_first_variant_matches_dna():
    arch = small_arch(PLAIN, 2, norm_op="torch.nn.BatchNorm2d", norm_op_kwargs={"eps": 1e-3, "momentum": 0.2},
                      dropout_op="torch.nn.modules.dropout.Dropout2d", dropout_op_kwargs={"p": 0.3},
                      nonlin="torch.nn.modules.activation.ReLU", nonlin_first=True, conv_bias=False)
    ours, theirs = both(arch)
    assert_same_state_dict(ours, theirs, values=True)  # running stats buffers included
    assert any(k.endswith("running_mean") for k in ours.state_dict())
    ours.eval(), theirs.eval()
    assert_same_outputs(ours, theirs, torch.randn(2, 2, 32, 32))


def test_bottleneck_resenc_from_dna_block_name():
    arch = small_arch(RESENC, 2, block="dynamic_network_architectures.building_blocks.residual.BottleneckD",
                      bottleneck_channels=[2, 4, 8, 8], stem_channels=6)
    arch["_kw_requires_import"] = IMPORTS + ["block"]
    ours, theirs = both(arch)
    assert_same_state_dict(ours, theirs, values=True)
    assert_same_outputs(ours, theirs, torch.randn(1, 2, 32, 32))


def test_resenc_residual_branches_start_as_identity():
    net = build_network(small_arch(RESENC, 2), 1, 2)
    norms = [m.conv2.norm for m in net.modules() if type(m).__name__ == "BasicBlockD"]
    assert len(norms) == 6
    assert all(torch.count_nonzero(n.weight) == 0 and torch.count_nonzero(n.bias) == 0 for n in norms)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(c.bias is None or torch.count_nonzero(c.bias) == 0 for c in convs)


# Full-size 3d_fullres topologies as nnU-Net plans them (default and ResEnc M): keys/shapes only.
FULLRES_KERNELS = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
FULLRES_STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]


@pytest.mark.parametrize("cls", [PLAIN, RESENC])
def test_full_size_plans_topology_has_dna_state_dict(cls):
    arch = small_arch(cls, 3, n_stages=6, features_per_stage=[32, 64, 128, 256, 320, 320],
                      kernel_sizes=FULLRES_KERNELS, strides=FULLRES_STRIDES, n_conv_per_stage_decoder=[2] * 5)
    if cls == RESENC:
        arch["arch_kwargs"].update(n_blocks_per_stage=[1, 3, 4, 6, 6, 6], n_conv_per_stage_decoder=[1] * 5)
    else:
        arch["arch_kwargs"]["n_conv_per_stage"] = [2] * 6
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours = build_network(arch, 1, 4, initialize=False)
        theirs = dna_network(arch, 1, 4)
    assert_same_state_dict(ours, theirs, values=False)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_deep_supervision_outputs_highest_resolution_first():
    net = build_network(small_arch(PLAIN, 3), 1, 5, deep_supervision=True)
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        outs = net(x)
        assert [tuple(o.shape[2:]) for o in outs] == [(8, 16, 16), (4, 8, 8), (4, 4, 4)]
        net.deep_supervision = False
        full = net(x)
    assert full.shape == (1, 5, 8, 16, 16)
    torch.testing.assert_close(full, outs[0])
    assert net.decoder.deep_supervision is False


def test_short_names_and_class_objects_are_accepted():
    arch = small_arch("PlainConvUNet", 2, conv_op="Conv2d", norm_op=torch.nn.InstanceNorm2d, nonlin="LeakyReLU")
    torch.manual_seed(3)
    a = build_network(arch, 1, 2)
    torch.manual_seed(3)
    b = build_network(small_arch(PLAIN, 2), 1, 2)
    assert_same_state_dict(a, b, values=True)


@pytest.mark.parametrize(
    "mutate, message",
    [
        # other classes go through the registry (oxunet.networks.registry): only allowed packages are imported
        (lambda a: a.update(network_class_name="my_pkg.nets.PlainConvUNet"), "package 'my_pkg' is not allowed"),
        (lambda a: a.update(network_class_name="dynamic_network_architectures.architectures.unet.ResidualUNet"),
         "cannot be built from arch_kwargs"),
        (lambda a: a["arch_kwargs"].update(nonlin="os.system"), "only torch.nn classes"),
        (lambda a: a["arch_kwargs"].update(norm_op="torch.nn.NoSuchNorm"), "does not name a torch.nn class"),
        (lambda a: a["arch_kwargs"].update(conv_op="torch.nn.Conv1d"), "Conv2d or Conv3d"),
        (lambda a: a["arch_kwargs"].update(kernel_sizes=[[3, 3, 3]] * 3), "kernel_sizes'] needs 4 entries"),
        (lambda a: a["arch_kwargs"].update(strides=[[1, 1], [2, 2], [2, 2], [2, 2]]), "strides'][0] must be 3"),
        (lambda a: a["arch_kwargs"].update(n_conv_per_stage_decoder=[2, 2]), "n_conv_per_stage_decoder'] needs 3"),
        (lambda a: a["arch_kwargs"].update(pool="max"), "unknown arch_kwargs ['pool']"),
        (lambda a: a["arch_kwargs"].pop("n_conv_per_stage"), "lacks ['n_conv_per_stage']"),
        (lambda a: a.pop("arch_kwargs"), "no 'arch_kwargs'"),
    ],
)
def test_bad_architecture_gives_clear_error(mutate, message):
    arch = small_arch(PLAIN, 3)
    mutate(arch)
    with pytest.raises(ArchitectureError, match=None) as info:
        build_network(arch, 1, 2)
    assert message in str(info.value)


def test_describe_network_matches_the_built_network():
    arch = small_arch(RESENC, 3)
    rows = describe_network(arch, patch_size=(8, 32, 24))
    assert [r.output_size for r in rows] == [(8, 32, 24), (4, 16, 12), (4, 8, 6), (2, 4, 3)]
    assert [r.features for r in rows] == [4, 8, 16, 16]
    assert [r.decoder_convs for r in rows] == [1, 2, 1, 0]
    net = build_network(arch, 1, 2)
    with torch.no_grad():
        skips = net.encoder(torch.zeros(1, 1, 8, 32, 24))
    assert [tuple(s.shape[1:]) for s in skips] == [(r.features, *r.output_size) for r in rows]
    table = format_network_table(arch, (8, 32, 24))
    assert table.splitlines()[0] == "ResidualEncoderUNet (3D)"
    assert "2x4x3" in table and len(table.splitlines()) == 6


def test_patch_not_divisible_by_total_stride_is_rejected():
    spec = parse_architecture(small_arch(PLAIN, 3))
    assert spec.total_strides() == (4, 8, 8)
    check_patch_size(spec, (8, 16, 16))
    with pytest.raises(ArchitectureError, match=r"not divisible .* on axes \[2\]"):
        describe_network(spec, (8, 16, 12))


def test_package_imports_without_torch():
    code = ("import sys, oxunet.networks as n, oxunet.training as t; n.describe_network; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env_path = str(Path(__file__).resolve().parents[1] / "python")
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
