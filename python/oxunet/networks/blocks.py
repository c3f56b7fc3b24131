"""Conv and residual building blocks.

Module attribute names and registration order follow dynamic-network-architectures 0.4.4 exactly:
an nnU-Net checkpoint's ``network_weights`` must load with ``strict=True``, and a network built
under the same torch seed must draw the same initial weights. That is why every conv block
registers its ops twice (as ``conv``/``norm``/... and inside ``all_modules``): both names appear
in nnU-Net's state dicts.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import nn

IntOrSeq = Union[int, Sequence[int]]


def conv_dim(conv_op: type) -> int:
    """2 or 3 for torch's Conv2d / Conv3d (subclasses included)."""
    if isinstance(conv_op, type):
        if issubclass(conv_op, nn.Conv3d):
            return 3
        if issubclass(conv_op, nn.Conv2d):
            return 2
    raise ValueError(f"conv_op must be torch.nn.Conv2d or Conv3d, got {conv_op!r}")


def per_axis(value: IntOrSeq, dim: int) -> list[int]:
    """An int becomes ``[value] * dim``; a sequence is copied as a list of ints."""
    if isinstance(value, int):
        return [value] * dim
    return [int(v) for v in value]


def transposed_conv_op(conv_op: type) -> type:
    return nn.ConvTranspose3d if conv_dim(conv_op) == 3 else nn.ConvTranspose2d


def avg_pool_op(conv_op: type) -> type:
    return nn.AvgPool3d if conv_dim(conv_op) == 3 else nn.AvgPool2d


class ConvDropoutNormReLU(nn.Module):
    """Conv (same padding) -> optional dropout -> optional norm -> optional nonlinearity."""

    def __init__(
        self,
        conv_op: type,
        input_channels: int,
        output_channels: int,
        kernel_size: IntOrSeq,
        stride: IntOrSeq,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        nonlin_first: bool = False,
    ):
        super().__init__()
        dim = conv_dim(conv_op)
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stride = per_axis(stride, dim)
        kernel = per_axis(kernel_size, dim)
        self.conv = conv_op(
            input_channels, output_channels, kernel, self.stride,
            padding=[(k - 1) // 2 for k in kernel], dilation=1, bias=conv_bias,
        )
        ops: list[nn.Module] = [self.conv]
        if dropout_op is not None:
            self.dropout = dropout_op(**(dropout_op_kwargs or {}))
            ops.append(self.dropout)
        if norm_op is not None:
            self.norm = norm_op(output_channels, **(norm_op_kwargs or {}))
            ops.append(self.norm)
        if nonlin is not None:
            self.nonlin = nonlin(**(nonlin_kwargs or {}))
            ops.append(self.nonlin)
        if nonlin_first and norm_op is not None and nonlin is not None:
            ops[-1], ops[-2] = ops[-2], ops[-1]  # conv -> nonlin -> norm
        self.all_modules = nn.Sequential(*ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.all_modules(x)


def _stack(n: int, input_channels: int, output_channels: int, initial_stride: IntOrSeq,
           make: Callable[[int, IntOrSeq], nn.Module]) -> nn.Sequential:
    """``n`` blocks from ``make(in_channels, stride)``: only the first one changes the width and carries
    ``initial_stride``; the rest keep ``output_channels`` at stride 1."""
    return nn.Sequential(make(input_channels, initial_stride), *[make(output_channels, 1) for _ in range(1, n)])


class StackedConvBlocks(nn.Module):
    """``num_convs`` conv blocks; only the first one carries ``initial_stride``."""

    def __init__(
        self,
        num_convs: int,
        conv_op: type,
        input_channels: int,
        output_channels: int,
        kernel_size: IntOrSeq,
        initial_stride: IntOrSeq,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        nonlin_first: bool = False,
    ):
        super().__init__()
        layer_args = (conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, nonlin_first)
        self.convs = _stack(num_convs, input_channels, output_channels, initial_stride,
                            lambda cin, stride: ConvDropoutNormReLU(conv_op, cin, output_channels, kernel_size, stride,
                                                                    *layer_args))
        self.output_channels = output_channels
        self.initial_stride = per_axis(initial_stride, conv_dim(conv_op))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _resnet_d_skip(conv_op, input_channels, output_channels, stride, norm_op,
                   norm_op_kwargs) -> nn.Module | Callable[[torch.Tensor], torch.Tensor]:
    """ResNet-D shortcut: avg-pool when strided, then 1x1 conv + norm when the width changes."""
    ops: list[nn.Module] = []
    if any(s != 1 for s in stride):
        ops.append(avg_pool_op(conv_op)(stride, stride))
    if input_channels != output_channels:
        ops.append(ConvDropoutNormReLU(conv_op, input_channels, output_channels, 1, 1, False, norm_op, norm_op_kwargs))
    return nn.Sequential(*ops) if ops else _identity


class _ResidualBlockD(nn.Module):
    """What BasicBlockD and BottleneckD share: channel/stride bookkeeping, the nonlinearity after the
    addition and the ResNet-D shortcut (built after the convs, as DNA does, so seeded weights match)."""

    skip: nn.Module

    def _set_io(self, conv_op: type, input_channels: int, output_channels: int, kernel_size: IntOrSeq,
                stride: IntOrSeq) -> list[int]:
        """Stores channels and per-axis stride; returns the per-axis kernel size."""
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stride = per_axis(stride, conv_dim(conv_op))
        return per_axis(kernel_size, conv_dim(conv_op))

    def _shortcut(self, conv_op: type, norm_op, norm_op_kwargs, nonlin, nonlin_kwargs):
        """(nonlinearity after the addition, shortcut branch); callers register them under DNA's names."""
        after_add = nonlin(**(nonlin_kwargs or {})) if nonlin is not None else _identity
        return after_add, _resnet_d_skip(conv_op, self.input_channels, self.output_channels, self.stride,
                                         norm_op, norm_op_kwargs)

    def _add_shortcut(self, out: torch.Tensor, x: torch.Tensor, after_add) -> torch.Tensor:
        out += self.skip(x)
        return after_add(out)


class BasicBlockD(_ResidualBlockD):
    """Residual block: conv-norm-nonlin, conv-norm, add the (ResNet-D) shortcut, nonlin."""

    def __init__(
        self,
        conv_op: type,
        input_channels: int,
        output_channels: int,
        kernel_size: IntOrSeq,
        stride: IntOrSeq,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
    ):
        super().__init__()
        kernel = self._set_io(conv_op, input_channels, output_channels, kernel_size, stride)
        self.conv1 = ConvDropoutNormReLU(conv_op, input_channels, output_channels, kernel, self.stride, conv_bias,
                                         norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        self.conv2 = ConvDropoutNormReLU(conv_op, output_channels, output_channels, kernel, 1, conv_bias,
                                         norm_op, norm_op_kwargs)
        self.nonlin2, self.skip = self._shortcut(conv_op, norm_op, norm_op_kwargs, nonlin, nonlin_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_shortcut(self.conv2(self.conv1(x)), x, self.nonlin2)


class BottleneckD(_ResidualBlockD):
    """Bottleneck residual block: 1x1 reduce, kxk (strided), 1x1 expand, ResNet-D shortcut."""

    def __init__(
        self,
        conv_op: type,
        input_channels: int,
        bottleneck_channels: int,
        output_channels: int,
        kernel_size: IntOrSeq,
        stride: IntOrSeq,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
    ):
        super().__init__()
        kernel = self._set_io(conv_op, input_channels, output_channels, kernel_size, stride)
        self.bottleneck_channels = bottleneck_channels
        norm = (norm_op, norm_op_kwargs)
        self.conv1 = ConvDropoutNormReLU(conv_op, input_channels, bottleneck_channels, 1, 1, conv_bias, *norm,
                                         None, None, nonlin, nonlin_kwargs)
        self.conv2 = ConvDropoutNormReLU(conv_op, bottleneck_channels, bottleneck_channels, kernel, self.stride,
                                         conv_bias, *norm, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        self.conv3 = ConvDropoutNormReLU(conv_op, bottleneck_channels, output_channels, 1, 1, conv_bias, *norm)
        self.nonlin3, self.skip = self._shortcut(conv_op, norm_op, norm_op_kwargs, nonlin, nonlin_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_shortcut(self.conv3(self.conv2(self.conv1(x))), x, self.nonlin3)


class StackedResidualBlocks(nn.Module):
    """``n_blocks`` residual blocks; only the first one carries ``initial_stride``."""

    def __init__(
        self,
        n_blocks: int,
        conv_op: type,
        input_channels: int,
        output_channels: int,
        kernel_size: IntOrSeq,
        initial_stride: IntOrSeq,
        conv_bias: bool = False,
        norm_op: type | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type | None = None,
        nonlin_kwargs: dict | None = None,
        block: type = BasicBlockD,
        bottleneck_channels: int | None = None,
    ):
        super().__init__()
        rest = (conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)

        def make(cin: int, stride: IntOrSeq) -> nn.Module:
            if block is BottleneckD:
                if bottleneck_channels is None:
                    raise ValueError("bottleneck_channels is required with BottleneckD blocks")
                return BottleneckD(conv_op, cin, bottleneck_channels, output_channels, kernel_size, stride, *rest)
            return BasicBlockD(conv_op, cin, output_channels, kernel_size, stride, *rest)

        self.blocks = _stack(n_blocks, input_channels, output_channels, initial_stride, make)
        self.initial_stride = per_axis(initial_stride, conv_dim(conv_op))
        self.output_channels = output_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)
