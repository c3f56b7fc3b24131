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


# ---------------------------------------------------------------------------------------------
# one home for the argument checks (oxunet.kernels._validate): it imports without the extension
# and without torch, and the wrappers and the twins reject the same bad input identically

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import oxunet.kernels as K  # noqa: E402
from oxunet.errors import KernelError  # noqa: E402
from oxunet.kernels import reference as REF  # noqa: E402

F32 = np.zeros((1, 4, 4, 4), np.float32)
U8 = np.zeros((1, 4, 4, 4), np.uint8)
MASK = np.zeros((4, 4, 4), bool)
SEG3 = np.zeros((4, 4, 4), np.uint8)

# (function name, args, kwargs, expected class name): every row is invalid
BAD = [
    ("resample_data", (F32.astype(np.int32), (6, 6, 6), (1, 1, 1), (1, 1, 1)), {}, "KernelTypeError"),
    ("resample_data", (F32, (6, 6, 6), (1, 1, 1), (1, 1, 1)), {"order": 2}, "KernelValueError"),
    ("resample_data", (F32, (2**63, 6, 6), (1, 1, 1), (1, 1, 1)), {}, "KernelValueError"),
    ("resample_data", (F32, (6, 6), (1, 1, 1), (1, 1, 1)), {}, "KernelShapeError"),
    ("resample_data", (F32, (6, 6, 6), (1, -1, 1), (1, 1, 1)), {}, "KernelValueError"),
    ("resample_data", (F32, (6, 6, 6), (1, 1, 1), (1, 1, 1)), {"force_separate_z": "yes"}, "KernelTypeError"),
    ("resample_seg", (F32, (6, 6, 6), (1, 1, 1), (1, 1, 1)), {}, "KernelTypeError"),
    ("crop_to_nonzero", (F32[0, 0],), {}, "KernelShapeError"),
    ("crop_to_nonzero", (F32, U8), {"nonzero_label": 300}, "KernelValueError"),
    ("crop_to_nonzero", (F32, U8[:, :2]), {}, "KernelShapeError"),
    ("label_components", (MASK,), {"connectivity": 5}, "KernelValueError"),
    ("label_components", (MASK.astype(np.float32),), {}, "KernelTypeError"),
    ("remove_small_components", (SEG3, [1], -1), {}, "KernelValueError"),
    ("remove_all_but_largest_component", (SEG3, "a"), {}, "KernelTypeError"),
    ("remove_all_but_largest_component", (SEG3, 1), {"background_label": 256}, "KernelValueError"),
    ("sample_class_locations", (U8, [1]), {"seed": -1}, "KernelValueError"),
    ("sample_class_locations", (U8, [1]), {"min_percent_coverage": 2.0}, "KernelValueError"),
    ("sample_class_locations", (U8, "1"), {}, "KernelTypeError"),
    ("sample_patch_boxes", ((8, 8, 8), (4, 4, 4), 0, None), {}, "KernelValueError"),
    ("sample_patch_boxes", ((8, 8, 8), (4, 4), 2, None), {}, "KernelShapeError"),
    ("sample_patch_box", ((8, 8, 8), (4, 4, 4), None, "yes"), {}, "KernelTypeError"),
    ("sample_patch_box", ((8, 8, 8), (4, 4, 4), {1: np.zeros((3, 2), np.int64)}, True), {}, "KernelShapeError"),
    ("crop_and_pad", (U8, [[0, 2], [3, 1]]), {}, "KernelValueError"),
    ("crop_and_pad", (U8, [[0, 2]]), {"pad_value": 300}, "KernelValueError"),
    ("crop_and_pad", (U8, [[0, 2]] * 5), {}, "KernelShapeError"),
    ("sliding_window_starts", ((8, 8), (4, 4), 0.0), {}, "KernelValueError"),
    ("sliding_window_starts", ((3, 8), (4, 4)), {}, "KernelValueError"),
    ("gaussian_importance_map", ((8, 8),), {"dtype": np.float64}, "KernelTypeError"),
    ("gaussian_importance_map", ((8, 8),), {"sigma_scale": 0}, "KernelValueError"),
    ("Aggregator", (0, (8, 8), (4, 4)), {}, "KernelValueError"),
    ("Aggregator", (2, (8, 8), (4, 4)), {"weighting": "box"}, "KernelValueError"),
    ("Aggregator", (2, (8, 8, 8, 8), (4, 4, 4, 4)), {}, "KernelShapeError"),
]


def _error(fn, args, kwargs) -> BaseException:
    with pytest.raises(KernelError) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.mark.parametrize("name, args, kwargs, cls", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_wrapper_and_twin_reject_the_same_arguments_identically(name, args, kwargs, cls):
    ours, twin = _error(getattr(K, name), args, kwargs), _error(getattr(REF, name), args, kwargs)
    assert type(ours) is type(twin) and type(ours).__name__ == cls
    assert str(ours) == str(twin)


@pytest.mark.parametrize("bad", [
    (np.zeros((2, 4, 4), np.float32), (1, 0)),    # wrong channel count
    (np.zeros((1, 4, 3), np.float32), (1, 0)),    # wrong window shape
    (np.zeros((1, 4, 4), np.float32), (20, 0)),   # window entirely outside
    (np.zeros((1, 4, 4), np.int32), (0, 0)),      # dtype
])
def test_aggregator_add_rejects_identically(bad):
    pred, start = bad
    ours = _error(K.Aggregator(1, (8, 8), (4, 4)).add, (pred, start), {})
    twin = _error(REF.Aggregator(1, (8, 8), (4, 4)).add, (pred, start), {})
    assert type(ours) is type(twin) and str(ours) == str(twin)


BLOCKED = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "oxunet._core" or name == "torch" or name.startswith("torch."):
            raise ImportError("blocked")
sys.meta_path.insert(0, Block())
from oxunet.kernels import _validate, reference as ref
from oxunet.errors import KernelError
assert "oxunet._core" not in sys.modules and "torch" not in sys.modules
sys.path.insert(0, TESTS)
from test_kernels_without_extension import BAD  # the table above (its imports need neither)
for name, args, kwargs, cls in BAD:
    try:
        getattr(ref, name)(*args, **kwargs)
    except KernelError as e:
        print(type(e).__name__, "|", e)
    else:
        print("accepted")
assert "oxunet._core" not in sys.modules and "torch" not in sys.modules
"""


def test_checks_import_and_reject_without_extension_or_torch():
    """The twins, and the checks they share with the wrappers, run with neither the extension nor
    torch importable, and give exactly the errors the wrappers give in a normal process."""
    root = Path(__file__).resolve().parents[1]
    code = f"TESTS = {str(root / 'tests')!r}\n" + BLOCKED
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(root / "python"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    expected = []
    for name, args, kwargs, _ in BAD:
        e = _error(getattr(K, name), args, kwargs)
        expected.append(f"{type(e).__name__} | {e}")
    assert out.stdout.strip().splitlines() == expected
