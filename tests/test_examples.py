"""The runnable examples under examples/ run and say what they should."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from peers import require

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    "args, accumulator, output",
    [
        ((), "float32", "float32"),
        (("--bf16", "--dtype", "float16", "--shape", "30", "50", "20", "--patch", "16", "24", "24"), "float16", "bfloat16"),
    ],
)
def test_aggregate_any_model(args, accumulator, output):
    require("torch")
    proc = run_example("aggregate_any_model.py", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "labels agree (whole vs streaming): True" in out
    assert f"accumulator {accumulator}, model output {output} tensors" in out
    n_windows = int(re.search(r": (\d+) windows", out).group(1))
    assert n_windows > 1
    # the streaming slabs tile the first axis, in order, from 0
    slabs = [tuple(map(int, m)) for m in re.findall(r"\((\d+), (\d+)\)", out.split("streaming:")[1].splitlines()[0])]
    assert slabs[0][0] == 0 and all(b == a2 for (_, b), (a2, _) in zip(slabs, slabs[1:]))
    assert len(slabs) > 1
    counts = [int(v) for v in re.search(r"voxels per class \[([\d, ]+)\]", out).group(1).split(",")]
    shape = [int(v) for v in re.search(r"labels \((\d+), (\d+), (\d+)\)", out).groups()]
    assert sum(counts) == shape[0] * shape[1] * shape[2]
