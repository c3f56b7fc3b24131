"""The NumPy twins in oxunet.kernels.reference import and run without the Rust extension (issue
12, item 6); a Rust-backed kernel then raises ImportError on use instead of failing at import."""

import subprocess
import sys
from pathlib import Path

CODE = '''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "oxunet._core":
            raise ImportError("not built")
sys.meta_path.insert(0, Block())
import numpy as np
from oxunet.kernels import reference as ref
out = ref.resample_data(np.ones((1, 4, 4, 4), np.float32), (6, 6, 6), (1, 1, 1), (1, 1, 1))
c, s, b = ref.crop_to_nonzero(np.pad(np.ones((1, 3, 3, 3), np.float32), ((0, 0), (1, 1), (1, 1), (1, 1))))
g = ref.gaussian_importance_map((8, 8, 8))
labels, n = ref.label_components(np.eye(4, dtype=bool))
assert "oxunet._core" not in sys.modules
print(out.shape, c.shape, g.shape, n)
import oxunet.kernels as k
try:
    k.resample_data(np.ones((1, 4, 4, 4), np.float32), (6, 6, 6), (1, 1, 1), (1, 1, 1))
except ImportError as e:
    print("ImportError:", "oxunet._core" in str(e) and "not built" in str(e))
'''


def test_reference_twins_run_without_the_extension():
    src = str(Path(__file__).resolve().parents[1] / "python")
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == ["(1, 6, 6, 6) (1, 3, 3, 3) (8, 8, 8) 1", "ImportError: True"], out.stdout
