"""Size of the Rust thread pool."""

from __future__ import annotations

from .. import _core


def set_num_threads(n: int) -> None:
    """Use `n` worker threads in every kernel (0 = default: $OXUNET_NUM_THREADS, else all cores)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        from .errors import KernelValueError

        raise KernelValueError(f"n: expected a non-negative integer, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the next kernel call will use."""
    return _core.get_num_threads()
