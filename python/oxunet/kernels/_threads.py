"""Size of the Rust thread pool."""

from __future__ import annotations

from ._guarded import core as _core

#: The most threads :func:`set_num_threads` accepts (far above any real core count; a pool
#: that large could not even be started on most machines).
MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Use `n` worker threads in every kernel (0 = default: $OXUNET_NUM_THREADS, else all
    cores; at most :data:`MAX_THREADS`)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n > MAX_THREADS:
        from .errors import KernelValueError

        raise KernelValueError(f"n: expected an integer between 0 and {MAX_THREADS}, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the next kernel call will use."""
    return _core.get_num_threads()
