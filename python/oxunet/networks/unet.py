"""PlainConvUNet and ResidualEncoderUNet with nnU-Net's (dynamic-network-architectures') layout.

Constructor signatures, module names and forward semantics match DNA 0.4.4, so nnU-Net checkpoints
load with ``strict=True`` and give the same outputs. ``decoder.deep_supervision`` switches between
the list of all decoder outputs (highest resolution first) and the full-resolution output only.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from .blocks import (
    BasicBlockD,
    BottleneckD,
    ConvDropoutNormReLU,
    StackedConvBlocks,
    StackedResidualBlocks,
    conv_dim,
    per_axis,
    transposed_conv_op,
)

PerStage = Union[int, Sequence[int]]
PerStageVec = Union[int, Sequence[Union[int, Sequence[int]]]]


def _expand(value, n: int, name: str) -> list:
    values = [value] * n if isinstance(value, int) else list(value)
    if len(values) != n:
        raise ValueError(f"{name} needs {n} entries, got {len(values)}: {value!r}")
    return values


class _StagedEncoder(nn.Module):
    """What both encoders share: per-stage settings, the attributes UNetDecoder reads (DNA's names)
    and a forward that keeps every stage's output as a skip."""

    stages: nn.Sequential
    return_skips: bool

    @staticmethod
    def _per_stage(n_stages: int, features_per_stage: PerStage, kernel_sizes: PerStageVec, strides: PerStageVec,
                   n_per_stage: PerStage, n_name: str) -> tuple[list, list, list, list]:
        """(features, kernels, strides, convs/blocks) with one entry per stage."""
        return (_expand(features_per_stage, n_stages, "features_per_stage"), _expand(kernel_sizes, n_stages, "kernel_sizes"),
                _expand(strides, n_stages, "strides"), _expand(n_per_stage, n_stages, n_name))

    def _set_decoder_hints(self, features, conv_op, kernels, strides, conv_bias, norm_op, norm_op_kwargs,
                           dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs) -> None:
        """What UNetDecoder reads from its encoder (same attribute names as DNA's encoders)."""
        self.output_channels = list(features)
        self.strides = [per_axis(s, conv_dim(conv_op)) for s in strides]
        self.kernel_sizes = list(kernels)
        self.conv_op = conv_op
        self.conv_bias = conv_bias
        self.norm_op, self.norm_op_kwargs = norm_op, norm_op_kwargs
        self.dropout_op, self.dropout_op_kwargs = dropout_op, dropout_op_kwargs
        self.nonlin, self.nonlin_kwargs = nonlin, nonlin_kwargs

    def _run_stages(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips if self.return_skips else skips[-1]


class PlainConvEncoder(_StagedEncoder):
    """Stages of plain conv blocks; stage s starts with a conv of stride ``strides[s]``."""

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: PerStage,
        conv_op: type,
        kernel_sizes: PerStageVec,
        strides: PerStageVec,
        n_conv_per_stage: PerStage,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        return_skips: bool = False,
        nonlin_first: bool = False,
    ):
        super().__init__()
        features, kernels, strides, n_convs = self._per_stage(n_stages, features_per_stage, kernel_sizes, strides,
                                                              n_conv_per_stage, "n_conv_per_stage")
        stages = []
        for s in range(n_stages):
            # nn.Sequential wrapper: DNA keeps room for a pooling op in front (keys read stages.s.0.*)
            stages.append(nn.Sequential(StackedConvBlocks(
                n_convs[s], conv_op, input_channels, features[s], kernels[s], strides[s], conv_bias,
                norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, nonlin_first,
            )))
            input_channels = features[s]
        self.stages = nn.Sequential(*stages)
        self._set_decoder_hints(features, conv_op, kernels, strides, conv_bias, norm_op, norm_op_kwargs,
                                dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        self.return_skips = return_skips

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        return self._run_stages(x)


class ResidualEncoder(_StagedEncoder):
    """A stem conv block, then stages of residual blocks (first block of a stage strided)."""

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: PerStage,
        conv_op: type,
        kernel_sizes: PerStageVec,
        strides: PerStageVec,
        n_blocks_per_stage: PerStage,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        block: type = BasicBlockD,
        bottleneck_channels: PerStage | None = None,
        return_skips: bool = False,
        stem_channels: int | None = None,
    ):
        super().__init__()
        if block not in (BasicBlockD, BottleneckD):
            raise ValueError(f"block must be BasicBlockD or BottleneckD, got {block!r}")
        features, kernels, strides, n_blocks = self._per_stage(n_stages, features_per_stage, kernel_sizes, strides,
                                                               n_blocks_per_stage, "n_blocks_per_stage")
        bottleneck = ([bottleneck_channels] * n_stages if bottleneck_channels is None or isinstance(bottleneck_channels, int)
                      else _expand(bottleneck_channels, n_stages, "bottleneck_channels"))
        stem_channels = features[0] if stem_channels is None else stem_channels
        self.stem = StackedConvBlocks(1, conv_op, input_channels, stem_channels, kernels[0], 1, conv_bias,
                                      norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        input_channels = stem_channels
        stages = []
        for s in range(n_stages):
            stages.append(StackedResidualBlocks(
                n_blocks[s], conv_op, input_channels, features[s], kernels[s], strides[s], conv_bias,
                norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
                block=block, bottleneck_channels=bottleneck[s],
            ))
            input_channels = features[s]
        self.stages = nn.Sequential(*stages)
        self._set_decoder_hints(features, conv_op, kernels, strides, conv_bias, norm_op, norm_op_kwargs,
                                dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        self.return_skips = return_skips

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        return self._run_stages(self.stem(x))


class UNetDecoder(nn.Module):
    """Transposed conv up, concatenate the skip, conv blocks, 1x1 seg layer; from the bottleneck up.

    Seg layers exist for every stage whether or not deep supervision is on, so weights load either way.
    The encoder is registered as a submodule too (DNA does so): its weights appear a second time
    under ``decoder.encoder.*`` in the state dict.
    """

    def __init__(
        self,
        encoder: Union[PlainConvEncoder, ResidualEncoder],
        num_classes: int,
        n_conv_per_stage: PerStage,
        deep_supervision: bool,
        nonlin_first: bool = False,
    ):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.encoder = encoder
        self.num_classes = num_classes
        n_enc = len(encoder.output_channels)
        n_convs = _expand(n_conv_per_stage, n_enc - 1, "n_conv_per_stage_decoder")
        transp_op = transposed_conv_op(encoder.conv_op)
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, n_enc):
            below, skip = encoder.output_channels[-s], encoder.output_channels[-(s + 1)]
            stride = encoder.strides[-s]
            transpconvs.append(transp_op(below, skip, stride, stride, bias=encoder.conv_bias))
            stages.append(StackedConvBlocks(
                n_convs[s - 1], encoder.conv_op, 2 * skip, skip, encoder.kernel_sizes[-(s + 1)], 1, encoder.conv_bias,
                encoder.norm_op, encoder.norm_op_kwargs, encoder.dropout_op, encoder.dropout_op_kwargs,
                encoder.nonlin, encoder.nonlin_kwargs, nonlin_first,
            ))
            seg_layers.append(encoder.conv_op(skip, num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: list[torch.Tensor]) -> Union[torch.Tensor, list[torch.Tensor]]:
        x = skips[-1]
        last = len(self.stages) - 1
        outputs = []
        for s, (up, convs) in enumerate(zip(self.transpconvs, self.stages)):
            x = convs(torch.cat((up(x), skips[-(s + 2)]), 1))
            if self.deep_supervision or s == last:
                outputs.append(self.seg_layers[s](x))
        if not self.deep_supervision:
            return outputs[-1]
        return outputs[::-1]  # highest resolution first


def init_weights_he(module: nn.Module, neg_slope: float = 1e-2) -> None:
    """nnU-Net's InitWeights_He: kaiming-normal(a=1e-2) conv / transposed-conv weights, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=neg_slope)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)


def init_last_norm_to_zero(module: nn.Module) -> None:
    """Residual blocks start as identity: zero the norm before the addition."""
    last = module.conv2 if isinstance(module, BasicBlockD) else module.conv3 if isinstance(module, BottleneckD) else None
    norm = getattr(last, "norm", None)
    if norm is not None:
        nn.init.constant_(norm.weight, 0)
        nn.init.constant_(norm.bias, 0)


class _UNet(nn.Module):
    """Encoder → decoder, and the ``deep_supervision`` switch both U-Nets expose."""

    encoder: nn.Module
    decoder: UNetDecoder

    def _attach(self, encoder: Union[PlainConvEncoder, ResidualEncoder], num_classes: int,
                n_conv_per_stage_decoder: PerStage, deep_supervision: bool, nonlin_first: bool = False) -> None:
        """Registers ``encoder`` then its UNetDecoder (DNA's order: encoder.* keys come first)."""
        self.encoder = encoder
        self.decoder = UNetDecoder(encoder, num_classes, n_conv_per_stage_decoder, deep_supervision,
                                   nonlin_first=nonlin_first)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        return self.decoder(self.encoder(x))

    @property
    def deep_supervision(self) -> bool:
        return self.decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.decoder.deep_supervision = bool(enabled)


class PlainConvUNet(_UNet):
    """nnU-Net's default U-Net (conv blocks in encoder and decoder)."""

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: PerStage,
        conv_op: type,
        kernel_sizes: PerStageVec,
        strides: PerStageVec,
        n_conv_per_stage: PerStage,
        num_classes: int,
        n_conv_per_stage_decoder: PerStage,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        deep_supervision: bool = False,
        nonlin_first: bool = False,
    ):
        super().__init__()
        self._attach(PlainConvEncoder(
            input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides, n_conv_per_stage,
            conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
            return_skips=True, nonlin_first=nonlin_first,
        ), num_classes, n_conv_per_stage_decoder, deep_supervision, nonlin_first=nonlin_first)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        init_weights_he(module)


class ResidualEncoderUNet(_UNet):
    """nnU-Net's ResEnc U-Net (residual encoder, plain conv decoder)."""

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: PerStage,
        conv_op: type,
        kernel_sizes: PerStageVec,
        strides: PerStageVec,
        n_blocks_per_stage: PerStage,
        num_classes: int,
        n_conv_per_stage_decoder: PerStage,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        deep_supervision: bool = False,
        block: type = BasicBlockD,
        bottleneck_channels: PerStage | None = None,
        stem_channels: int | None = None,
    ):
        super().__init__()
        self._attach(ResidualEncoder(
            input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides, n_blocks_per_stage,
            conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
            block, bottleneck_channels, return_skips=True, stem_channels=stem_channels,
        ), num_classes, n_conv_per_stage_decoder, deep_supervision)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        init_weights_he(module)
        init_last_norm_to_zero(module)


__all__ = [
    "ConvDropoutNormReLU", "PlainConvEncoder", "PlainConvUNet", "ResidualEncoder", "ResidualEncoderUNet",
    "UNetDecoder", "init_last_norm_to_zero", "init_weights_he",
]
