"""DDP: nnU-Net's per-rank batch split, batch-Dice gathering, and a 2-rank gloo training on CPU."""

from __future__ import annotations

import json
import types

import pytest
import torch

from oxunet.dataset import resolve_paths
from oxunet.networks import load_nnunet_checkpoint
from oxunet.training.config import TrainerConfig
from oxunet.training.distributed import RankSplit, launch, split_batch
from peers import require
from test_trainer import prepared  # noqa: F401 (module fixture: tiny preprocessed dataset)


def _nnunet_split(global_batch: int, world: int, p: float, probabilistic: bool, monkeypatch) -> list[tuple[int, float]]:
    require("nnunetv2")
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as base
    from nnunetv2.training.nnUNetTrainer.variants.sampling import nnUNetTrainer_probabilisticOversampling as prob

    module, cls = (prob, prob.nnUNetTrainer_probabilisticOversampling) if probabilistic else (base, base.nnUNetTrainer)
    out = []
    for r in range(world):
        monkeypatch.setattr(module.dist, "get_world_size", lambda: world)
        monkeypatch.setattr(module.dist, "get_rank", lambda r=r: r)
        fake = types.SimpleNamespace(is_ddp=True, configuration_manager=types.SimpleNamespace(batch_size=global_batch),
                                     oversample_foreground_percent=p)
        cls._set_batch_size_and_oversample(fake)
        out.append((fake.batch_size, fake.oversample_foreground_percent))
    return out


@pytest.mark.parametrize("global_batch,world,p", [(2, 2, 0.33), (9, 2, 0.33), (9, 4, 0.33), (12, 8, 0.33), (5, 5, 0.33),
                                                  (7, 3, 0.5), (16, 3, 0.1), (3, 2, 1.0), (4, 3, 0.0)])
def test_split_matches_nnunet(global_batch, world, p, monkeypatch, capsys):  # capsys: nnU-Net prints
    ours = [(s.batch_size, s.oversample_foreground_percent) for s in split_batch(global_batch, world, p)]
    assert ours == _nnunet_split(global_batch, world, p, False, monkeypatch)
    prob = [(s.batch_size, s.oversample_foreground_percent) for s in split_batch(global_batch, world, p, probabilistic=True)]
    assert prob == _nnunet_split(global_batch, world, p, True, monkeypatch)


def test_split_values_and_errors():
    # batch 9 on 2 ranks: 5 + 4; forced samples are global positions 6, 7, 8 (round(9 * 0.67) = 6)
    assert split_batch(9, 2, 0.33) == [RankSplit(5, 0.0), RankSplit(4, 0.75)]
    assert split_batch(2, 1, 0.33) == [RankSplit(2, 0.33)]
    with pytest.raises(ValueError, match="batch of 2 across 3 ranks"):
        split_batch(2, 3, 0.33)


def _ddp_worker(root: str, out: str) -> None:
    import torch.distributed as dist

    from oxunet.training.losses import SoftDiceLoss, enable_ddp_gather
    from oxunet.training.trainer import Trainer

    r, world = dist.get_rank(), dist.get_world_size()
    # batch Dice over ranks: the value of the whole batch; gradient = world x the whole-batch gradient
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 3, 4, 4, 4, generator=g)
    target = torch.randint(0, 3, (3, 1, 4, 4, 4), generator=g)
    sl = slice(0, 2) if r == 0 else slice(2, 3)  # uneven split, as batch 3 on 2 ranks
    whole = logits.clone().requires_grad_(True)
    ref = SoftDiceLoss(batch_dice=True, do_bg=False)(whole, target)
    ref.backward()
    part = logits[sl].clone().requires_grad_(True)
    loss = enable_ddp_gather(SoftDiceLoss(batch_dice=True, do_bg=False))(part, target[sl])
    loss.backward()
    dice_ok = bool(torch.allclose(loss, ref.detach(), atol=1e-6) and torch.allclose(part.grad, world * whole.grad[sl], atol=1e-6))

    paths = resolve_paths(preprocessed_dir=f"{root}/pre", results_dir=f"{out}/res", environ={})
    cfg = TrainerConfig(name="tiny", epochs=1, iterations_per_epoch=2, val_iterations=1, num_workers=0,
                        precision="fp32", seed=None, batch_size=3,
                        batch_dice=True)  # exercise the gathered batch Dice inside the training loss
    tr = Trainer("900", "3d_fullres", 0, paths=paths, config=cfg, quiet=True)
    tr.run(validate=False)
    torch.save({"weights": tr.network.state_dict(), "batch_size": tr.batch_size, "seed": tr.seed, "dice_ok": dice_ok,
                "oversample": tr.train_spec.oversample_foreground_percent}, f"{out}/rank{r}.pt")


@pytest.mark.slow  # ~70 s on the loaded 2-core machine (two spawned ranks import torch)
def test_two_ranks_gloo(prepared, tmp_path):  # noqa: F811
    launch(_ddp_worker, 2, str(prepared), str(tmp_path), backend="gloo")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["dice_ok"] and r1["dice_ok"]
    assert (r0["batch_size"], r1["batch_size"]) == (2, 1)  # global batch 3 split as nnU-Net
    assert (r0["oversample"], r1["oversample"]) == (0.0, 1.0)
    assert r0["seed"] == r1["seed"]  # rank 0's drawn seed, broadcast
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])
    fold = tmp_path / "res" / "Dataset900_Tiny" / "tiny__nnUNetPlans__3d_fullres" / "fold_0"
    ck = load_nnunet_checkpoint(fold / "checkpoint_final.pth")
    assert all(torch.equal(ck["network_weights"][k], r0["weights"][k]) for k in r0["weights"])
    assert len(list(fold.glob("training_log_*.txt"))) == 1  # rank 1 wrote nothing
    log = json.loads((fold / "training_log.json").read_text())
    assert len(log["epochs"]) == 1 and log["epochs"][0]["train_loss"] is not None
    assert not list(fold.glob(".*tmp*"))


def test_cli_rejects_batch_smaller_than_ranks(prepared, tmp_path):  # noqa: F811
    import click
    from click.testing import CliRunner

    from oxunet.cli.train import train

    group = click.Group(commands={"train": train})
    r = CliRunner().invoke(group, ["train", "900", "3d_fullres", "0", "--num-gpus", "3", "--device", "cpu",
                                   "--preprocessed-dir", str(prepared / "pre"), "--results-dir", str(tmp_path)])
    assert r.exit_code != 0 and "batch of 2 across 3 ranks" in r.output


def test_rank_streams_differ(prepared, tmp_path):  # noqa: F811
    from oxunet.training.loader import epoch_loader
    from oxunet.training.trainer import Trainer

    paths = resolve_paths(preprocessed_dir=prepared / "pre", results_dir=tmp_path, environ={})
    tr = Trainer("900", "3d_fullres", 0, paths=paths, quiet=True,
                 config=TrainerConfig(name="t", num_workers=0, batch_size=2, seed=1, precision="fp32"))
    tr._build()
    assert (tr.loader_stream(False), tr.loader_stream(True)) == (0, 1)  # single-process streams unchanged
    rank0 = [b["data"] for b in epoch_loader(tr.val_spec, 2, 1, 0, stream=tr.loader_stream(True))]
    tr.rank = 1
    assert (tr.loader_stream(False), tr.loader_stream(True)) == (2, 3)
    rank1 = [b["data"] for b in epoch_loader(tr.val_spec, 2, 1, 0, stream=tr.loader_stream(True))]
    assert not any(torch.equal(a, b) for a, b in zip(rank0, rank1))
