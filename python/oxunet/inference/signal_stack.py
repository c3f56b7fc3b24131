"""Keep the calling thread's alternate signal stack across calls into native runtimes.

OpenVINO's CPU plugin installs its own alternate signal stack (``sigaltstack``) on the thread that
compiles a model, and puts back the one it found when its ``Core`` goes away. With two cores
destroyed out of order the thread is left pointing at a stack that was already unmapped; the next
signal handled on that stack (Python's handlers use ``SA_ONSTACK``, e.g. the ``SIGCHLD`` handler
that torch's DataLoader installs) then kills the process with SIGSEGV. Restoring the previous stack
right after each such call keeps whatever the process had (faulthandler's, or none) in place.

Linux only (``stack_t``'s field order differs elsewhere); elsewhere the guard does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager


class _StackT(ctypes.Structure):  # glibc/musl on Linux: void *ss_sp; int ss_flags; size_t ss_size
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_SS_ONSTACK = 1


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "sigaltstack") else None
    except OSError:
        return None


_LIBC = _libc()


def current_signal_stack() -> tuple[int, int, int] | None:
    """(address, size, flags) of this thread's alternate signal stack; None where not queryable."""
    if _LIBC is None:
        return None
    st = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(st)) != 0:
        return None
    return int(st.ss_sp or 0), int(st.ss_size), int(st.ss_flags)


@contextmanager
def keep_signal_stack():
    """Runs the body, then puts this thread's alternate signal stack back as it was before."""
    if _LIBC is None:
        yield
        return
    before = _StackT()
    saved = _LIBC.sigaltstack(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if saved and not before.ss_flags & _SS_ONSTACK:  # never while running on it (cannot be here)
            after = _StackT()
            if _LIBC.sigaltstack(None, ctypes.byref(after)) == 0 and (
                    after.ss_sp, after.ss_size, after.ss_flags) != (before.ss_sp, before.ss_size, before.ss_flags):
                _LIBC.sigaltstack(ctypes.byref(before), None)
