"""Build our networks from a plans ``architecture`` entry, without importing dynamic-network-architectures."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from torch import nn

from .arch import DEFAULT_IMPORT_KEYS, ArchitectureError, UNetSpec, op_short_name, parse_architecture
from .blocks import BasicBlockD, BottleneckD
from .unet import PlainConvUNet, ResidualEncoderUNet

NETWORKS: dict[str, type[PlainConvUNet] | type[ResidualEncoderUNet]] = {"PlainConvUNet": PlainConvUNet, "ResidualEncoderUNet": ResidualEncoderUNet}
_BLOCKS = {"BasicBlockD": BasicBlockD, "BottleneckD": BottleneckD}


def resolve_torch_class(name: Any, key: str) -> type[nn.Module] | None:
    """A torch.nn module class from a plans string (``torch.nn.modules.conv.Conv3d``, ``torch.nn.LeakyReLU``
    or a short ``Conv3d``). Only names inside ``torch.nn`` are imported: plans files are data."""
    if name is None or (isinstance(name, type) and issubclass(name, nn.Module)):
        return name
    if not isinstance(name, str):
        raise ArchitectureError(f"arch_kwargs[{key!r}] must be a torch.nn class name, got {name!r}")
    if "." not in name:
        module_name, attr = "torch.nn", name
    else:
        module_name, attr = name.rsplit(".", 1)
        if module_name != "torch.nn" and not module_name.startswith("torch.nn."):
            raise ArchitectureError(f"arch_kwargs[{key!r}] = {name!r}: only torch.nn classes are accepted")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise ArchitectureError(f"arch_kwargs[{key!r}] = {name!r} does not name a torch.nn class") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ArchitectureError(f"arch_kwargs[{key!r}] = {name!r} is not a torch.nn.Module class")
    return cls


def _resolve_block(block: Any) -> type[nn.Module]:
    short = op_short_name(block)
    if isinstance(block, type) and block in _BLOCKS.values():
        return block
    if isinstance(block, str) and short in _BLOCKS and (
        "." not in block or block.startswith(("dynamic_network_architectures.", "oxunet.networks."))
    ):
        return _BLOCKS[short]
    raise ArchitectureError(f"arch_kwargs['block'] = {block!r}: expected BasicBlockD or BottleneckD")


def network_kwargs(spec: UNetSpec) -> dict[str, Any]:
    """Constructor kwargs of our network class for a parsed spec (ops resolved to torch classes)."""
    kwargs: dict[str, Any] = dict(
        n_stages=spec.n_stages,
        features_per_stage=list(spec.features_per_stage),
        conv_op=resolve_torch_class(spec.conv_op, "conv_op"),
        kernel_sizes=[list(k) for k in spec.kernel_sizes],
        strides=[list(s) for s in spec.strides],
        n_conv_per_stage_decoder=list(spec.n_conv_per_stage_decoder),
        conv_bias=spec.conv_bias,
        norm_op=resolve_torch_class(spec.norm_op, "norm_op"),
        norm_op_kwargs=dict(spec.norm_op_kwargs),
        dropout_op=resolve_torch_class(spec.dropout_op, "dropout_op"),
        dropout_op_kwargs=dict(spec.dropout_op_kwargs),
        nonlin=resolve_torch_class(spec.nonlin, "nonlin"),
        nonlin_kwargs=dict(spec.nonlin_kwargs),
    )
    if kwargs["conv_op"] not in (nn.Conv2d, nn.Conv3d):
        raise ArchitectureError(f"conv_op must be torch.nn.Conv2d or Conv3d, got {spec.conv_op!r}")
    extra = dict(spec.extra)
    if spec.is_residual:
        kwargs["n_blocks_per_stage"] = list(spec.blocks_per_stage)
        if "block" in extra:
            extra["block"] = _resolve_block(extra["block"])
    else:
        kwargs["n_conv_per_stage"] = list(spec.blocks_per_stage)
    kwargs.update(extra)
    return kwargs


def build_network(
    architecture: Mapping[str, Any],
    num_input_channels: int,
    num_output_channels: int,
    deep_supervision: bool = True,
    initialize: bool = True,
) -> nn.Module:
    """Our PlainConvUNet / ResidualEncoderUNet for a plans ``architecture`` entry.

    Same module tree as nnU-Net's (checkpoint keys load with strict=True); He-initialised like
    nnU-Net's ``network.apply(network.initialize)`` unless ``initialize`` is False. Switch deep
    supervision later with ``network.decoder.deep_supervision = False``.
    """
    from .arch import is_oxunet_network

    if hasattr(architecture, "network_class_name") and hasattr(architecture, "to_dict"):  # planning.model.Architecture
        architecture = architecture.to_dict()

    if not is_oxunet_network(architecture.get("network_class_name")):
        from .registry import build_foreign_network  # registered / allowed packages only

        return build_foreign_network(architecture, num_input_channels, num_output_channels, deep_supervision, initialize)
    spec = parse_architecture(architecture)
    imports = architecture.get("_kw_requires_import", DEFAULT_IMPORT_KEYS)
    unexpected = [k for k in imports if k not in DEFAULT_IMPORT_KEYS + ("block",)]
    if unexpected:
        raise ArchitectureError(f"_kw_requires_import names {unexpected}: oxunet resolves only {list(DEFAULT_IMPORT_KEYS)} and 'block'")
    if int(num_input_channels) < 1 or int(num_output_channels) < 1:
        raise ArchitectureError(f"channel counts must be >= 1, got input {num_input_channels}, output {num_output_channels}")
    cls = NETWORKS[spec.network_class]
    network = cls(
        input_channels=int(num_input_channels),
        num_classes=int(num_output_channels),
        deep_supervision=bool(deep_supervision),
        **network_kwargs(spec),
    )
    if initialize:
        network.apply(cls.initialize)
    return network
