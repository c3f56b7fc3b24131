"""Experiment planning from a dataset fingerprint: what nnU-Net's ``ExperimentPlanner`` (v2.3+)
and its ResEnc presets decide, computed without torch.

Everything here is a pure function of the fingerprint, dataset.json and the preset; files are
handled in :mod:`oxunet.planning.experiment`. The arithmetic deliberately follows nnU-Net's
order of numpy operations (``np.percentile`` for the target spacing, ``np.median`` for shapes,
Python ``round``) so that plans agree to the last bit.
"""

from __future__ import annotations

import logging
import warnings
from typing import Sequence, cast

import numpy as np

from .presets import PlannerPreset, resolve_planner
from .topology import Topology, pool_and_conv_props
from .vram import conv_feature_map_size
from ..errors import PlanningError  # noqa: F401 - this stage's error, re-exported

log = logging.getLogger("oxunet.planning")

from ..constants import ANISO_THRESHOLD  # noqa: E402 (an axis is "anisotropic" when its spacing is > 3x the next largest)
BASE_FEATURES = 32
MAX_FEATURES_3D = 320
MAX_FEATURES_2D = 512
REFERENCE_BATCH_3D = 2
REFERENCE_BATCH_2D = 12
MIN_BATCH_SIZE = 2
LOWRES_CREATION_THRESHOLD = 0.25  # plan 3d_lowres when the fullres patch covers < 25 % of the median image
LOWRES_SPACING_STEP = 1.03
LOWRES_MIN_SIZE_RATIO = 2  # drop lowres when it is not at least 2x smaller than fullres
PREPROCESSOR_NAME = "DefaultPreprocessor"

# Channel name (case-insensitive) -> nnU-Net normalization class; anything else is z-scored.
NORMALIZATION_BY_CHANNEL_NAME = {
    "ct": "CTNormalization",
    "nonorm": "NoNormalization",
    "zscore": "ZScoreNormalization",
    "rescale_to_0_1": "RescaleTo01Normalization",
    "rgb_to_0_1": "RGBTo01Normalization",
}
DEFAULT_NORMALIZATION = "ZScoreNormalization"
# Only z-scoring leaves voxels outside the mask at zero, so only it may use the nonzero mask.
MASKABLE_NORMALIZATIONS = frozenset({"ZScoreNormalization"})
MASK_FOR_NORM_MAX_RELATIVE_SIZE = 0.75

RESAMPLING_FN = "resample_data_or_seg_to_shape"
RESAMPLING_DATA_KWARGS = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
RESAMPLING_SEG_KWARGS = {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None}
RESAMPLING_PROBABILITIES_KWARGS = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}


def normalization_scheme(channel_name: str) -> str:
    return NORMALIZATION_BY_CHANNEL_NAME.get(str(channel_name).casefold(), DEFAULT_NORMALIZATION)


def normalization_schemes(channel_names: dict, median_relative_size_after_cropping: float) -> tuple[list[str], list[bool]]:
    """Scheme per channel and whether it normalizes inside the nonzero mask only (when cropping
    removed a lot, i.e. the median case kept < 75 % of its voxels, and the scheme is z-score)."""
    schemes = [normalization_scheme(n) for n in channel_names.values()]
    use_mask = median_relative_size_after_cropping < MASK_FOR_NORM_MAX_RELATIVE_SIZE
    return schemes, [use_mask and s in MASKABLE_NORMALIZATIONS for s in schemes]


def fullres_target_spacing(fingerprint: dict, overwrite: Sequence[float] | None = None) -> np.ndarray:
    """Median spacing, except for strongly anisotropic data where the coarse axis takes the 10th
    percentile (never finer than the other axes) so that thick-slice cases are not upsampled to
    a few slices' worth of interpolation."""
    if overwrite is not None:
        return np.array([float(s) for s in overwrite])
    spacings = np.vstack(fingerprint["spacings"])
    target = np.percentile(spacings, 50, 0)
    target_size = np.percentile(np.vstack(fingerprint["shapes_after_crop"]), 50, 0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    other_spacings = [target[i] for i in others]
    other_sizes = [target_size[i] for i in others]
    if target[worst] > ANISO_THRESHOLD * max(other_spacings) and target_size[worst] * ANISO_THRESHOLD < min(other_sizes):
        coarse = np.percentile(spacings[:, worst], 10)
        if coarse < max(other_spacings):
            coarse = max(max(other_spacings), coarse) + 1e-5
        target[worst] = coarse
    return target


def transpose_axes(target_spacing: Sequence[float] | np.ndarray) -> tuple[list[int], list[int]]:
    """Coarsest axis first (ties: the first), the others in order; and the inverse permutation."""
    first = int(np.argmax(target_spacing))
    forward = [first] + [i for i in range(3) if i != first]
    backward = [forward.index(i) for i in range(3)]
    return forward, backward


def _resampled_shape(shape, spacing, target) -> list[int]:
    return [int(round(s / t * n)) for s, t, n in zip(spacing, target, shape)]


class ConfigurationPlanner:
    """Plans one configuration (patch, topology, batch size) for a dataset and preset; keeps
    the VRAM estimates it computed, as nnU-Net caches them across configurations."""

    def __init__(self, preset: PlannerPreset, dataset_json: dict, gpu_memory_gb: float, median_relative_size: float):
        self.preset = preset
        self.channel_names = dataset_json.get("channel_names", dataset_json.get("modality"))
        self.num_classes = len(dataset_json["labels"])  # nnU-Net counts every key, background and ignore included
        self.gpu_memory_gb = gpu_memory_gb
        self.median_relative_size = median_relative_size
        self._estimates: dict = {}

    def architecture(self, dim: int, topology: Topology) -> dict:
        p = self.preset
        n = topology.n_stages
        max_features = MAX_FEATURES_2D if dim == 2 else MAX_FEATURES_3D
        blocks_key = "n_blocks_per_stage" if p.is_residual else "n_conv_per_stage"
        return {
            "network_class_name": p.network_class_name,
            "arch_kwargs": {
                "n_stages": n,
                "features_per_stage": [min(max_features, BASE_FEATURES * 2**i) for i in range(n)],
                "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
                "kernel_sizes": [list(k) for k in topology.kernel_sizes],
                "strides": [list(s) for s in topology.strides],
                blocks_key: list(p.blocks_encoder[:n]),
                "n_conv_per_stage_decoder": list(p.blocks_decoder[: n - 1]),
                "conv_bias": True,
                "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "dropout_op": None,
                "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        }

    def estimate(self, dim: int, topology: Topology) -> int:
        key = (topology.patch_size, topology.strides)
        if key not in self._estimates:
            arch = self.architecture(dim, topology)
            self._estimates[key] = conv_feature_map_size(
                topology.patch_size, arch["network_class_name"], arch["arch_kwargs"], self.num_classes
            )
        return self._estimates[key]

    def plan(self, spacing: Sequence[float] | np.ndarray, median_shape: Sequence[float] | np.ndarray, data_identifier: str, approx_n_voxels: float) -> dict:
        """One configuration, as nnU-Net's ``get_plans_for_configuration`` writes it."""
        sp = np.asarray(spacing, dtype=float)
        if not np.all(sp > 0):
            raise PlanningError(f"spacing must be > 0, got {sp.tolist()}")
        dim = len(sp)
        p = self.preset
        # Initial patch: aspect ratio 1/spacing, volume 256^3 (3D) or 2048^2 (2D), clipped to the median shape.
        inv = 1 / sp
        edge = 256 if dim == 3 else 2048
        initial = [round(x) for x in inv * (edge**dim / np.prod(inv)) ** (1 / dim)]
        initial = [min(a, b) for a, b in zip(initial, median_shape[:dim])]
        topology = pool_and_conv_props(sp, initial)
        estimate = self.estimate(dim, topology)

        ref_batch = REFERENCE_BATCH_2D if dim == 2 else REFERENCE_BATCH_3D
        reference = (p.reference_2d if dim == 2 else p.reference_3d) * (self.gpu_memory_gb / p.reference_gb)

        def too_big(est):
            # v2.3+: shrink until a batch of 2 fits; ResEnc planners: until one reference batch fits.
            return (est / ref_batch * 2) > reference if p.shrink_until_batch_of_two_fits else est > reference

        while too_big(estimate):
            ratios = [a / b for a, b in zip(topology.patch_size, median_shape[:dim])]
            axis = max(i for i, r in enumerate(ratios) if r == max(ratios))  # ties: the last axis
            # Step down by the divisibility the smaller patch will have (skips no valid size).
            probe = list(topology.patch_size)
            probe[axis] -= topology.must_be_divisible_by[axis]
            step = pool_and_conv_props(sp, probe).must_be_divisible_by[axis]
            patch = list(topology.patch_size)
            patch[axis] -= step
            topology = pool_and_conv_props(sp, patch)
            estimate = self.estimate(dim, topology)

        batch_size = round((reference / estimate) * ref_batch)
        cap = round(approx_n_voxels * p.max_dataset_covered / np.prod(topology.patch_size, dtype=np.float64))
        batch_size = max(min(batch_size, cap), MIN_BATCH_SIZE)

        schemes, use_mask = normalization_schemes(cast(dict, self.channel_names), self.median_relative_size)  # dataset.json requires it
        return {
            "data_identifier": data_identifier,
            "preprocessor_name": PREPROCESSOR_NAME,
            "batch_size": int(batch_size),
            "patch_size": [int(x) for x in topology.patch_size],
            "median_image_size_in_voxels": [_json_number(x) for x in median_shape],
            "spacing": [float(x) for x in sp],
            "normalization_schemes": schemes,
            "use_mask_for_norm": use_mask,
            "resampling_fn_data": RESAMPLING_FN,
            "resampling_fn_seg": RESAMPLING_FN,
            "resampling_fn_data_kwargs": dict(RESAMPLING_DATA_KWARGS),
            "resampling_fn_seg_kwargs": dict(RESAMPLING_SEG_KWARGS),
            "resampling_fn_probabilities": RESAMPLING_FN,
            "resampling_fn_probabilities_kwargs": dict(RESAMPLING_PROBABILITIES_KWARGS),
            "architecture": self.architecture(dim, topology),
        }


def _json_number(x):
    """Keeps nnU-Net's JSON types: ints stay ints, numpy floats become floats."""
    return int(x) if isinstance(x, (int, np.integer)) else float(x)


def data_identifier(preset: PlannerPreset, plans_name: str, configuration: str) -> str:
    if preset.share_default_data and configuration in ("2d", "3d_fullres"):
        return f"nnUNetPlans_{configuration}"  # ResEnc reuses the default planner's preprocessed data
    return f"{plans_name}_{configuration}"


def _check_fingerprint(fingerprint: dict) -> None:
    for key in ("spacings", "shapes_after_crop", "foreground_intensity_properties_per_channel", "median_relative_size_after_cropping"):
        if key not in fingerprint:
            raise PlanningError(f"the fingerprint has no {key!r}")
    if not fingerprint["spacings"] or len(fingerprint["spacings"]) != len(fingerprint["shapes_after_crop"]):
        raise PlanningError("the fingerprint needs one spacing and one shape per case")
    if any(len(s) != 3 for s in fingerprint["spacings"]) or any(len(s) != 3 for s in fingerprint["shapes_after_crop"]):
        raise PlanningError("fingerprint spacings and shapes must have 3 axes (2D data are pseudo-3D with a first axis of size 1)")


def plan_from_fingerprint(
    fingerprint: dict,
    dataset_json: dict,
    dataset_name: str,
    image_reader_writer: str,
    planner: str | PlannerPreset = "default",
    gpu_memory_gb: float | None = None,
    plans_name: str | None = None,
    overwrite_target_spacing: Sequence[float] | None = None,
) -> dict:
    """The plans nnU-Net's planner class writes for this fingerprint (without the ``oxunet`` key)."""
    preset = resolve_planner(planner)
    _check_fingerprint(fingerprint)
    if gpu_memory_gb is None:
        gpu_memory_gb = preset.reference_gb
    elif preset.warn_on_memory_override and gpu_memory_gb != preset.reference_gb:
        warnings.warn(
            f"planner {preset.name} is tuned for {preset.reference_gb:g} GB; planning for {gpu_memory_gb:g} GB instead",
            stacklevel=2,
        )
    if gpu_memory_gb <= 0:
        raise PlanningError(f"the GPU memory target must be > 0 GB, got {gpu_memory_gb}")
    if overwrite_target_spacing is not None and (
        len(overwrite_target_spacing) != 3 or any(float(s) <= 0 for s in overwrite_target_spacing)
    ):
        raise PlanningError(f"overwrite_target_spacing needs 3 positive numbers, got {list(overwrite_target_spacing)}")
    plans_name = plans_name or preset.plans_name
    num_training = int(dataset_json["numTraining"])
    planner_ = ConfigurationPlanner(preset, dataset_json, gpu_memory_gb, fingerprint["median_relative_size_after_cropping"])

    target = fullres_target_spacing(fingerprint, overwrite_target_spacing)
    forward, backward = transpose_axes(target)
    spacing_t = target[forward]
    new_shapes = [_resampled_shape(shape, sp, target) for sp, shape in zip(fingerprint["spacings"], fingerprint["shapes_after_crop"])]
    median_t = np.median(new_shapes, 0)[forward]
    approx_n_voxels = float(np.prod(median_t, dtype=np.float64) * num_training)

    fullres = lowres = None
    if median_t[0] != 1:  # 3D data
        fullres = planner_.plan(spacing_t, median_t, data_identifier(preset, plans_name, "3d_fullres"), approx_n_voxels)
        lowres = _plan_lowres(planner_, preset, plans_name, fullres, spacing_t, median_t, num_training)
        fullres["batch_dice"] = lowres is not None
        if lowres is not None:
            lowres["batch_dice"] = False
            lowres["next_stage"] = "3d_cascade_fullres"
    plan_2d = planner_.plan(spacing_t[1:], median_t[1:], data_identifier(preset, plans_name, "2d"), approx_n_voxels)
    plan_2d["batch_dice"] = True

    configurations = {"2d": plan_2d}
    if lowres is not None:
        configurations["3d_lowres"] = lowres
    if fullres is not None:
        configurations["3d_fullres"] = fullres
        if lowres is not None:
            configurations["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}

    return {
        "dataset_name": dataset_name,
        "plans_name": plans_name,
        "original_median_spacing_after_transp": [float(x) for x in np.median(fingerprint["spacings"], 0)[forward]],
        "original_median_shape_after_transp": [int(round(x)) for x in np.median(fingerprint["shapes_after_crop"], 0)[forward]],
        "image_reader_writer": image_reader_writer,
        "transpose_forward": forward,
        "transpose_backward": backward,
        "configurations": configurations,
        "experiment_planner_used": preset.nnunet_class,
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": fingerprint["foreground_intensity_properties_per_channel"],
    }


def _plan_lowres(planner_, preset, plans_name, fullres, spacing_t, median_t, num_training) -> dict | None:
    """Coarsens the spacing in 3 % steps (first only axes > 2x finer than the coarsest) until the
    patch covers >= 25 % of the median image; dropped when not at least 2x smaller than fullres."""
    fullres_spacing = np.asarray(fullres["spacing"], dtype=float)
    median_voxels = np.prod(median_t, dtype=np.float64)
    patch_voxels: np.number = np.prod(fullres["patch_size"], dtype=np.float64)
    spacing = fullres_spacing.copy()
    lowres = None
    while patch_voxels / median_voxels < LOWRES_CREATION_THRESHOLD:
        finer = (max(spacing) / spacing) > 2
        if np.any(finer):
            spacing[finer] *= LOWRES_SPACING_STEP
        else:
            spacing *= LOWRES_SPACING_STEP
        shape = fullres_spacing / spacing * median_t
        median_voxels = np.prod(shape, dtype=np.float64)
        lowres = planner_.plan(
            spacing.copy(),
            tuple(round(x) for x in shape),
            data_identifier(preset, plans_name, "3d_lowres"),
            float(np.prod(median_voxels) * num_training),
        )
        patch_voxels = np.prod(lowres["patch_size"], dtype=np.int64)
    if np.prod(median_t, dtype=np.float64) / median_voxels < LOWRES_MIN_SIZE_RATIO:
        if lowres is not None:
            log.info("dropping 3d_lowres: its median image is less than 2x smaller than 3d_fullres")
        return None
    return lowres
