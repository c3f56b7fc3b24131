"""nnU-Net's inference preprocessing on a torch device: transpose, crop to the nonzero bounding box,
normalise, resample — equal to :func:`oxunet.preprocessing.preprocess_case` without a seg.

Only the image crosses to the device (in its own dtype: an int16 CT moves half the bytes). The
bounding box of the hole-filled nonzero mask equals that of the mask itself (holes lie inside
it), so no hole filling is needed; masked ZScore, which needs the filled mask, returns None and
the caller uses the CPU pipeline. Statistics are float32 reductions on the same values as numpy's
(equal to ~1e-7 relative).
"""

from __future__ import annotations

import numpy as np

from ..preprocessing.configuration import PreprocessingPlan
from ..preprocessing.normalization import EPS, NormalizationError
from ..preprocessing.pipeline import compute_new_shape
from .torch_resample import resample_data_torch

__all__ = ["device_preprocessing_supported", "preprocess_on_device"]

_DEVICE_SCHEMES = ("CTNormalization", "NoNormalization", "ZScoreNormalization", "RescaleTo01Normalization",
                   "RGBTo01Normalization")


def device_preprocessing_supported(plan: PreprocessingPlan) -> bool:
    return all(s in _DEVICE_SCHEMES for s in plan.normalization_schemes) and not any(
        m and s == "ZScoreNormalization" for s, m in zip(plan.normalization_schemes, plan.use_mask_for_norm))


def _normalise(x, scheme: str, props: dict):
    import torch

    if scheme == "CTNormalization":
        missing = [k for k in ("mean", "std", "percentile_00_5", "percentile_99_5") if k not in props]
        if missing:
            raise NormalizationError(f"CTNormalization needs the channel's foreground intensity properties; missing "
                                     f"{', '.join(missing)} (plans: foreground_intensity_properties_per_channel)")
        x = torch.clamp(x, float(props["percentile_00_5"]), float(props["percentile_99_5"]))
        return (x - float(props["mean"])) / max(float(props["std"]), EPS)
    if scheme == "ZScoreNormalization":
        mean, std = x.mean(), x.std(unbiased=False)
        return (x - mean) / torch.clamp(std, min=EPS)
    if scheme == "RescaleTo01Normalization":
        x = x - x.min()
        return x / torch.clamp(x.max(), min=EPS)
    if scheme == "RGBTo01Normalization":
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 255:
            raise NormalizationError(f"RGBTo01Normalization expects values in [0, 255], found [{lo}, {hi}]")
        return x / 255.0
    return x  # NoNormalization


def _bbox(mask) -> list[list[int]]:
    """Half-open bounding box of a boolean ``(x, y, z)`` mask (the full extent when it is empty)."""
    import torch

    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = torch.nonzero(mask.any(dim=other)).flatten()
        if hit.numel() == 0:
            return [[0, int(s)] for s in mask.shape]
        out.append([int(hit[0]), int(hit[-1]) + 1])
    return out


def preprocess_on_device(plan: PreprocessingPlan, image: np.ndarray, properties: dict, device):
    """``(data tensor (c, *new_shape) float32 on device, properties)`` or None when a scheme needs
    the CPU pipeline. `image` is ``(c, x, y, z)`` as the reader returns it; `properties` holds
    its ``spacing`` (and anything the reader adds)."""
    import torch

    if not device_preprocessing_supported(plan):
        return None
    image = np.asarray(image)
    if image.ndim != 4 or len(properties.get("spacing", ())) != 3:
        return None  # the CPU pipeline names the problem
    properties = dict(properties)
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True)
    x = x.permute(0, *(i + 1 for i in plan.transpose_forward)).float()
    spacing = [float(properties["spacing"][i]) for i in plan.transpose_forward]
    properties["shape_before_cropping"] = [int(s) for s in x.shape[1:]]
    nonzero = (x != 0).any(0)  # NaN != 0 holds: NaN counts as nonzero, as in the kernel
    bbox = _bbox(nonzero)
    del nonzero
    x = x[(slice(None),) + tuple(slice(a, b) for a, b in bbox)]
    properties["bbox_used_for_cropping"] = bbox
    properties["shape_after_cropping_and_before_resampling"] = [int(s) for s in x.shape[1:]]
    target = plan.target_spacing(spacing)
    new_shape = compute_new_shape(x.shape[1:], spacing, target)
    props = plan.intensity_properties or {}
    x = torch.stack([_normalise(x[c], plan.normalization_schemes[c], dict(props.get(str(c), {})))
                     for c in range(x.shape[0])])
    r = plan.resampling_data
    if r.fn != "no_resampling_hack":
        x = resample_data_torch(x, new_shape, spacing, target, r.order, r.order_z, r.force_separate_z)
    return x.contiguous(), properties
