"""Optional peers the parity tests compare against; each import skips with a clear reason."""

import pytest


def require(module: str, extra_hint: str = "pip install -e '.[test]'"):
    """Import a peer package or skip the calling test, naming what is missing and how to get it."""
    return pytest.importorskip(module, reason=f"peer '{module}' is not installed ({extra_hint})")
