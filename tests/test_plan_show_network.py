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


def test_show_network_png_draws_every_stage_and_head(tmp_path):
    """`--png FILE`: a picture per configuration with one box per encoder stage, decoder stage and
    deep-supervision head, labelled with the plan's channels, strides and patch."""
    import matplotlib.image as mpimg
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    from oxunet.networks.diagram import draw_configuration

    raw, pre = _setup(tmp_path, ids=(343,))
    png = tmp_path / "net.png"
    r = _run(["-d", "343", "-q", "--show-network", "--png", str(png)], raw, pre)
    assert r.exit_code == 0, r.output
    assert f"network diagram: {png}" in r.stderr
    pixels = mpimg.imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600 and np.ptp(pixels[..., :3]) > 0.5  # not blank
    plans = json.loads((pre / "Dataset343_Cli" / "nnUNetPlans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    arch = cfg["architecture"]["arch_kwargs"]
    ax = Figure().subplots()
    draw_configuration(ax, "3d_fullres", cfg["architecture"], cfg["patch_size"])
    n = arch["n_stages"]
    assert len([p for p in ax.patches if isinstance(p, FancyBboxPatch)]) == n + 2 * (n - 1)
    texts = [t.get_text() for t in ax.texts]
    for features, stride in zip(arch["features_per_stage"], arch["strides"]):
        assert any(t.startswith(f"{features} ch, k ") and f"/{'x'.join(map(str, stride))}," in t for t in texts)
    assert texts.count("output") == 1 and sum(t.startswith("DS head") for t in texts) == n - 2
    assert ax.get_title().endswith("patch " + "x".join(map(str, cfg["patch_size"])))
    standalone = CliRunner().invoke(plan, ["--show-network", "--plans-json", str(pre / "Dataset343_Cli" / "nnUNetPlans.json"),
                                           "--png", str(tmp_path / "again.png")])
    assert standalone.exit_code == 0, standalone.output
    assert (tmp_path / "again.png").stat().st_size > 10_000
    assert CliRunner().invoke(plan, ["--png", str(png), "-d", "343"]).exit_code == 2  # needs --show-network
