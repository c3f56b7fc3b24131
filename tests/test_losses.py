"""Our losses vs nnunetv2.training.loss on random logits/targets, plus hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oxunet.training.losses import (
    CrossEntropyLoss,
    DeepSupervisionLoss,
    DiceCELoss,
    RegionDiceBCELoss,
    SoftDiceLoss,
    TopKLoss,
    build_loss,
    deep_supervision_scales,
    default_deep_supervision_weights,
)
from peers import require

SHAPES = {2: (2, 4, 12, 10), 3: (2, 4, 6, 8, 5)}  # (b, c, spatial...)


def nn_loss():
    require("nnunetv2")
    import nnunetv2.training.loss as loss_pkg
    from nnunetv2.training.loss import compound_losses, deep_supervision, dice, robust_ce_loss

    return loss_pkg, compound_losses, deep_supervision, dice, robust_ce_loss


def random_case(dim: int, seed: int, ignore_label: int | None = None, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    b, c, *spatial = SHAPES[dim]
    logits = torch.randn(b, classes, *spatial, generator=g) * 2
    target = torch.randint(0, classes, (b, 1, *spatial), generator=g).float()
    if ignore_label is not None:
        target[torch.rand(target.shape, generator=g) < 0.3] = ignore_label
    return logits, target


def region_case(dim: int, seed: int, with_ignore: bool):
    g = torch.Generator().manual_seed(seed)
    b, _, *spatial = SHAPES[dim]
    logits = torch.randn(b, 3, *spatial, generator=g)
    regions = (torch.rand(b, 3, *spatial, generator=g) < 0.4)
    if with_ignore:
        ignore = torch.rand(b, 1, *spatial, generator=g) < 0.25
        regions = torch.cat([regions, ignore], 1)
    return logits, regions


def value_and_grad(loss_fn, logits, target):
    x = logits.clone().requires_grad_(True)
    value = loss_fn(x, target)
    value.backward()
    return value.detach(), x.grad


def assert_same(ours, theirs, logits, target):
    v_o, g_o = value_and_grad(ours, logits, target)
    v_t, g_t = value_and_grad(theirs, logits, target)
    assert math.isfinite(float(v_t))
    torch.testing.assert_close(v_o, v_t, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_o, g_t, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("ignore_label", [None, 4])
def test_dice_ce_matches_nnunet(dim, batch_dice, ignore_label):
    _, compound, _, dice, _ = nn_loss()
    theirs = compound.DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                     weight_ce=1, weight_dice=1, ignore_label=ignore_label,
                                     dice_class=dice.MemoryEfficientSoftDiceLoss)
    ours = build_loss("dice_ce", batch_dice=batch_dice, ignore_label=ignore_label)
    assert isinstance(ours, DiceCELoss)
    logits, target = random_case(dim, seed=dim * 10 + batch_dice, ignore_label=ignore_label)
    assert_same(ours, theirs, logits, target)


def test_dice_ce_with_nothing_annotated_is_dice_only_like_nnunet():
    _, compound, _, dice, _ = nn_loss()
    theirs = compound.DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                     ignore_label=3, dice_class=dice.MemoryEfficientSoftDiceLoss)
    ours = build_loss(batch_dice=True, ignore_label=3)
    logits, _ = random_case(2, seed=5, classes=3)
    target = torch.full((2, 1, 12, 10), 3.0)
    assert_same(ours, theirs, logits, target)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("with_ignore", [False, True])
def test_region_dice_bce_matches_nnunet(dim, batch_dice, with_ignore):
    _, compound, _, dice, _ = nn_loss()
    theirs = compound.DC_and_BCE_loss({}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": False},
                                      use_ignore_label=with_ignore, dice_class=dice.MemoryEfficientSoftDiceLoss)
    ours = build_loss("dice_ce", batch_dice=batch_dice, is_regions=True, ignore_label=5 if with_ignore else None)
    assert isinstance(ours, RegionDiceBCELoss)
    logits, regions = region_case(dim, seed=dim + 2 * batch_dice, with_ignore=with_ignore)
    assert_same(ours, theirs, logits, regions)  # bool target, as nnU-Net's loader delivers it
    assert_same(ours, theirs, logits, regions.float())


@pytest.mark.parametrize("ignore_label", [None, 4])
def test_ce_only_matches_nnunet(ignore_label):
    *_, robust = nn_loss()
    theirs = robust.RobustCrossEntropyLoss(weight=None, ignore_index=-100 if ignore_label is None else ignore_label)
    ours = build_loss("ce", batch_dice=False, ignore_label=ignore_label)
    assert isinstance(ours, CrossEntropyLoss)
    logits, target = random_case(3, seed=7, ignore_label=ignore_label)
    assert_same(ours, theirs, logits, target)
    if ignore_label is not None:  # nnU-Net: NaN over a fully ignored batch; we give 0 with a zero gradient
        value, grad = value_and_grad(ours, logits, torch.full_like(target, ignore_label))
        assert float(value) == 0 and torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_label", [None, 4])
def test_topk_matches_nnunet(label_smoothing, ignore_label):
    *_, robust = nn_loss()
    theirs = robust.TopKLoss(ignore_index=-100 if ignore_label is None else ignore_label, k=10,
                             label_smoothing=label_smoothing)
    ours = build_loss("topk", batch_dice=False, ignore_label=ignore_label, label_smoothing=label_smoothing)
    assert isinstance(ours, TopKLoss)
    logits, target = random_case(3, seed=11, ignore_label=ignore_label)
    assert_same(ours, theirs, logits, target)


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("ignore_label", [None, 4])
def test_dice_topk_matches_nnunet(batch_dice, ignore_label):
    _, compound, *_ = nn_loss()
    theirs = compound.DC_and_topk_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False},
                                       {"k": 10, "label_smoothing": 0.0}, ignore_label=ignore_label)
    ours = build_loss("dice_topk", batch_dice=batch_dice, ignore_label=ignore_label)
    logits, target = random_case(2, seed=13 + batch_dice, ignore_label=ignore_label)
    assert_same(ours, theirs, logits, target)


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("regions", [False, True])
def test_dice_only_matches_nnunet(batch_dice, regions):
    _, _, _, dice, _ = nn_loss()
    from nnunetv2.utilities.helpers import softmax_helper_dim1

    theirs = dice.MemoryEfficientSoftDiceLoss(batch_dice=batch_dice, do_bg=regions, smooth=1e-5, ddp=False,
                                              apply_nonlin=torch.sigmoid if regions else softmax_helper_dim1)
    ours = build_loss("dice", batch_dice=batch_dice, is_regions=regions)
    logits, target = region_case(3, 3, False) if regions else random_case(3, seed=17)
    assert_same(ours, theirs, logits, target)


def test_dice_only_with_ignore_label_equals_masked_dice_of_dice_ce():
    # nnU-Net's Dice-only trainer would index out of range on the ignore label; ours masks it like Dice+CE does
    logits, target = random_case(2, seed=19, ignore_label=4)
    dice_only = build_loss("dice", batch_dice=False, ignore_label=4)
    dice_ce = build_loss("dice_ce", batch_dice=False, ignore_label=4)
    ce = build_loss("ce", batch_dice=False, ignore_label=4)
    torch.testing.assert_close(dice_only(logits, target), dice_ce(logits, target) - ce(logits, target))


def test_hand_computed_dice_and_ce():
    # two voxels, two classes: p(class 1) = 0.5 and 0.75; labels 1 and 0
    logits = torch.tensor([[[[0.0], [0.0]], [[0.0], [math.log(3)]]]])  # (b=1, c=2, 2, 1)
    target = torch.tensor([[[[1.0], [0.0]]]])
    dice = SoftDiceLoss("softmax", do_bg=False, smooth=0.0)(logits, target)
    # I = 0.5, P = 1.25, G = 1 -> 2I / (P + G) = 1 / 2.25
    assert float(dice) == pytest.approx(-1 / 2.25, abs=1e-7)
    ce = CrossEntropyLoss()(logits, target)
    assert float(ce) == pytest.approx((-math.log(0.5) - math.log(0.25)) / 2, abs=1e-6)
    total = DiceCELoss(batch_dice=False, smooth=0.0)(logits, target)
    assert float(total) == pytest.approx(float(ce) + float(dice), abs=1e-6)
    # smooth 1e-5 on the same case, and a sample without foreground scores (0 + s)/(P + s) ~ 0
    assert float(SoftDiceLoss("softmax", do_bg=False)(logits, target)) == pytest.approx(-(1 + 1e-5) / (2.25 + 1e-5))
    empty = SoftDiceLoss("softmax", do_bg=False)(logits, torch.zeros_like(target))
    assert float(empty) == pytest.approx(-1e-5 / (1.25 + 1e-5))


def test_hand_computed_topk_and_masked_ce():
    # 20 voxels, the k = 10 % top two losses are kept
    logits = torch.zeros(1, 2, 20)
    logits[0, 1, :2] = torch.tensor([-3.0, -2.0])  # label 1 is unlikely at the first two voxels
    target = torch.ones(1, 1, 20)
    expected = (math.log1p(math.exp(3.0)) + math.log1p(math.exp(2.0))) / 2  # -log sigmoid(-3), -log sigmoid(-2)
    assert float(TopKLoss(k=10)(logits, target)) == pytest.approx(expected, rel=1e-6)
    target[0, 0, :2] = 7  # ignore both hard voxels: the rest have CE log 2
    assert float(CrossEntropyLoss(ignore_label=7)(logits, target)) == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("num_outputs", [2, 3, 5, 6])
def test_default_deep_supervision_weights_as_nnunet_computes_them(num_outputs):
    weights = np.array([1 / (2**i) for i in range(num_outputs)])  # nnUNetTrainer._build_loss
    weights[-1] = 0
    weights = weights / weights.sum()
    assert default_deep_supervision_weights(num_outputs) == pytest.approx(weights.tolist(), abs=1e-15)
    assert default_deep_supervision_weights(1) == [1.0]


def test_deep_supervision_scales_as_nnunet_computes_them():
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    expected = list(list(i) for i in 1 / np.cumprod(np.vstack(strides), axis=0))[:-1]
    assert deep_supervision_scales(strides) == [pytest.approx(list(e)) for e in expected]


def _pyramid(dim_sizes, seed, regions=False):
    outs, tgts = [], []
    for i, s in enumerate(dim_sizes):
        g = torch.Generator().manual_seed(seed + i)
        outs.append(torch.randn(2, 3, s, s, generator=g))
        tgts.append((torch.rand(2, 3, s, s, generator=g) < 0.5) if regions
                    else torch.randint(0, 3, (2, 1, s, s), generator=g).float())
    return outs, tgts


def test_deep_supervision_wrapper_matches_nnunet():
    _, compound, ds, dice, _ = nn_loss()
    n = 4
    weights = np.array([1 / (2**i) for i in range(n)])
    weights[-1] = 0
    weights /= weights.sum()
    base = compound.DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                   dice_class=dice.MemoryEfficientSoftDiceLoss)
    theirs = ds.DeepSupervisionWrapper(base, weights)
    ours = build_loss(batch_dice=True, num_outputs=n)
    assert isinstance(ours, DeepSupervisionLoss)
    outs, tgts = _pyramid([16, 8, 4, 2], seed=23)
    torch.testing.assert_close(ours(outs, tgts), theirs(outs, tgts).float(), rtol=0, atol=1e-5)


def test_configurable_deep_supervision_weights():
    ours = build_loss(batch_dice=False, num_outputs=5, deep_supervision_weights=[0.7, 0.2, 0.1])
    assert ours.weights == (0.7, 0.2, 0.1, 0.0, 0.0)
    outs, tgts = _pyramid([16, 8, 4, 2, 1], seed=29)
    single = build_loss(batch_dice=False)
    expected = sum(w * single(o, t) for w, o, t in zip([0.7, 0.2, 0.1], outs, tgts))
    torch.testing.assert_close(ours(outs, tgts), expected)
    # zero-weight outputs are never evaluated (a NaN there would otherwise leak in)
    outs[4] = torch.full_like(outs[4], float("nan"))
    assert torch.isfinite(ours(outs, tgts))


def test_region_loss_under_deep_supervision():
    ours = build_loss(batch_dice=True, is_regions=True, num_outputs=3)
    outs, tgts = _pyramid([8, 4, 2], seed=31, regions=True)
    single = build_loss(batch_dice=True, is_regions=True)
    expected = (4 / 6) * single(outs[0], tgts[0]) + (2 / 6) * single(outs[1], tgts[1])
    torch.testing.assert_close(ours(outs, tgts), expected)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: build_loss("focal", batch_dice=True), ValueError, "unknown loss 'focal'"),
        (lambda: build_loss("topk", batch_dice=True, is_regions=True), ValueError, "for label maps"),
        (lambda: build_loss(batch_dice=True, num_outputs=2, deep_supervision_weights=[0.5, 0.3, 0.2]),
         ValueError, "3 deep supervision weights for a network with 2 outputs"),
        (lambda: build_loss(batch_dice=True, deep_supervision_weights=[0, 0]), ValueError, "at least one > 0"),
        (lambda: TopKLoss(k=0), ValueError, "in \\(0, 100\\]"),
    ],
)
def test_bad_loss_configuration(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_inputs_are_named():
    ds = build_loss(batch_dice=True, num_outputs=3)
    outs, tgts = _pyramid([8, 4, 2], seed=1)
    with pytest.raises(TypeError, match="deep supervision switched off"):
        ds(outs[0], tgts[0])
    with pytest.raises(ValueError, match="3 weights but got 2 outputs"):
        ds(outs[:2], tgts[:2])
    with pytest.raises(ValueError, match="one channel"):
        build_loss(batch_dice=True)(outs[0], torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="plus the ignore channel"):
        build_loss(batch_dice=True, is_regions=True, ignore_label=9)(outs[0], torch.zeros(2, 3, 8, 8))


def test_losses_and_networks_pickle():
    # spawn-based workers pickle modules; DNA's residual blocks hold lambdas and cannot be pickled
    import pickle

    from oxunet.networks import build_network
    from test_networks import RESENC, small_arch

    loss = build_loss(batch_dice=True, num_outputs=3, ignore_label=3)
    net = build_network(small_arch(RESENC, 2), 1, 3)
    outs = net(torch.randn(1, 1, 32, 32))
    tgts = [torch.randint(0, 3, (1, 1, *o.shape[2:])).float() for o in outs]
    loss2, net2 = pickle.loads(pickle.dumps(loss)), pickle.loads(pickle.dumps(net))
    torch.testing.assert_close(loss2(net2(torch.zeros(1, 1, 32, 32)), tgts), loss(net(torch.zeros(1, 1, 32, 32)), tgts))


@pytest.mark.parametrize(
    "make, regions",
    [
        (lambda: SoftDiceLoss("softmax", do_bg=False), False),
        (lambda: SoftDiceLoss("sigmoid"), True),
        (lambda: CrossEntropyLoss(ignore_label=3), False),
        (lambda: TopKLoss(ignore_label=3), False),
        (lambda: DiceCELoss(batch_dice=True, ignore_label=3), False),
        (lambda: RegionDiceBCELoss(batch_dice=True), True),
        (lambda: build_loss(batch_dice=True), False),
    ],
)
def test_losses_move_with_to_and_double(make, regions):
    # a loss attribute named like an nn.Module method (SoftDiceLoss once stored its nonlinearity
    # as ``_apply``) breaks .to()/.double()/.cuda(); the value must not change with the dtype
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 8, 6, generator=gen)
    target = ((torch.rand(2, 3, 8, 6, generator=gen) > 0.5).float() if regions
              else torch.randint(0, 3, (2, 1, 8, 6), generator=gen).float())
    loss = make()
    expected = loss(logits, target)
    moved = make().to("cpu", torch.float64)
    doubled = make().double()
    for other in (moved, doubled):
        value = other(logits.double(), target.double())  # Dice sums stay float32 by design
        torch.testing.assert_close(value.float(), expected, rtol=1e-5, atol=1e-6)
