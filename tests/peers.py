"""Optional peers the parity tests compare against; each import skips with a clear reason."""

import contextlib
import multiprocessing
from unittest import mock

import pytest


def require(module: str, extra_hint: str = "pip install -e '.[test]'"):
    """Import a peer package or skip the calling test, naming what is missing and how to get it."""
    return pytest.importorskip(module, reason=f"peer '{module}' is not installed ({extra_hint})")


@contextlib.contextmanager
def nnunet_fork_pools(*modules):
    """nnunetv2 starts a 'spawn' pool per call (each child re-imports torch: slow); inside this
    block the given nnunetv2 modules get 'fork' pools instead. The computation is the same."""
    fork = multiprocessing.get_context("fork")
    fake = type("mp", (), {"get_context": staticmethod(lambda *_a, **_k: fork)})
    with contextlib.ExitStack() as stack:
        for m in modules:
            stack.enter_context(mock.patch.object(m, "multiprocessing", fake))
        yield
