"""Device, precision and measurement helpers for prediction (torch imported lazily)."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from ..errors import InferenceError

__all__ = ["PRECISIONS", "PrecisionError", "StageTimes", "autocast", "cpu_has_native_bf16", "peak_rss_bytes",
           "reset_peak_rss", "resolve_device", "resolve_precision", "tree_rss_bytes"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class PrecisionError(InferenceError, ValueError):
    """A precision the device/torch build cannot run; the message names the alternative."""


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU flags list ``amx_bf16`` or ``avx512_bf16``: bf16 matmuls/convolutions run
    natively (else autocast is slower). ``cpuinfo``: the text of /proc/cpuinfo, read when None;
    False where it cannot be read, e.g. macOS."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


class HostDevice:
    """The CPU as the predictor sees it where torch is not installed (ONNX runtimes only): the
    parts of a ``torch.device`` it reads."""

    type = "cpu"
    index = None

    def __str__(self) -> str:
        return "cpu"

    def __repr__(self) -> str:
        return "device(type='cpu')"

    def __eq__(self, other) -> bool:
        return str(other) == "cpu"

    def __hash__(self) -> int:
        return hash("cpu")


def torch_available() -> bool:
    """Whether torch can be imported (ONNX-runtime prediction runs without it). Asked per slab by
    the export, so the search of the path is done once per process."""
    return "torch" in sys.modules or _torch_installed()


@lru_cache(maxsize=1)
def _torch_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def resolve_device(device: str = "auto"):
    """A torch device; without torch installed, :class:`HostDevice` for 'cpu' / 'auto'."""
    if device in (None, "auto", "cpu") and not torch_available():
        return HostDevice()
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch sees no CUDA device")
    return dev


def resolve_precision(precision: str, device, cpuinfo: str | None = None) -> str:
    """``auto`` → fp16 autocast on CUDA (as nnU-Net), bf16 on CPUs with native bf16, else fp32;
    explicit values pass through. Unknown values raise :class:`PrecisionError`."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    kind = str(getattr(device, "type", device)).split(":")[0]
    if kind == "cuda":
        return "fp16"
    if kind == "cpu" and cpu_has_native_bf16(cpuinfo):
        return "bf16"
    return "fp32"


def autocast(precision: str, device):
    """The autocast context for one forward/loss (a null context for fp32)."""
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _status_kib(field: str, pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM), in bytes; since the last :func:`reset_peak_rss`."""
    kib = _status_kib("VmHWM")
    if kib == 0:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tree_rss_bytes(pid: int | None = None) -> int:
    """Current RSS of a process and all its descendants (for samplers measuring a process tree)."""
    pid = os.getpid() if pid is None else pid
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _status_kib("VmRSS", p) * 1024
        try:
            for t in Path(f"/proc/{p}/task").iterdir():
                children = (t / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except OSError:
            pass
    return total


class StageTimes(dict):
    """Seconds per stage; ``with times.stage("network"): ...`` adds to a stage."""

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        self[name] = self.get(name, 0.0) + seconds
