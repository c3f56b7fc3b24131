"""Custom code without forking (issue 11, item 4): -tr module:Name (a TrainerConfig factory or a
Trainer subclass), networks through the registry (entry points, allowed packages only), and the
example plugin package installed and trained for a few iterations, its model folder predicted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from oxunet.networks import ArchitectureError, build_network
from oxunet.networks.registry import allowed_packages, resolve_network_class
from oxunet.training.config import TrainerConfigError, load_trainer_config
from oxunet.training.plugins import trainer_class_for
from oxunet.training.trainer import Trainer
from test_trainer import NAME, prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin_package"


def test_tr_module_factory_and_subclass(tmp_path, monkeypatch):
    (tmp_path / "my_variants.py").write_text(
        "from oxunet.training.config import TrainerConfig, builtin_config\n"
        "from oxunet.training.trainer import Trainer\n"
        "def short_adam():\n"
        "    return builtin_config('nnUNetTrainerVanillaAdam3en4').replace(name='short_adam', epochs=7)\n"
        "class Custom(Trainer):\n"
        "    default_config = {'epochs': 3, 'loss': 'dice'}\n"
        "def not_a_config():\n"
        "    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    c = load_trainer_config("my_variants:short_adam")
    assert (c.name, c.optimizer, c.initial_lr, c.epochs) == ("short_adam", "vanilla_adam", 3e-4, 7)
    c = load_trainer_config("my_variants:Custom")
    assert (c.name, c.epochs, c.loss) == ("Custom", 3, "dice")
    assert trainer_class_for("my_variants:Custom").__name__ == "Custom"
    assert trainer_class_for("nnUNetTrainer_5epochs") is Trainer
    with pytest.raises(TrainerConfigError, match="returned int, not a TrainerConfig"):
        load_trainer_config("my_variants:not_a_config")
    with pytest.raises(TrainerConfigError, match="cannot import 'no_such_module'"):
        load_trainer_config("no_such_module:X")


def _fake_trainer_entry_points(monkeypatch, mapping):
    from importlib.metadata import EntryPoint

    import oxunet.training.plugins as plugins

    eps = [EntryPoint(name, value, plugins.TRAINER_ENTRY_POINT_GROUP) for name, value in mapping.items()]
    monkeypatch.setattr(plugins, "entry_points",
                        lambda group=None: [ep for ep in eps if group in (None, ep.group)])


def test_tr_name_resolves_through_the_trainers_entry_point_group(tmp_path, monkeypatch):
    (tmp_path / "my_registered.py").write_text(
        "from oxunet.training.config import builtin_config\n"
        "from oxunet.training.trainer import Trainer\n"
        "def fast():\n"
        "    return builtin_config('nnUNetTrainer').replace(name='FastOne', epochs=4)\n"
        "class Sub(Trainer):\n"
        "    default_config = {'epochs': 6}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # a registered name may not shadow a built-in variant
    _fake_trainer_entry_points(monkeypatch, {"FastOne": "my_registered:fast", "RegSub": "my_registered:Sub",
                                             "nnUNetTrainer_5epochs": "my_registered:fast"})
    c = load_trainer_config("FastOne")
    assert (c.name, c.epochs) == ("FastOne", 4)
    c = load_trainer_config("RegSub")
    assert (c.name, c.epochs) == ("Sub", 6)
    assert trainer_class_for("RegSub").__name__ == "Sub"
    assert trainer_class_for("FastOne") is Trainer
    assert load_trainer_config("nnUNetTrainer_5epochs").epochs == 5
    with pytest.raises(TrainerConfigError) as e:
        load_trainer_config("NoSuchTrainer")
    msg = str(e.value)
    assert "unknown trainer 'NoSuchTrainer'" in msg and "built-in nnU-Net variant" in msg
    assert "'oxunet.trainers' entry-point group (FastOne, RegSub, nnUNetTrainer_5epochs)" in msg


def test_list_trainers_shows_registered_ones(monkeypatch):
    from click.testing import CliRunner

    from oxunet.cli.train import train

    _fake_trainer_entry_points(monkeypatch, {"FastOne": "my_registered:fast"})
    r = CliRunner().invoke(train, ["--list-trainers"])
    assert r.exit_code == 0, r.output
    assert "nnUNetTrainer_5epochs" in r.output
    assert "FastOne  registered (oxunet.trainers): my_registered:fast" in r.output


def test_registry_imports_only_allowed_packages(monkeypatch):
    arch = {"network_class_name": "os.path:join", "arch_kwargs": {}}
    with pytest.raises(ArchitectureError, match="package 'os' is not allowed"):
        build_network(arch, 1, 2)
    assert allowed_packages({}) == ("dynamic_network_architectures",)
    assert allowed_packages({"OXUNET_ALLOWED_NETWORK_PACKAGES": "mynets, other"})[1:] == ("mynets", "other")
    # an allowed package: dynamic-network-architectures' own U-Net class, built as nnU-Net builds it
    pytest.importorskip("dynamic_network_architectures")
    cls = resolve_network_class("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet")
    assert cls.__name__ == "ResidualEncoderUNet"
    with pytest.raises(ArchitectureError, match="has no 'Nope'"):
        resolve_network_class("dynamic_network_architectures.architectures.unet:Nope")


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """examples/plugin_package installed (pip, no dependencies) into a private folder."""
    target = tmp_path_factory.mktemp("plugin_site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(PLUGIN)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return target


def _run(args, target, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(ROOT / "python"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "oxunet.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_example_plugin_registers_its_trainer(installed_plugin, tmp_path):
    r = _run(["train", "--list-trainers"], installed_plugin, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PluginTrainer  registered (oxunet.trainers): oxunet_plugin_example.trainer:PluginTrainer" in r.stdout


def test_example_plugin_trains_and_predicts(installed_plugin, prepared, tmp_path):  # noqa: F811
    r = _run(["train", "900", "3d_fullres", "0", "-tr", "oxunet_plugin_example.trainer:PluginTrainer", "--epochs", "2",
              "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0", "--device", "cpu", "--precision",
              "fp32", "--quiet", "--preprocessed-dir", str(prepared / "pre"), "--results-dir", str(tmp_path / "res")],
             installed_plugin, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    model = tmp_path / "res" / NAME / "PluginTrainer__nnUNetPlans__3d_fullres"
    ck = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ck["oxunet"]["architecture"]["network_class_name"] == "TinyConvNet"
    assert ck["oxunet"]["trainer_class"] == "oxunet_plugin_example.trainer:PluginTrainer"
    assert ck["oxunet"]["trainer_config"]["optimizer"] == "adamw"
    assert set(ck["network_weights"]) == {"body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias",
                                          "body.3.weight", "body.3.bias", "body.4.weight", "body.4.bias",
                                          "head.weight", "head.bias"}
    log = json.loads((model / "fold_0" / "training_log.json").read_text())
    assert len(log["epochs"]) == 2 and all(e["train_loss"] == e["train_loss"] for e in log["epochs"])  # not NaN
    summary = json.loads((model / "fold_0" / "validation" / "summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] >= 0
    # oxunet predict rebuilds TinyConvNet from the checkpoint through the entry point
    raw = prepared / "raw" / NAME / "imagesTr"
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "case_000_0000.nii.gz").symlink_to(raw / "case_000_0000.nii.gz")
    r = _run(["predict", "-i", str(inp), "-o", str(tmp_path / "pred"), "-m", str(model), "-f", "0", "--device", "cpu",
              "--quiet"], installed_plugin, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "pred" / "case_000.nii.gz").is_file()


def test_a_dna_network_we_do_not_implement_loads_through_the_registry():
    pytest.importorskip("dynamic_network_architectures")
    arch = {"network_class_name": "dynamic_network_architectures.architectures.unet.ResidualUNet",
            "arch_kwargs": {"n_stages": 3, "features_per_stage": [4, 8, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
                            "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                            "n_blocks_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    torch.manual_seed(0)
    net = build_network(arch, 1, 3, deep_supervision=False)
    assert type(net).__module__.startswith("dynamic_network_architectures") and type(net).__name__ == "ResidualUNet"
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)
    arch["_kw_requires_import"] = ["conv_op", "nonlin"]
    arch["arch_kwargs"]["nonlin"] = "subprocess.Popen"  # only torch.nn classes are ever resolved
    with pytest.raises(ArchitectureError, match="only torch.nn classes"):
        build_network(arch, 1, 3)
