"""Every trainer class nnunetv2 2.8.1 ships under training/nnUNetTrainer/variants/ (plus
nnUNet_Trainer_BS8) resolves with -tr: to a TrainerConfig whose plain attributes equal what the
nnunetv2 class sets, or to one clear error naming why oxunet cannot run it."""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import pkgutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from oxunet.training.augmentation import configure_augmentation
from oxunet.training.augmentation.presets import load_preset, with_interpolation
from oxunet.training.config import TrainerConfig, TrainerConfigError, builtin_config, load_trainer_config
from oxunet.training.losses import DeepSupervisionLoss, build_loss
from oxunet.training.optim import build_optimizer
from oxunet.training.schedule import lr_for_epoch
from oxunet.training.variants import RECIPES, UNSUPPORTED, VARIANTS

nnunetv2 = pytest.importorskip("nnunetv2")
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402

PLANS = json.loads((Path(__file__).parent / "inference_tiny_plans.json").read_text())
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 5,
                "file_ending": ".nii.gz"}
OPT_KEYS = ("lr", "weight_decay", "momentum", "nesterov", "amsgrad", "betas", "eps", "dampening")
LOSS_KINDS = {"DC_and_CE_loss": "dice_ce", "RobustCrossEntropyLoss": "ce", "TopKLoss": "topk",
              "DC_and_topk_loss": "dice_topk", "MemoryEfficientSoftDiceLoss": "dice"}


def nnunet_variant_classes() -> dict[str, type]:
    import nnunetv2.training.nnUNetTrainer.variants as variants

    out = {}
    for m in pkgutil.walk_packages(variants.__path__, variants.__name__ + "."):
        mod = importlib.import_module(m.name)
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, nnUNetTrainer) and cls.__module__ == mod.__name__:
                out[name] = cls
    from nnunetv2.training.nnUNetTrainer.primus.primus_trainers import nnUNet_Trainer_BS8

    out["nnUNet_Trainer_BS8"] = nnUNet_Trainer_BS8
    return out


CLASSES = nnunet_variant_classes()


def test_every_nnunet_variant_is_mapped_or_refused_by_name():
    assert len(CLASSES) >= 57
    for name in CLASSES:
        assert (name in VARIANTS) != (name in UNSUPPORTED), name
        if name in UNSUPPORTED:
            with pytest.raises(TrainerConfigError, match=f"{name}.*cannot run: "):
                load_trainer_config(name)
        else:
            assert load_trainer_config(name).name == name
    assert sorted(UNSUPPORTED) == sorted(n for n in CLASSES if "Adan" in n or "Benchmark" in n)
    assert load_trainer_config("nnUNetTrainer_1epoch").epochs == 1
    # everything else in the table is oxunet's: the old spelling of _1epoch and the recipes
    assert set(VARIANTS) - set(CLASSES) == {"nnUNetTrainer", "nnUNetTrainer_1epochs", *RECIPES}


def _theirs(cls: type, configuration: str, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plans = {**copy.deepcopy(PLANS), "continue_training": False}  # nnunetv2 2.8.1 pops this key
        return cls(plans, configuration, 0, DATASET_JSON, torch.device("cpu"))


def _tiny_network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.InstanceNorm3d(4, affine=True), torch.nn.Conv3d(4, 3, 1))


def _their_optimizer_and_lrs(t, epochs_to_check):
    t.network = _tiny_network()
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(t, "warmup_duration_whole_net"):  # nnUNetTrainer_warmup switches schedulers at the boundary
            opt, sched = t.configure_optimizers("warmup_all")
            for e in epochs_to_check:
                if e >= t.warmup_duration_whole_net and t.training_stage != "train":
                    t.optimizer = opt
                    opt, sched = t.configure_optimizers("train")
                sched.step(e)
                lrs.append(opt.param_groups[0]["lr"])
        else:
            opt, sched = t.configure_optimizers()
            for e in epochs_to_check:
                sched.step(e)
                lrs.append(opt.param_groups[0]["lr"])
    return opt, lrs


def _spatial_modes(transforms):
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    found = [t for t in transforms.transforms if isinstance(t, SpatialTransform)]
    return (found[0].mode_seg, found[0].mode_image) if found else None


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
@pytest.mark.parametrize("name", sorted(n for n in CLASSES if n in VARIANTS))
def test_plain_attributes_match_nnunet(name, configuration, tmp_path, monkeypatch):
    t = _theirs(CLASSES[name], configuration, tmp_path, monkeypatch)
    ours = builtin_config(name)
    cm = t.configuration_manager
    # training length, lr, wd, sampling, DS, batch
    assert ours.epochs == t.num_epochs
    assert ours.initial_lr == t.initial_lr and ours.weight_decay == t.weight_decay
    assert ours.probabilistic_oversampling == t.probabilistic_oversampling
    global_batch = ours.batch_size or PLANS["configurations"][configuration]["batch_size"]
    assert ours.oversample_for(global_batch) == pytest.approx(t.oversample_foreground_percent)
    assert ours.deep_supervision == t.enable_deep_supervision
    assert global_batch == cm.batch_size
    assert (ours.iterations_per_epoch, ours.val_iterations) == (t.num_iterations_per_epoch, t.num_val_iterations_per_epoch)

    # optimizer type and hyper-parameters for a tiny network, and the LR of several epochs
    epochs = sorted({0, 1, 2, 49, 50, 51, t.num_epochs // 2, t.num_epochs - 1} & set(range(t.num_epochs)))
    their_opt, their_lrs = _their_optimizer_and_lrs(t, epochs)
    our_opt = build_optimizer(ours, _tiny_network().parameters())
    assert type(our_opt) is type(their_opt)
    for key in OPT_KEYS:
        if key in their_opt.defaults:
            want = their_opt.defaults[key] if key != "lr" else t.initial_lr
            assert our_opt.defaults[key] == want, key
    assert [lr_for_epoch(ours, e) for e in epochs] == pytest.approx(their_lrs, rel=1e-12)

    # rotation / dummy 2D / initial patch / mirror axes (training and inference)
    preset = with_interpolation(load_preset(ours.augmentation), ours.seg_interpolation_order,
                                ours.image_interpolation_order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rot, dummy_2d, initial, their_axes = t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    setup = configure_augmentation(cm.patch_size, patch_scale_range=preset.patch_scale_range, mirror=preset.mirror,
                                   dummy_2d=ours.dummy_2d)
    dim = len(cm.patch_size)
    assert setup.do_dummy_2d == dummy_2d
    assert tuple(setup.rotation) == pytest.approx(tuple(rot))
    assert list(setup.initial_patch_size) == [int(i) for i in initial]
    assert ours.mirror_axes_for(dim, preset.mirror) == (tuple(their_axes) if their_axes else None)
    inf = t.inference_allowed_mirroring_axes
    assert ours.mirror_axes_for(dim, preset.mirror, inference=True) == (tuple(inf) if inf else None)

    # segmentation / image interpolation of the spatial transform (None: no spatial transform, NoDA)
    ds_scales = t._get_deep_supervision_scales() if t.enable_deep_supervision else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_tr = t.get_training_transforms(cm.patch_size, rot, ds_scales, their_axes, dummy_2d)
    spatial = [s for s in preset.steps if getattr(s, "op", None) == "spatial"]
    ours_modes = (spatial[0].args.get("seg_mode", "bilinear"), spatial[0].args.get("image_mode", "bilinear")) \
        if spatial else None
    assert ours_modes == _spatial_modes(theirs_tr)

    # loss kind and hyper-parameters, deep-supervision weights
    t.is_ddp = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        their_loss = t._build_loss()
    n_out = len(cm.pool_op_kernel_sizes) - 1
    our_loss = build_loss(ours.loss, batch_dice=cm.batch_dice, smooth=ours.loss_smooth,
                          num_outputs=n_out if ours.deep_supervision else None, topk_percent=ours.topk_percent,
                          label_smoothing=ours.label_smoothing)
    inner = their_loss
    if type(their_loss).__name__ == "DeepSupervisionWrapper":
        assert isinstance(our_loss, DeepSupervisionLoss)
        assert list(our_loss.weights) == pytest.approx([float(w) for w in their_loss.weight_factors])
        inner = their_loss.loss
    else:
        assert not isinstance(our_loss, DeepSupervisionLoss)
    assert LOSS_KINDS[type(inner).__name__] == ours.loss
    their_ce = getattr(inner, "ce", inner)
    if hasattr(their_ce, "k"):
        assert ours.topk_percent == their_ce.k
    assert ours.label_smoothing == getattr(their_ce, "label_smoothing", 0.0)
    their_dc = getattr(inner, "dc", inner if type(inner).__name__ == "MemoryEfficientSoftDiceLoss" else None)
    if their_dc is not None:
        assert ours.loss_smooth == their_dc.smooth


def test_bn_variant_builds_batch_norm_like_nnunet(tmp_path, monkeypatch):
    from oxunet.networks import build_network
    from oxunet.training.parts import effective_architecture

    t = _theirs(CLASSES["nnUNetTrainerBN"], "3d_fullres", tmp_path, monkeypatch)
    cm = t.configuration_manager
    theirs = t.build_network_architecture(t.plans_manager, cm, 1, 3, True)
    arch = effective_architecture(PLANS["configurations"]["3d_fullres"]["architecture"], builtin_config("nnUNetTrainerBN"))
    ours = build_network(arch, 1, 3)
    def kinds(net):
        return sorted({type(m).__name__ for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)})

    assert kinds(ours) == kinds(theirs) == ["BatchNorm3d"]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    bn = next(m for m in ours.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert (bn.eps, bn.affine) == (1e-5, True)


def test_unknown_config_key_is_an_error_naming_it(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"name": "mine", "optimiser": "adam"}))
    with pytest.raises(TrainerConfigError, match="unknown key 'optimiser'"):
        load_trainer_config(p)
    p.write_text(json.dumps({"name": "mine", "extra": {"a": 1}}))
    with pytest.raises(TrainerConfigError, match="unknown key 'extra'"):
        load_trainer_config(p)
    with pytest.raises(TrainerConfigError, match="optimizer must be one of"):
        TrainerConfig(optimizer="adan")
    with pytest.raises(TrainerConfigError, match="mirror_axes"):
        TrainerConfig(mirror_axes=[0, 5])
    # a checkpoint of the first config version (always-empty 'extra') still loads
    assert TrainerConfig.from_dict({"version": 1, "name": "old", "extra": {}}).name == "old"


def test_augmentation_from_a_json_preset_file(tmp_path):
    from oxunet.training.augmentation.presets import DA5, preset_to_json

    p = tmp_path / "mine.json"
    data = preset_to_json(DA5)
    data["name"] = "mine"
    p.write_text(json.dumps(data))
    preset = load_preset(str(p))
    assert preset.name == "mine" and preset.steps == DA5.steps and preset.patch_scale_range == (0.7, 1.43)
    assert TrainerConfig(augmentation=str(p)).augmentation == str(p)
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        load_preset("nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        load_preset(str(bad))
    assert np.isclose(lr_for_epoch(TrainerConfig(lr_schedule="cosine", epochs=10), 5), 0.005)


def test_cli_lists_the_trainers():
    import click
    from click.testing import CliRunner

    from oxunet.cli.train import train

    r = CliRunner().invoke(click.Group(commands={"train": train}), ["train", "--list-trainers"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert 'nnUNetTrainerCosAnneal  {"lr_schedule": "cosine"}' in lines
    assert any(line.startswith("nnUNetTrainerAdan  not supported: needs the adan-pytorch") for line in lines)
    assert len(lines) == len(VARIANTS) + len(UNSUPPORTED)
