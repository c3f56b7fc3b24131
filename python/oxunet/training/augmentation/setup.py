"""Initial (enlarged) patch size and the rotation / dummy-2D / mirror-axes rule, as nnU-Net's trainer.

NumPy only: planning and the data loader can use these without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...constants import ANISO_THRESHOLD  # a 3D patch this much longer in-plane than along axis 0: dummy 2D
# get_patch_size's hard-coded scale range in nnUNetTrainer (not the augmentation's 0.7-1.4).
DEFAULT_PATCH_SCALE_RANGE = (0.85, 1.25)

RotationRange = tuple[float, float]


def _degrees(deg: float) -> RotationRange:
    rad = deg / 360 * 2.0 * np.pi
    return (-rad, rad)


def _max_abs_angle(rot) -> float:
    # a range contributes its largest magnitude; a bare number is used as given (nnU-Net does the same)
    if isinstance(rot, (tuple, list)):
        rot = max(np.abs(rot))
    return min(90 / 360 * 2.0 * np.pi, rot)


def _rotation_matrix_3d(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 1:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def get_patch_size(
    final_patch_size: Sequence[int], rot_x, rot_y, rot_z, scale_range: Sequence[float]
) -> np.ndarray:
    """The enlarged patch a loader must cut so that rotation/scaling keeps the final patch filled.

    Same arithmetic as nnunetv2's ``get_patch_size``: the corner vector is rotated about each axis
    separately by the largest angle (capped at 90°), the element-wise maximum of the absolute
    coordinates is divided by ``min(scale_range)`` and truncated to int.
    """
    coords = np.array(final_patch_size)
    final_shape = np.copy(coords)
    angles = [_max_abs_angle(r) for r in (rot_x, rot_y, rot_z)]
    if len(coords) == 3:
        for axis, angle in enumerate(angles):
            rot = np.identity(3) @ _rotation_matrix_3d(axis, angle)
            rotated = np.dot(coords.reshape(3, -1).transpose(), rot).transpose().reshape(coords.shape)
            final_shape = np.max(np.vstack((np.abs(rotated), final_shape)), 0)
    elif len(coords) == 2:
        c, s = np.cos(angles[0]), np.sin(angles[0])
        rot = np.array([[c, -s], [s, c]])
        rotated = np.dot(coords.reshape(2, -1).transpose(), rot).transpose().reshape(coords.shape)
        final_shape = np.max(np.vstack((np.abs(rotated), final_shape)), 0)
    else:
        raise ValueError(f"final_patch_size: expected 2 or 3 axes, got {tuple(final_patch_size)}")
    final_shape = final_shape / min(scale_range)
    return final_shape.astype(int)


@dataclass(frozen=True)
class AugmentationSetup:
    """What nnU-Net's ``configure_rotation_dummyDA_mirroring_and_inital_patch_size`` returns.

    ``mirror_axes`` is also what inference may use for test-time mirroring (None: no mirroring).
    """

    rotation: RotationRange
    do_dummy_2d: bool
    initial_patch_size: tuple[int, ...]
    mirror_axes: tuple[int, ...] | None


def default_rotation_and_dummy_2d(patch_size: Sequence[int]) -> tuple[RotationRange, bool]:
    """nnU-Net's rule: 2D ±15° for elongated patches (max/min > 1.5) else ±180°; 3D ±30°, or
    dummy 2D with ±180° in-plane when ``max(patch) / patch[0] > ANISO_THRESHOLD``."""
    dim = len(patch_size)
    if dim == 2:
        return (_degrees(15.0) if max(patch_size) / min(patch_size) > 1.5 else _degrees(180.0)), False
    if dim == 3:
        dummy_2d = (max(patch_size) / patch_size[0]) > ANISO_THRESHOLD
        return (_degrees(180.0) if dummy_2d else _degrees(30.0)), dummy_2d
    raise ValueError(f"patch_size: expected 2 or 3 axes, got {tuple(patch_size)}")


def configure_augmentation(
    patch_size: Sequence[int],
    preset=None,
    *,
    patch_scale_range: Sequence[float] | None = DEFAULT_PATCH_SCALE_RANGE,
    mirror: bool = True,
    dummy_2d: bool | None = None,
) -> AugmentationSetup:
    """Rotation range, dummy-2D flag, initial patch size and mirror axes for a plan's patch size.

    A ``preset`` (name or :class:`~.presets.Preset`) supplies ``patch_scale_range`` and ``mirror``.
    ``patch_scale_range=None`` means no enlargement (nnU-Net's NoDA trainer); ``mirror=False``
    gives ``mirror_axes=None`` (NoMirroring); ``dummy_2d=False`` forces full 3D augmentation
    (nnUNetTrainer_noDummy2DDA, which then also uses ±30°).
    """
    if preset is not None:
        from .presets import get_preset  # presets import this module

        p = get_preset(preset)
        patch_scale_range, mirror = p.patch_scale_range, p.mirror
    patch_size = [int(p) for p in patch_size]
    dim = len(patch_size)
    rotation, do_dummy_2d = default_rotation_and_dummy_2d(patch_size)
    if dummy_2d is False and dim == 3 and do_dummy_2d:
        rotation, do_dummy_2d = _degrees(30.0), False
    elif dummy_2d is True and dim == 3 and not do_dummy_2d:
        rotation, do_dummy_2d = _degrees(180.0), True
    if patch_scale_range is None:
        initial = tuple(patch_size)
    else:
        enlarged = get_patch_size(patch_size[-dim:], rotation, rotation, rotation, patch_scale_range)
        if do_dummy_2d:
            enlarged[0] = patch_size[0]
        initial = tuple(int(i) for i in enlarged)
    axes = tuple(range(dim)) if mirror else None
    return AugmentationSetup(rotation, do_dummy_2d, initial, axes)


def ds_scales_from_pooling(pool_op_kernel_sizes: Sequence[Sequence[int]]) -> list[list[float]]:
    """nnUNetTrainer._get_deep_supervision_scales: ``1 / cumprod(pool kernels)``, last dropped."""
    return [list(i) for i in 1 / np.cumprod(np.vstack(pool_op_kernel_sizes), axis=0)][:-1]
