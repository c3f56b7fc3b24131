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
    import oxunet
    from oxunet import __version__, _core

    rows = [
        ("oxunet", f"{__version__} ({os.path.dirname(oxunet.__file__)})"),
        ("oxunet._core", f"{_core.__version__} ({_core.build_profile} build, {_core.get_num_threads()} threads)"),
        ("python", f"{platform.python_version()} ({platform.machine()}, {os.cpu_count()} cores)"),
    ]
    rows += [(name, _version(name)) for name in ("numpy", "scipy", "SimpleITK", "click", "rich", "nnunetv2")]
    try:
        import torch

        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
        rows.append(("torch", f"{torch.__version__} ({build}, {torch.get_num_threads()} threads)"))

        devices = ["cpu"]
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                devices.append(f"cuda:{i} {props.name} ({props.total_memory / 2**30:.0f} GiB)")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            devices.append("mps")
        rows.append(("devices", ", ".join(devices)))
    except ImportError:
        rows += [("torch", "not installed"), ("devices", "unknown (no torch)")]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
