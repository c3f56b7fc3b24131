"""``oxunet plan``: nnU-Net's flag spellings, several datasets, the decision table, errors."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from oxunet.cli.plan import plan
from test_planner_parity import fingerprint, stub_dataset


def _setup(tmp_path, ids=(331, 332)):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    for i in ids:
        name = f"Dataset{i}_Cli"
        stub_dataset(raw, name, 5, ("CT",), 2)
        (pre / name).mkdir(parents=True)
        fp = fingerprint([[3.0, 0.8, 0.8]] * 5, [[60, 300, 300]] * 5)
        (pre / name / "dataset_fingerprint.json").write_text(json.dumps(fp))
    return raw, pre


def _run(args, raw, pre):
    return CliRunner().invoke(plan, [*args, "--raw-dir", str(raw), "--preprocessed-dir", str(pre)])


def test_plan_several_datasets_with_nnunet_spellings(tmp_path):
    raw, pre = _setup(tmp_path)
    r = _run(["-d", "331", "332", "-pl", "nnUNetPlannerResEncM", "-gpu_memory_target", "10",
              "-overwrite_plans_name", "P10", "-overwrite_target_spacing", "3", "1", "1"], raw, pre)
    assert r.exit_code == 0, r.output
    written = r.stdout.split()
    assert written == [str(pre / "Dataset331_Cli" / "P10.json"), str(pre / "Dataset332_Cli" / "P10.json")]
    plans = json.loads((pre / "Dataset332_Cli" / "P10.json").read_text())
    assert plans["experiment_planner_used"] == "nnUNetPlannerResEncM" and plans["oxunet"]["gpu_memory_gb"] == 10
    assert plans["configurations"]["3d_fullres"]["spacing"] == [3.0, 1.0, 1.0]
    assert "warning" in r.stderr and "tuned for 8 GB" in r.stderr  # a preset planned off its target
    for text in ("3d_fullres", "patch", "batch", "ResidualEncoderUNet", "nnUNetPlans_2d"):
        assert text in r.stderr


def test_plan_long_options_and_quiet(tmp_path):
    raw, pre = _setup(tmp_path, ids=(333,))
    r = _run(["--dataset", "333", "--planner", "ResEncL", "--plans-name", "L", "-q"], raw, pre)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(pre / "Dataset333_Cli" / "L.json") and r.stderr == ""
    r = _run(["-d", "333", "-d", "333", "-p", "Twice", "--quiet"], raw, pre)
    assert r.exit_code == 0 and len(r.stdout.split()) == 2


def test_plan_errors_are_one_clear_line(tmp_path):
    raw, pre = _setup(tmp_path, ids=(334,))
    r = _run(["-d", "334", "-pl", "Nope"], raw, pre)
    assert r.exit_code == 2 and "unknown planner 'Nope'" in r.output
    r = _run(["-d", "999"], raw, pre)
    assert r.exit_code == 1 and "no folder named Dataset999_" in r.output and "Traceback" not in r.output
    (pre / "Dataset334_Cli" / "dataset_fingerprint.json").write_text("{")
    r = _run(["-d", "334"], raw, pre)
    assert r.exit_code == 1 and "dataset_fingerprint.json: cannot be read as JSON" in r.output
    r = _run(["-d", "334", "-gpu_memory_target", "0"], raw, pre)
    assert r.exit_code == 2
    r = _run(["-d", "334", "--verify"], raw, pre)
    assert r.exit_code == 1 and "oxunet verify -d 334" in r.output


def test_plan_imports_nnunet_plans(tmp_path):
    raw, pre = _setup(tmp_path, ids=(335, 336))
    assert _run(["-d", "335"], raw, pre).exit_code == 0
    source = tmp_path / "nnUNetPlans.json"
    source.write_text((pre / "Dataset335_Cli" / "nnUNetPlans.json").read_text())
    r = _run(["-d", "336", "--import-nnunet-plans", str(source), "-p", "Imported"], raw, pre)
    assert r.exit_code == 0, r.output
    plans = json.loads((pre / "Dataset336_Cli" / "Imported.json").read_text())
    assert plans["dataset_name"] == "Dataset336_Cli" and plans["oxunet"]["imported_from"] == str(source.resolve())
    r = _run(["-d", "335", "336", "--import-nnunet-plans", str(source)], raw, pre)
    assert r.exit_code == 2 and "exactly one dataset" in r.output


def test_plan_help_does_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from oxunet.cli.plan import plan; "
        "r = CliRunner().invoke(plan, ['--help']); assert r.exit_code == 0, r.output; "
        "assert '-gpu_memory_target' in r.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
