"""``oxunet plan --show-network``: a layer table per configuration, while planning or from a plans file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from math import prod
from pathlib import Path

from click.testing import CliRunner

from oxunet.cli.plan import plan
from test_planner_cli import _run, _setup


def _stage_rows(text: str, config: str) -> list[list[str]]:
    """Rows of the table under ``[config]`` (after its class and header lines)."""
    block = text.split(f"[{config}]", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block[1].startswith(("PlainConvUNet", "ResidualEncoderUNet")) and block[2].split()[0] == "stage"
    return [line.split() for line in block[3:]]


def test_show_network_while_planning_and_from_the_plans_file(tmp_path):
    raw, pre = _setup(tmp_path, ids=(341,))
    r = _run(["-d", "341", "--show-network"], raw, pre)
    assert r.exit_code == 0, r.output
    plans_path = pre / "Dataset341_Cli" / "nnUNetPlans.json"
    assert r.stdout.strip().splitlines()[-1] == str(plans_path)  # stdout stays the path
    plans = json.loads(plans_path.read_text())
    for name, cfg in plans["configurations"].items():
        if "architecture" not in cfg:
            continue  # cascade stages inherit; checked through their parent
        arch = cfg["architecture"]["arch_kwargs"]
        rows = _stage_rows(r.stderr, name)
        assert len(rows) == arch["n_stages"]
        assert [int(row[1]) for row in rows] == arch["features_per_stage"]
        assert [row[3] for row in rows] == ["x".join(map(str, s)) for s in arch["strides"]]
        total = [prod(s[a] for s in arch["strides"]) for a in range(len(cfg["patch_size"]))]
        assert rows[-1][-1] == "x".join(str(p // t) for p, t in zip(cfg["patch_size"], total))
    standalone = CliRunner().invoke(plan, ["--show-network", "--plans-json", str(plans_path)])
    assert standalone.exit_code == 0, standalone.output
    assert "[3d_fullres] patch" in standalone.stdout
    assert standalone.stdout.strip() in r.stderr


def test_show_network_standalone_needs_no_torch(tmp_path):
    raw, pre = _setup(tmp_path, ids=(342,))
    assert _run(["-d", "342", "-q"], raw, pre).exit_code == 0
    plans_path = pre / "Dataset342_Cli" / "nnUNetPlans.json"
    code = (
        "import sys; from click.testing import CliRunner; from oxunet.cli import main; "
        f"r = CliRunner().invoke(main, ['plan', '--show-network', '--plans-json', {str(plans_path)!r}]); "
        "assert r.exit_code == 0, r.output; assert 'stage' in r.output; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo,
                   env={**os.environ, "PYTHONPATH": str(repo / "python")})


def test_show_network_usage_errors(tmp_path):
    bad = tmp_path / "plans.json"
    bad.write_text("{}")
    r = CliRunner().invoke(plan, ["--plans-json", str(bad)])
    assert r.exit_code == 2 and "--plans-json goes with --show-network" in r.output
    r = CliRunner().invoke(plan, ["--show-network", "--plans-json", str(bad)])
    assert r.exit_code == 1 and "plans.json" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(plan, ["--show-network"])
    assert r.exit_code == 2 and "Missing option '-d'" in r.output
