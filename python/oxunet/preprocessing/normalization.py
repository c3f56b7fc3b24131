"""Intensity normalization, one scheme per channel, by nnU-Net's class names (spec §7).

Each scheme works in place on a float32 channel (no float64 copy of the volume) and gives
the same numbers as nnU-Net's class of the same name: the statistics are computed with the
same numpy reductions on the same float32 values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ..errors import PreprocessingError

__all__ = [
    "CTNormalization",
    "ImageNormalization",
    "NoNormalization",
    "NormalizationError",
    "RGBTo01Normalization",
    "RescaleTo01Normalization",
    "ZScoreNormalization",
    "normalization_class",
    "normalization_for_channel_name",
    "normalize",
]

EPS = 1e-8  # nnU-Net's epsilon for float32 targets


class NormalizationError(PreprocessingError, ValueError):
    """A scheme cannot be applied (unknown name, missing intensity statistics, bad values)."""


def _float32(image: np.ndarray) -> np.ndarray:
    # in place when already float32; other dtypes are converted (a copy, as nnU-Net's astype)
    return image if image.dtype == np.float32 else image.astype(np.float32)


class ImageNormalization:
    """Base class. ``run(image, seg)`` normalizes one channel, in place when it is float32."""

    # planning reads this: use_mask_for_norm is only ever switched on for schemes that keep
    # the voxels outside the nonzero mask at zero (only ZScore)
    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = False

    def __init__(self, use_mask_for_norm: bool | None = None, intensityproperties: Mapping | None = None):
        self.use_mask_for_norm = bool(use_mask_for_norm)
        self.intensityproperties = dict(intensityproperties or {})

    def run(self, image: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError


class ZScoreNormalization(ImageNormalization):
    """``(x - mean) / max(std, eps)`` per image; with the mask, over (and only on) ``seg >= 0``."""

    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = True

    def run(self, image, seg=None):
        image = _float32(image)
        if self.use_mask_for_norm:
            if seg is None:
                raise NormalizationError("ZScoreNormalization with use_mask_for_norm needs the seg (mask = seg >= 0)")
            mask = seg >= 0
            values = image[mask]  # float32 copy of the masked voxels only
            if values.size == 0:
                return image  # nothing inside the mask: nnU-Net leaves the image as it is too
            mean, std = values.mean(), values.std()
            values -= mean
            values /= max(std, EPS)
            image[mask] = values
        else:
            mean, std = image.mean(), image.std()
            image -= mean
            image /= max(std, EPS)
        return image


class CTNormalization(ImageNormalization):
    """Clip to the dataset's foreground [0.5, 99.5] percentiles, then ``(x - mean) / max(std, eps)``
    with the fingerprint's foreground mean/std. Ignores ``use_mask_for_norm``."""

    _KEYS = ("mean", "std", "percentile_00_5", "percentile_99_5")

    def run(self, image, seg=None):
        missing = [k for k in self._KEYS if k not in self.intensityproperties]
        if missing:
            raise NormalizationError(
                f"CTNormalization needs the channel's foreground intensity properties; missing {', '.join(missing)} "
                "(plans: foreground_intensity_properties_per_channel)"
            )
        p = self.intensityproperties
        image = _float32(image)
        np.clip(image, p["percentile_00_5"], p["percentile_99_5"], out=image)
        image -= p["mean"]
        image /= max(p["std"], EPS)
        return image


class NoNormalization(ImageNormalization):
    """Cast to float32 only."""

    def run(self, image, seg=None):
        return _float32(image)


class RescaleTo01Normalization(ImageNormalization):
    """``(x - min) / max(max - min, eps)`` per image."""

    def run(self, image, seg=None):
        image = _float32(image)
        image -= image.min()
        image /= np.clip(image.max(), a_min=EPS, a_max=None)
        return image


class RGBTo01Normalization(ImageNormalization):
    """``x / 255`` for 8-bit colour values (anything outside [0, 255] is an error)."""

    def run(self, image, seg=None):
        lo, hi = image.min(), image.max()
        if lo < 0 or hi > 255:
            raise NormalizationError(
                f"RGBTo01Normalization expects values in [0, 255], found [{lo}, {hi}]; "
                "is this channel really 8-bit RGB? (channel name 'rgb_to_0_1' selects this scheme)"
            )
        image = _float32(image)
        image /= 255.0
        return image


_SCHEMES: dict[str, type[ImageNormalization]] = {
    cls.__name__: cls
    for cls in (CTNormalization, NoNormalization, ZScoreNormalization, RescaleTo01Normalization, RGBTo01Normalization)
}

# dataset.json channel name (casefolded) -> scheme; anything else is ZScore (nnU-Net's rule)
_BY_CHANNEL_NAME = {
    "ct": CTNormalization,
    "nonorm": NoNormalization,
    "zscore": ZScoreNormalization,
    "rescale_to_0_1": RescaleTo01Normalization,
    "rgb_to_0_1": RGBTo01Normalization,
}


def normalization_class(name: str) -> type[ImageNormalization]:
    """The scheme class for a plans ``normalization_schemes`` entry (nnU-Net's class name)."""
    try:
        return _SCHEMES[name]
    except KeyError:
        raise NormalizationError(
            f"unknown normalization scheme {name!r} (supported: {', '.join(sorted(_SCHEMES))})"
        ) from None


def normalization_for_channel_name(channel_name: str) -> type[ImageNormalization]:
    """The scheme nnU-Net's planner picks for a dataset.json channel name."""
    return _BY_CHANNEL_NAME.get(str(channel_name).casefold(), ZScoreNormalization)


def normalize(
    data: np.ndarray,
    seg: np.ndarray | None,
    schemes: Sequence[str],
    use_mask_for_norm: Sequence[bool],
    intensity_properties: Mapping[str, Mapping] | None = None,
) -> np.ndarray:
    """Normalizes each channel of float32 ``data (c, ...)`` in place with its scheme.

    `seg` is the label map of one channel, ``(...)`` or ``(1, ...)``, whose ``>= 0`` voxels form
    the mask of masked ZScore; `intensity_properties` maps ``str(channel)`` to the fingerprint's
    foreground statistics (needed by CTNormalization).
    """
    if data.dtype != np.float32:
        raise NormalizationError(f"data: expected float32, got {data.dtype}")
    if len(schemes) != data.shape[0] or len(use_mask_for_norm) != data.shape[0]:
        raise NormalizationError(
            f"the plans give {len(schemes)} normalization scheme(s) and {len(use_mask_for_norm)} use_mask_for_norm "
            f"flag(s) for an image with {data.shape[0]} channel(s)"
        )
    if seg is not None and seg.ndim == data.ndim:
        seg = seg[0]
    props = intensity_properties or {}
    for c in range(data.shape[0]):
        normalizer = normalization_class(schemes[c])(
            use_mask_for_norm=bool(use_mask_for_norm[c]), intensityproperties=props.get(str(c), {})
        )
        out = normalizer.run(data[c], seg)
        if not np.may_share_memory(out, data):  # a scheme that could not work in place
            data[c] = out
    return data
