"""``oxunet info``: versions and devices, for bug reports."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

import click


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


@click.command()
def info() -> None:
    """Print versions of oxunet, its Rust extension, torch, numpy, SimpleITK and the devices torch sees."""
    from oxunet import __version__
    from oxunet import _core

    rows = [
        ("oxunet", __version__),
        ("oxunet._core", f"{_core.__version__} ({_core.build_profile} build, {_core.get_num_threads()} threads)"),
        ("python", f"{platform.python_version()} ({platform.machine()}, {os.cpu_count()} cores)"),
    ]
    rows += [(name, _version(name)) for name in ("numpy", "scipy", "SimpleITK", "torch", "nnunetv2")]
    try:
        import torch

        devices = ["cpu"]
        if torch.cuda.is_available():
            devices += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            devices.append("mps")
        rows.append(("devices", ", ".join(devices)))
    except ImportError:
        rows.append(("devices", "torch not installed"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
