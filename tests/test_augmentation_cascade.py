"""Cascade corruption of the previous stage's one-hot: morphology and component removal vs batchgeneratorsv2."""

import numpy as np
import pytest
import torch

from oxunet.training.augmentation import build_training_transforms, configure_augmentation
from oxunet.training.augmentation._base import Batch
from oxunet.training.augmentation.cascade import (
    BINARY_OPERATORS,
    RandomBinaryOperator,
    RemoveRandomComponent,
    ball_footprint,
)
from peers import require


def test_footprint_matches_scikit_image():
    require("skimage")
    from skimage.morphology import ball, disk

    for r in [1, 1.3, 2, 2.5, 2.7, 3.49, 4, 5.5, 7.99]:
        np.testing.assert_array_equal(ball_footprint(r, 3), ball(r, dtype=bool))
        np.testing.assert_array_equal(ball_footprint(r, 2), disk(r, dtype=bool))


def _mask(shape, seed):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((1, 1, *[max(2, s // 5) for s in shape]), generator=g)
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    return torch.nn.functional.interpolate(low, shape, mode=mode)[0, 0] > 0.55


@pytest.mark.parametrize("shape", [(18, 20, 16), (30, 26)])
def test_binary_operators_match(shape):
    require("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.nnunet.random_binary_operator import (
        binary_closing_torch,
        binary_dilation_torch,
        binary_erosion_torch,
        binary_opening_torch,
    )

    theirs = (binary_dilation_torch, binary_erosion_torch, binary_closing_torch, binary_opening_torch)
    for seed, r in enumerate([1.0, 1.6, 2.5, 3.2]):
        mask = _mask(shape, seed)
        fp = torch.from_numpy(ball_footprint(r, len(shape)))
        for ours, ref in zip(BINARY_OPERATORS, theirs):
            assert torch.equal(ours(mask, fp), ref(mask, fp)), (ours.__name__, r)


def test_random_binary_operator_keeps_channels_disjoint():
    onehot = torch.zeros(1, 3, 20, 20, 20)
    onehot[0, 1, 4:10, 4:10, 4:10] = 1
    onehot[0, 2, 10:16, 4:10, 4:10] = 1
    t = RandomBinaryOperator([-2, -1], (1.0, 4.0), p_per_label=1.0)
    for seed in range(6):
        out = t(Batch(onehot.clone(), None), torch.Generator().manual_seed(seed)).data[0]
        assert torch.all((out[1] + out[2]) <= 1)
        assert set(out[1:].unique().tolist()) <= {0.0, 1.0}


def test_remove_random_component_removes_one_small_component():
    onehot = torch.zeros(1, 2, 24, 24, 24)
    onehot[0, 1, 2:5, 2:5, 2:5] = 1          # 27 voxels
    onehot[0, 1, 10:14, 10:14, 10:14] = 1    # 64 voxels
    onehot[0, 1, 17:23, :, :] = 1            # 3456 voxels: above 15% of 13824, never removed
    sizes_before = [27, 64, 3456]
    removed = set()
    for seed in range(12):
        out = RemoveRandomComponent([-1], 0.15, 1.0)(Batch(onehot.clone(), None), torch.Generator().manual_seed(seed))
        lost = int(onehot[0, 1].sum() - out.data[0, 1].sum())
        assert lost in sizes_before[:2]
        removed.add(lost)
        assert torch.equal(out.data[0, 0], onehot[0, 0])
    assert removed == {27, 64}


def test_cascade_pipeline_appends_one_hot_and_corrupts_only_it():
    patch = (16, 20, 16)
    initial = configure_augmentation(patch).initial_patch_size
    aug = build_training_transforms(patch, "default", is_cascaded=True, foreground_labels=[1, 2])
    g = torch.Generator().manual_seed(0)
    data = torch.randn(1, *initial, generator=g)
    seg = torch.zeros(2, *initial, dtype=torch.int16)
    seg[:, 10:25, 10:30, 8:20] = 1
    seg[:, 25:30, 12:22, 10:20] = 2
    for seed in range(5):
        out, out_seg = aug(data, seg, torch.Generator().manual_seed(seed))
        assert out.shape == (3, *patch) and out_seg.shape == (1, *patch)
        assert set(out[1:].unique().tolist()) <= {0.0, 1.0}
        assert torch.all(out[1:].sum(0) <= 1)
