"""nnU-Net's static VRAM estimate, computed from the architecture instead of a built network.

nnU-Net instantiates the network (torch) and calls ``compute_conv_feature_map_size(patch)``:
the number of elements in every conv / transposed-conv output, plus the final segmentation map.
The count is a pure function of patch size, strides, features and blocks per stage, so we add
it up directly. Conventions of that method that matter for equality:

* spatial sizes shrink by integer division by the stride, stage after stage;
* input channels never count; the batch dimension is not included;
* the network is built with ``deep_supervision=False`` (the class default), so only the
  full-resolution segmentation output counts;
* residual blocks count conv1 + conv2, plus the 1x1 skip projection when channels or size change;
  ResidualEncoderUNet also counts its stem (one conv at full resolution).
"""

from __future__ import annotations

from math import prod
from typing import Sequence

PLAIN_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC_UNET = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"


def _shrink(size: Sequence[int], stride: Sequence[int]) -> list[int]:
    return [s // st for s, st in zip(size, stride)]


def conv_feature_map_size(
    patch_size: Sequence[int],
    network_class_name: str,
    arch_kwargs: dict,
    num_classes: int,
    deep_supervision: bool = False,
) -> int:
    """Element count nnU-Net's ``compute_conv_feature_map_size`` returns for this network."""
    short = network_class_name.rsplit(".", 1)[-1]
    if short not in ("PlainConvUNet", "ResidualEncoderUNet"):
        raise ValueError(f"no VRAM estimate for network class {network_class_name!r} (PlainConvUNet or ResidualEncoderUNet only)")
    features = list(arch_kwargs["features_per_stage"])
    strides = [list(s) for s in arch_kwargs["strides"]]
    n_stages = int(arch_kwargs["n_stages"])
    decoder_convs = list(arch_kwargs["n_conv_per_stage_decoder"])

    total = 0
    size = [int(s) for s in patch_size]
    skip_sizes = []  # output size of every encoder stage
    if short == "PlainConvUNet":
        for s, n_conv in enumerate(arch_kwargs["n_conv_per_stage"][:n_stages]):
            size = _shrink(size, strides[s])
            total += n_conv * features[s] * prod(size)
            skip_sizes.append(size)
    else:
        total += features[0] * prod(size)  # stem
        in_ch = features[0]
        for s, n_blocks in enumerate(arch_kwargs["n_blocks_per_stage"][:n_stages]):
            out = _shrink(size, strides[s])
            per_block = 2 * features[s] * prod(out)
            total += n_blocks * per_block
            if in_ch != features[s] or out != size:
                total += features[s] * prod(out)  # skip projection of the first block
            size, in_ch = out, features[s]
            skip_sizes.append(size)

    n_dec = n_stages - 1
    for d in range(n_dec):
        level = n_stages - 2 - d  # encoder stage whose skip this decoder stage merges with
        vox = prod(skip_sizes[level])
        total += decoder_convs[d] * features[level] * vox  # convs after the concatenation
        total += features[level] * vox  # transposed conv output
        if deep_supervision or d == n_dec - 1:
            total += num_classes * vox
    return int(total)
