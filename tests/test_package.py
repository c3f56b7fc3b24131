"""Package-level guarantees: import hygiene, thread control, fork safety, API symmetry with the reference."""

import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import oxunet.kernels as k
import oxunet.kernels.reference as ref
from oxunet.kernels.errors import KernelValueError


def _run(code: str, env_extra: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout)


def test_kernels_import_without_torch():
    proc = _run(
        """
        import sys
        import oxunet.kernels, oxunet.kernels.reference
        print('torch' in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_reference_has_the_same_public_signatures():
    for name in ref.__all__:
        ours, twin = getattr(k, name), getattr(ref, name)
        if inspect.isclass(ours):
            ours, twin = ours.__init__, twin.__init__
        assert inspect.signature(ours) == inspect.signature(twin), name


def test_set_num_threads_roundtrip_and_validation():
    before = k.get_num_threads()
    try:
        k.set_num_threads(1)
        assert k.get_num_threads() == 1
        k.set_num_threads(3)
        assert k.get_num_threads() == 3
    finally:
        k.set_num_threads(0)
    assert k.get_num_threads() == before
    with pytest.raises(KernelValueError, match="^n:"):
        k.set_num_threads(-1)


def test_env_var_sets_default_threads():
    proc = _run("import oxunet.kernels as k; print(k.get_num_threads())", {"OXUNET_NUM_THREADS": "5"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "5"


def test_forked_child_can_use_the_pool():
    # The parent warms the rayon pool; a forked child must rebuild it instead of deadlocking.
    proc = _run(
        """
        import os, sys
        import numpy as np
        import oxunet.kernels as k
        k.set_num_threads(2)
        mask = np.zeros((40, 40, 40), bool); mask[5:10, 5:10, 5:10] = True; mask[20:30, 20:30, 20:30] = True
        assert k.label_components(mask)[1] == 2
        pid = os.fork()
        if pid == 0:
            n = k.label_components(mask)[1]
            os._exit(0 if n == 2 else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


def test_core_version_matches_package_build():
    from oxunet import _core

    assert _core.build_profile in {"release", "debug"}
    assert isinstance(_core.__version__, str) and _core.__version__.count(".") == 2
