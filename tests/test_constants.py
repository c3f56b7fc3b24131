"""oxunet.constants equals nnunetv2's values, and the literals are not repeated as defaults."""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import pytest

from oxunet import constants

PKG = pathlib.Path(__file__).resolve().parents[1] / "python" / "oxunet"


def _source(obj) -> str:
    return inspect.getsource(obj)


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"pattern {pattern!r} not found in nnunetv2's source"
    return float(eval(m.group(1), {}))  # a numeric literal such as 0.33 or 1. / 8


def test_constants_equal_nnunetv2():
    pytest.importorskip("nnunetv2", reason="nnunetv2 is not installed: nothing to compare against")
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    assert constants.ANISO_THRESHOLD == __import__("nnunetv2.configuration", fromlist=["x"]).ANISO_THRESHOLD
    assert constants.SLIDING_WINDOW_STEP_SIZE == inspect.signature(nnUNetPredictor.__init__).parameters[
        "tile_step_size"].default
    trainer_init = _source(nnUNetTrainer.__init__)
    assert constants.OVERSAMPLE_FOREGROUND_PERCENT == _number(
        r"self\.oversample_foreground_percent\s*=\s*([0-9.]+)", trainer_init)
    # the predictor calls compute_gaussian with explicit sigma and scaling (its own defaults differ)
    sliding = _source(nnUNetPredictor._internal_predict_sliding_window_return_logits)
    assert constants.GAUSSIAN_SIGMA_SCALE == pytest.approx(_number(r"sigma_scale\s*=\s*([0-9. /]+?)\s*,", sliding))
    assert constants.GAUSSIAN_VALUE_SCALING_FACTOR == _number(r"value_scaling_factor\s*=\s*([0-9.]+)", sliding)
    fg = _source(DefaultPreprocessor._sample_foreground_locations)
    assert constants.CLASS_LOCATIONS_MIN_SAMPLES == _number(r"min_num_samples\s*=\s*([0-9]+)", fg)
    assert constants.CLASS_LOCATIONS_MIN_COVERAGE == _number(r"min_percent_coverage\s*=\s*([0-9.]+)", fg)


def test_constants_module_imports_nothing():
    tree = ast.parse((PKG / "constants.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


# (parameter name, literal value) pairs that must come from oxunet.constants when used as defaults
_DEFAULTS = {
    "oversample_foreground_percent": 0.33,
    "step_size": 0.5,
    "sigma_scale": 1 / 8,
    "value_scaling_factor": 10,
    "min_num_samples": 10000,
    "min_percent_coverage": 0.01,
}


def _literal(node) -> float | None:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        if isinstance(node, ast.BinOp):  # 1.0 / 8
            try:
                return eval(compile(ast.Expression(node), "<default>", "eval"), {})
            except Exception:
                return None
        return None
    return value if isinstance(value, (int, float)) else None


def test_default_literals_live_only_in_constants():
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name == "constants.py":
            continue
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = fn.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                want = _DEFAULTS.get(arg.arg)
                if want is not None and _literal(default) == pytest.approx(want):
                    offenders.append(f"{path.relative_to(PKG)}:{default.lineno} {fn.name}({arg.arg}=...)")
    assert not offenders, "use oxunet.constants for these defaults:\n" + "\n".join(offenders)
