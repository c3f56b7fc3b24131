"""Planner building blocks against nnunetv2's own functions: topology, the VRAM estimate
(analytic here, a built network there), presets, normalization names, input checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from oxunet.planning import PlanningError, conv_feature_map_size, plan_from_fingerprint, pool_and_conv_props, resolve_planner
from oxunet.planning.planner import fullres_target_spacing, normalization_schemes, transpose_axes
from oxunet.planning.presets import PRESETS
from peers import require


def _random_topology_inputs(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        dim = int(rng.choice([2, 3]))
        spacing = rng.choice([0.5, 0.7, 0.8, 1.0, 1.5, 2.5, 3.0, 5.0], dim) * rng.uniform(0.9, 1.1, dim)
        patch = rng.integers(1, 400, dim).astype(float)
        if rng.random() < 0.3:
            patch += 0.5  # nnU-Net clips the initial patch to medians that can end in .5
        yield spacing, patch


def test_topology_matches_nnunet_get_pool_and_conv_props():
    require("nnunetv2")
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    for spacing, patch in _random_topology_inputs(1500, 0):
        num_pool, strides, kernels, padded, divisible = get_pool_and_conv_props(spacing, patch, 4, 999999)
        ours = pool_and_conv_props(spacing, patch)
        assert list(ours.num_pool_per_axis) == list(num_pool), (spacing, patch)
        assert ours.strides == strides and ours.kernel_sizes == kernels, (spacing, patch)
        assert ours.patch_size == tuple(int(x) for x in padded), (spacing, patch)
        assert list(ours.must_be_divisible_by) == list(divisible)


def test_topology_examples():
    t = pool_and_conv_props((3.0, 0.8, 0.8), (40, 192, 160))
    assert t.strides[:3] == ((1, 1, 1), (1, 2, 2), (2, 2, 2))  # the thick axis waits one stage
    assert t.kernel_sizes[0] == (1, 3, 3) and t.kernel_sizes[-1] == (3, 3, 3)
    assert all(p % d == 0 for p, d in zip(t.patch_size, t.must_be_divisible_by))
    assert pool_and_conv_props((1.0, 1.0), (7, 7)).n_stages == 1  # too small to pool at all


def _arch(dim, topology, residual, n_classes_unused=None):
    n = topology.n_stages
    kw = {
        "n_stages": n,
        "features_per_stage": [min(512 if dim == 2 else 320, 32 * 2**i) for i in range(n)],
        "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
        "kernel_sizes": [list(k) for k in topology.kernel_sizes],
        "strides": [list(s) for s in topology.strides],
        "n_conv_per_stage_decoder": [1 if residual else 2] * (n - 1),
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    if residual:
        kw["n_blocks_per_stage"] = [1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6][:n]
        cls = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    else:
        kw["n_conv_per_stage"] = [2] * n
        cls = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    return cls, kw


def _compare_vram_estimates(n, seed):
    require("nnunetv2")
    import torch
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    rng = np.random.default_rng(seed)
    cases = 0
    for spacing, patch in _random_topology_inputs(n, seed):
        topology = pool_and_conv_props(spacing, np.maximum(patch, 8))
        dim = len(spacing)
        residual = bool(rng.random() < 0.5)
        n_classes = int(rng.integers(2, 9))
        cls, kw = _arch(dim, topology, residual)
        with torch.device("meta"):
            theirs = ExperimentPlanner.static_estimate_VRAM_usage(
                topology.patch_size, int(rng.integers(1, 4)), n_classes, cls, kw, ("conv_op", "norm_op", "dropout_op", "nonlin")
            )
        assert conv_feature_map_size(topology.patch_size, cls, kw, n_classes) == int(theirs), (cls, topology)
        cases += 1
    assert cases == n


def test_vram_estimate_equals_nnunet_static_estimate():
    """nnU-Net's ``static_estimate_VRAM_usage`` builds the network (on the meta device here, which
    allocates nothing; the count is arithmetic on sizes) — ours adds the same sizes up."""
    _compare_vram_estimates(20, 2)


@pytest.mark.slow
def test_vram_estimate_equals_nnunet_static_estimate_many():
    _compare_vram_estimates(300, 3)


def test_vram_estimate_reference_values_in_nnunet_sources():
    """The numbers nnU-Net's ResEnc planner quotes for its reference networks (built with
    deep supervision), and the default 3D network at 128^3."""
    cls, kw = _arch(3, pool_and_conv_props((1, 1, 1), (128, 128, 128)), residual=True)
    kw["kernel_sizes"] = [[3, 3, 3]] * 6
    assert conv_feature_map_size((128, 128, 128), cls, kw, 3, deep_supervision=True) == 558319104
    cls, kw = _arch(2, pool_and_conv_props((1, 1), (512, 512)), residual=True)
    kw = {**kw, "n_stages": 7, "features_per_stage": kw["features_per_stage"][:7], "strides": kw["strides"][:7],
          "kernel_sizes": kw["kernel_sizes"][:7], "n_blocks_per_stage": kw["n_blocks_per_stage"][:7], "n_conv_per_stage_decoder": [1] * 6}
    assert conv_feature_map_size((512, 512), cls, kw, 3, deep_supervision=True) == 129793792
    cls, kw = _arch(3, pool_and_conv_props((1, 1, 1), (128, 128, 128)), residual=False)
    assert conv_feature_map_size((128, 128, 128), cls, kw, 3) == 452796416


def test_vram_estimate_rejects_other_networks():
    with pytest.raises(ValueError, match="Primus"):
        conv_feature_map_size((64, 64, 64), "x.Primus", {}, 2)


def test_presets_and_aliases():
    assert resolve_planner("ExperimentPlanner").name == "default"
    assert resolve_planner("nnUNetPlannerResEncL") is PRESETS["ResEncL"]
    assert resolve_planner("resencxl").plans_name == "nnUNetResEncUNetXLPlans"
    assert resolve_planner("ResEncUNetPlanner").max_dataset_covered == 0.05
    assert [PRESETS[k].reference_gb for k in ("ResEncM", "ResEncL", "ResEncXL")] == [8, 24, 40]
    with pytest.raises(ValueError, match="unknown planner 'Foo'.*nnUNetPlannerResEncM"):
        resolve_planner("Foo")


def test_normalization_names_match_nnunet():
    require("nnunetv2")
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme

    names = ["CT", "ct", "noNorm", "NONORM", "zscore", "rescale_to_0_1", "RGB_to_0_1", "T2", "MRI", "flair", ""]
    for rel_size in (0.5, 0.75, 0.9):
        schemes, masks = normalization_schemes({str(i): n for i, n in enumerate(names)}, rel_size)
        theirs = [get_normalization_scheme(n) for n in names]
        assert schemes == [t.__name__ for t in theirs]
        expected_masks = [bool(t.leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true) and rel_size < 0.75 for t in theirs]
        assert masks == expected_masks


def test_target_spacing_and_transpose_rules():
    fp = {"spacings": [[5.0, 0.7, 0.7], [3.0, 0.7, 0.7], [6.0, 0.8, 0.8]], "shapes_after_crop": [[20, 512, 512]] * 3}
    target = fullres_target_spacing(fp)
    assert target[0] == pytest.approx(np.percentile([5.0, 3.0, 6.0], 10))  # anisotropic: 10th percentile
    assert transpose_axes([1.0, 1.0, 3.0]) == ([2, 0, 1], [1, 2, 0])
    assert transpose_axes([1.0, 1.0, 1.0]) == ([0, 1, 2], [0, 1, 2])
    assert list(fullres_target_spacing(fp, (1, 2, 3))) == [1.0, 2.0, 3.0]


def _fp(n=5):
    stats = {"mean": 0.0, "median": 0.0, "std": 1.0, "min": 0.0, "max": 1.0, "percentile_99_5": 1.0, "percentile_00_5": 0.0}
    return {
        "spacings": [[1.0, 1.0, 1.0]] * n, "shapes_after_crop": [[64, 64, 64]] * n,
        "foreground_intensity_properties_per_channel": {"0": stats}, "median_relative_size_after_cropping": 1.0,
    }


DS = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1}, "numTraining": 5, "file_ending": ".nii.gz"}


def test_planner_input_errors():
    with pytest.raises(PlanningError, match="median_relative_size_after_cropping"):
        plan_from_fingerprint({k: v for k, v in _fp().items() if k != "median_relative_size_after_cropping"}, DS, "D", "SimpleITKIO")
    bad = _fp()
    bad["spacings"] = bad["spacings"][:2]
    with pytest.raises(PlanningError, match="one spacing and one shape per case"):
        plan_from_fingerprint(bad, DS, "D", "SimpleITKIO")
    with pytest.raises(PlanningError, match="GPU memory target must be > 0"):
        plan_from_fingerprint(_fp(), DS, "D", "SimpleITKIO", gpu_memory_gb=0)
    with pytest.raises(PlanningError, match="3 positive numbers"):
        plan_from_fingerprint(_fp(), DS, "D", "SimpleITKIO", overwrite_target_spacing=(1.0, 1.0))
    with pytest.warns(UserWarning, match="tuned for 24 GB"):
        plan_from_fingerprint(_fp(), DS, "D", "SimpleITKIO", "ResEncL", gpu_memory_gb=12)


def test_more_memory_never_shrinks_the_patch():
    prev = None
    for gb in (2, 4, 8, 16, 32):
        fp = _fp(200)
        fp["shapes_after_crop"] = [[300, 300, 300]] * 200
        patch = plan_from_fingerprint(fp, {**DS, "numTraining": 200}, "D", "SimpleITKIO", gpu_memory_gb=gb)["configurations"]["3d_fullres"]["patch_size"]
        if prev is not None:
            assert np.prod(patch) >= np.prod(prev)
        prev = patch


def test_planning_does_not_import_torch():
    code = (
        "import sys; from oxunet.planning import plan_from_fingerprint; "
        "fp = {'spacings': [[1.0, 1.0, 1.0]] * 3, 'shapes_after_crop': [[64, 64, 64]] * 3, "
        "'foreground_intensity_properties_per_channel': {}, 'median_relative_size_after_cropping': 1.0}; "
        "ds = {'channel_names': {'0': 'CT'}, 'labels': {'background': 0, 'a': 1}, 'numTraining': 3}; "
        "p = plan_from_fingerprint(fp, ds, 'D', 'SimpleITKIO', 'ResEncM'); "
        "print('torch' in sys.modules, p['configurations']['3d_fullres']['patch_size'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "False"
