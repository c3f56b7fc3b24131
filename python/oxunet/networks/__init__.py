"""U-Nets with nnU-Net's layout (PlainConvUNet, ResidualEncoderUNet), built from plans.

Importing this package is light: the torch-free parts (``parse_architecture``, ``describe_network``,
``format_network_table``) load on their own; the torch-backed names load on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .arch import (
    ArchitectureError,
    StageRow,
    UNetSpec,
    check_patch_size,
    describe_network,
    format_network_table,
    parse_architecture,
    resolve_network_class_name,
)

_LAZY = {
    "build_network": ".build",
    "network_kwargs": ".build",
    "resolve_torch_class": ".build",
    "PlainConvUNet": ".unet",
    "ResidualEncoderUNet": ".unet",
    "PlainConvEncoder": ".unet",
    "ResidualEncoder": ".unet",
    "UNetDecoder": ".unet",
    "init_weights_he": ".unet",
    "init_last_norm_to_zero": ".unet",
    "load_nnunet_checkpoint": ".checkpoint",
    "network_state_dict": ".checkpoint",
}

__all__ = [
    "ArchitectureError", "StageRow", "UNetSpec", "check_patch_size", "describe_network", "format_network_table",
    "parse_architecture", "resolve_network_class_name", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
