"""U-Net topology from spacing and patch size: how often each axis is pooled, the conv kernel
sizes per stage and the padded patch size. Same rules as nnU-Net's ``get_pool_and_conv_props``
(the planner's only topology rule in v2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np

FEATUREMAP_MIN_EDGE_LENGTH = 4  # bottleneck feature maps keep at least this many voxels per axis
MAX_NUMPOOL = 999999  # nnU-Net passes this, i.e. no limit


@dataclass(frozen=True)
class Topology:
    """``strides[0]`` is all ones (the first stage never downsamples); ``kernel_sizes`` has one
    entry per stage (the last is the bottleneck's, always 3)."""

    num_pool_per_axis: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]

    @property
    def n_stages(self) -> int:
        return len(self.strides)

    @property
    def must_be_divisible_by(self) -> tuple[int, ...]:
        return tuple(2**n for n in self.num_pool_per_axis)


def pad_to_multiple(shape: Sequence[float], multiples: Sequence[int]) -> tuple[int, ...]:
    """Each axis rounded up to a multiple (unchanged when already one). Accepts the non-integer
    sizes nnU-Net feeds in when a median shape ends in .5."""
    return tuple(int(m * math.ceil(s / m)) for s, m in zip(shape, multiples))


def pool_and_conv_props(
    spacing: Sequence[float] | np.ndarray,
    patch_size: Sequence[float],
    min_edge: int = FEATUREMAP_MIN_EDGE_LENGTH,
    max_numpool: int = MAX_NUMPOOL,
) -> Topology:
    """Pools, in every step, the axes that are still large enough (>= 2·min_edge) and whose
    spacing is within a factor 2 of the finest such axis; a single remaining axis needs
    >= 3·min_edge. An axis' kernel becomes 3 once its spacing is within a factor 2 of the finest
    spacing (and stays 3)."""
    dim = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = list(patch_size)
    num_pool = [0] * dim
    kernel = [1] * dim
    strides: list[tuple[int, ...]] = [(1,) * dim]
    kernels: list[tuple[int, ...]] = []
    while True:
        big_enough = [i for i in range(dim) if cur_size[i] >= 2 * min_edge]
        if not big_enough:
            break
        finest = min(cur_spacing[i] for i in big_enough)
        axes = [i for i in big_enough if cur_spacing[i] / finest < 2 and num_pool[i] < max_numpool]
        if not axes or (len(axes) == 1 and cur_size[axes[0]] < 3 * min_edge):
            break
        finest_all = min(cur_spacing)
        for d in range(dim):
            if kernel[d] != 3 and cur_spacing[d] / finest_all < 2:
                kernel[d] = 3
        stride = [1] * dim
        for a in axes:
            stride[a] = 2
            num_pool[a] += 1
            cur_spacing[a] *= 2
            cur_size[a] = math.ceil(cur_size[a] / 2)
        strides.append(tuple(stride))
        kernels.append(tuple(kernel))
    kernels.append((3,) * dim)  # bottleneck
    padded = pad_to_multiple(patch_size, [2**n for n in num_pool])
    return Topology(tuple(num_pool), tuple(strides), tuple(kernels), padded)
