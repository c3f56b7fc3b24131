"""Networks other than oxunet's own U-Nets, found by name without running code a model folder names.

A plans / checkpoint ``network_class_name`` is resolved in this order:

1. oxunet's PlainConvUNet / ResidualEncoderUNet (DNA's dotted paths or short names);
2. a name registered in the ``oxunet.networks`` entry-point group (``name = "pkg.module:Class"``
   in a package's ``[project.entry-points."oxunet.networks"]``); installed packages register
   themselves, so these are trusted;
3. a dotted ``pkg.module.Class`` or ``pkg.module:Class`` whose top-level package is allowed:
   ``dynamic_network_architectures`` by default (nnU-Net's Primus, DNA's other U-Nets), plus the
   comma-separated packages in ``$OXUNET_ALLOWED_NETWORK_PACKAGES``. Nothing else is imported,
   so a downloaded model folder cannot make oxunet import an arbitrary module.

Foreign classes are constructed as nnU-Net's ``get_network_from_plans`` does:
``cls(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)`` with the
``_kw_requires_import`` keys resolved to torch.nn classes only, then ``network.apply(cls.initialize)``
when the class has one.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any, Mapping

from .arch import ArchitectureError

ENTRY_POINT_GROUP = "oxunet.networks"
DEFAULT_ALLOWED_PACKAGES = ("dynamic_network_architectures",)


def allowed_packages(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    extra = [p.strip() for p in env.get("OXUNET_ALLOWED_NETWORK_PACKAGES", "").split(",") if p.strip()]
    return DEFAULT_ALLOWED_PACKAGES + tuple(extra)


def registered_networks() -> dict[str, str]:
    """name → "module:Class" of every installed ``oxunet.networks`` entry point."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _split(target: str) -> tuple[str, str]:
    if ":" in target:
        module, _, attr = target.partition(":")
    else:
        module, _, attr = target.rpartition(".")
    if not module or not attr:
        raise ArchitectureError(f"network {target!r}: expected a registered name, pkg.module:Class or pkg.module.Class")
    return module, attr


def resolve_network_class(name: str, environ: Mapping[str, str] | None = None) -> type:
    """The class a non-oxunet ``network_class_name`` names (rules in the module doc)."""
    registered = registered_networks()
    target = registered.get(name, name)
    module, attr = _split(target)
    trusted = name in registered or f"{module}:{attr}" in registered.values()
    if not trusted and module.split(".")[0] not in allowed_packages(environ):
        raise ArchitectureError(
            f"network {name!r}: package {module.split('.')[0]!r} is not allowed; oxunet imports networks only "
            f"from {', '.join(allowed_packages(environ))} or from the {ENTRY_POINT_GROUP!r} entry-point group "
            f"(register it there, or add the package to $OXUNET_ALLOWED_NETWORK_PACKAGES)")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ArchitectureError(f"network {name!r}: cannot import {module!r} ({e}); is its package installed?") from None
    except AttributeError:
        raise ArchitectureError(f"network {name!r}: module {module!r} has no {attr!r}") from None
    if not isinstance(cls, type):
        raise ArchitectureError(f"network {name!r} is not a class")
    return cls


def build_foreign_network(architecture: Mapping[str, Any], num_input_channels: int, num_output_channels: int,
                          deep_supervision: bool, initialize: bool = True):
    """A registered / allowed network class built from a plans ``architecture`` entry."""
    from .build import resolve_torch_class

    cls = resolve_network_class(str(architecture["network_class_name"]))
    kwargs = dict(architecture.get("arch_kwargs") or {})
    for key in architecture.get("_kw_requires_import") or ():
        if kwargs.get(key) is not None:
            kwargs[key] = resolve_torch_class(kwargs[key], key)
    try:
        network = cls(input_channels=int(num_input_channels), num_classes=int(num_output_channels),
                      deep_supervision=bool(deep_supervision), **kwargs)
    except TypeError as e:
        raise ArchitectureError(f"network {architecture['network_class_name']!r}: cannot be built from arch_kwargs "
                                f"{sorted(kwargs)} ({e})") from None
    if initialize and hasattr(network, "initialize"):
        network.apply(network.initialize)
    return network
