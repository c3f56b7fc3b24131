"""The oxunet_<verb> aliases take every flag of nnU-Net's verb; every command's --help answers
without torch; progress stays off stdout and off non-terminals; `oxunet info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from peers import require

from oxunet.cli import main
from oxunet.cli.aliases import ALIASES, AliasMissingError, build_alias, get_alias
from oxunet.cli.nnunet_flags import NNUNET_VERBS

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def nnunet_argparse(tmp_path_factory) -> dict:
    """nnunetv2's own argparse definitions, read from its installed entry points in a child process."""
    require("nnunetv2")
    out = tmp_path_factory.mktemp("nnflags") / "flags.json"
    env = {**os.environ, "nnUNet_raw": "/nonexistent", "nnUNet_preprocessed": "/nonexistent", "nnUNet_results": "/nonexistent"}
    proc = subprocess.run([sys.executable, str(HERE / "nnunet_argparse_dump.py"), str(out), *NNUNET_VERBS], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_flag_table_matches_installed_nnunet(nnunet_argparse):
    for verb, spec in NNUNET_VERBS.items():
        entries = nnunet_argparse[verb]
        flags = {f: e["arity"] for e in entries for f in e["flags"]}
        positionals = tuple(e["dest"] for e in entries if not e["flags"])
        assert spec.flags == flags, verb
        assert spec.positionals == positionals, verb


def test_every_alias_has_a_console_script():
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["oxunet"] == "oxunet.cli:main"
    assert {k: v for k, v in scripts.items() if k != "oxunet"} == {n: f"oxunet.cli.aliases:{n}" for n in ALIASES}
    assert set(a.verb for a in ALIASES.values()) == set(NNUNET_VERBS)


def _samples(tmp: Path) -> dict[str, list[str]]:
    # path-valued flags get real paths (our options check existence where nnU-Net would fail later)
    d, f = tmp / "folder", tmp / "file.json"
    d.mkdir(exist_ok=True)
    f.write_text("{}")
    dirs = ("-i", "-ref", "-m", "-prev_stage_predictions", "gt_folder", "pred_folder", "input_folder")
    files = ("-pretrained_weights", "-pp_pkl_file", "-plans_json", "-dataset_json", "-djfile", "-pfile")
    out = {k: [str(d)] for k in dirs} | {k: [str(f)] for k in files}
    out |= {"-o": [str(tmp / "out")], "zip": [str(tmp / "model.zip")], "-device": ["cpu"],
            "-overwrite_target_spacing": ["1", "1", "1"], "-d": ["4"], "-s": ["4"], "-t": ["5"],
            "dataset_name_or_id": ["4"], "configuration": ["3d_fullres"], "fold": ["0"], "-f": ["0", "1"],
            "-c": ["3d_fullres"], "-l": ["1", "2"]}
    return out


def _values(entry, samples) -> list[str]:
    values = samples.get(entry["flags"][0] if entry["flags"] else entry["dest"], entry["sample"])
    keep_all = entry["arity"] == "+" or entry["flags"][:1] == ["-overwrite_target_spacing"]
    return [] if entry["arity"] == 0 else values if keep_all else values[:1]


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_alias_accepts_every_nnunet_flag(name, nnunet_argparse, tmp_path):
    alias = ALIASES[name]
    try:
        cmd = build_alias(alias)
    except AliasMissingError as e:
        pytest.skip(f"{e} (another helper's command; merged by the lead)")
    samples = _samples(tmp_path)
    entries = nnunet_argparse[alias.verb]
    ours = {o: p for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
    # required by nnU-Net's parser, or by ours (nnU-Net's -d is optional to argparse but needed to run)
    needed = [e for e in entries if e["required"] or any(ours.get(f) is not None and ours[f].required for f in e["flags"])]
    base = [a for e in needed for a in e["flags"][:1] + _values(e, samples)]
    for entry in entries:
        for flag in entry["flags"] if entry not in needed else entry["flags"][1:]:
            args = base + [flag] + _values(entry, samples)
            try:
                ctx = cmd.make_context(name, list(args))
            except click.ClickException as e:
                pytest.fail(f"{name} {' '.join(args)}: {e.format_message()}")
            assert not ctx.args, f"{name} {' '.join(args)}: left unparsed {ctx.args}"
    cmd.make_context(name, list(base))  # the required ones alone


def _parse(name: str, args: list[str]) -> dict:
    return build_alias(ALIASES[name]).make_context(name, args).params


def test_train_alias_maps_nnunet_flags(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    p = _parse("oxunet_train", ["4", "3d_fullres", "all", "-tr", "nnUNetTrainer_5epochs", "-p", "P",
                                "-pretrained_weights", str(weights), "-device", "cpu", "--npz", "-num_gpus", "1"])
    assert p["positional"] == ("4", "3d_fullres", "all") and p["trainer"] == "nnUNetTrainer_5epochs"
    assert p["plans_name"] == "P" and p["pretrained"] == str(weights) and p["device"] == "cpu" and p["npz"]
    assert p["num_gpus"] == 1  # -num_gpus is a second name of --num-gpus (DDP ranks)


def test_lists_and_positionals():
    p = _parse("oxunet_plan_and_preprocess", ["-d", "4", "5", "-c", "2d", "3d_fullres", "-np", "8", "4", "--no_pbar"])
    assert p["datasets"] == ("4", "5") and p["configurations"] == ("2d", "3d_fullres") and p["num_processes"] == (8, 4)
    assert p["quiet"] is True
    p = _parse("oxunet_export_model_to_zip", ["-d", "4", "-o", "m.zip", "-c", "2d", "3d_fullres", "-f", "0", "1", "2",
                                              "-chk", "checkpoint_final.pth", "checkpoint_best.pth", "--not_strict"])
    assert p["configurations"] == ("2d", "3d_fullres") and p["folds"] == ("0", "1", "2")
    assert p["checkpoints"] == ("checkpoint_final.pth", "checkpoint_best.pth") and p["not_strict"]
    assert _parse("oxunet_install_pretrained_model_from_zip", ["m.zip"])["zip_file"] == "m.zip"


def test_unimplemented_flag_warns_once_and_runs(tmp_path):
    env = {"OXUNET_RAW": str(tmp_path), "OXUNET_PREPROCESSED": str(tmp_path)}
    result = CliRunner().invoke(get_alias("oxunet_plan_experiment"),
                                ["-d", "999", "-preprocessor_name", "MyPreprocessor"], env=env)
    assert result.exit_code == 1, result.output  # the dataset error, not a usage error
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "-preprocessor_name MyPreprocessor" in warnings[0]
    assert "Dataset999" in result.stderr


def test_missing_command_alias_explains(monkeypatch):
    monkeypatch.setitem(ALIASES, "oxunet_x", ALIASES["oxunet_train"].__class__("train", ("no-such-verb",)))
    result = CliRunner().invoke(get_alias("oxunet_x"), ["-d", "4"])
    assert result.exit_code == 1 and "no `oxunet no-such-verb` command" in result.output


def _all_commands(group: click.Group, prefix=()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append(prefix + (name,))
        if isinstance(cmd, click.Group):
            out += _all_commands(cmd, prefix + (name,))
    return out


HELP_CHECK = r"""
import sys, json
from oxunet.cli import main
from oxunet.cli.aliases import ALIASES, get_alias
calls = [(main, list(path) + ["--help"], "oxunet " + " ".join(path)) for path in json.loads(sys.argv[1])]
calls += [(get_alias(n), ["-h"], n) for n in ALIASES] + [(main, ["--help"], "oxunet")]
for cmd, args, label in calls:
    try:
        cmd.main(args, prog_name=label, standalone_mode=False)
    except SystemExit as e:
        assert not e.code, (label, e.code)
    assert "torch" not in sys.modules, f"{label} --help imported torch"
print("ok", len(calls))
"""


def test_every_help_answers_without_torch():
    paths = _all_commands(main)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", HELP_CHECK, json.dumps(paths)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == str(len(paths) + len(ALIASES) + 1)


def test_alias_script_entry_runs_help_without_torch():
    code = ("import sys, runpy; sys.argv = ['oxunet_train', '--help']\n"
            "try:\n    runpy.run_module('oxunet.cli.aliases', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n    assert not e.code\nprint('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code.replace("['oxunet_train', '--help']", "['x', 'oxunet_train', '--help']")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: oxunet_train" in proc.stdout and proc.stdout.strip().endswith("False")


def _square(x):
    return x * x


def test_progress_stays_off_stdout_and_off_non_terminals(capfd):
    from oxunet._workers import map_cases

    assert map_cases(_square, [(i,) for i in range(5)], 1, "squares") == [0, 1, 4, 9, 16]
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # pytest's stderr is not a terminal: no bar


def test_info_names_versions_and_devices():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert {"oxunet", "oxunet._core", "torch", "numpy", "SimpleITK", "devices"} <= rows.keys()
    assert "build" in rows["oxunet._core"] and "threads" in rows["oxunet._core"]
    assert rows["devices"].startswith("cpu")


def test_alias_wiring_for_a_new_command(monkeypatch):
    """What another helper's command gets with no wiring: positionals to options, lists, kebab and
    explicit renames, @nnunet_renames, and unknown flags accepted."""
    from oxunet.cli.common import nnunet_renames

    @nnunet_renames({"--no_overwrite": "--keep-existing"})
    @click.command("find-best")
    @click.option("-d", "--dataset", required=True)
    @click.option("--configurations", multiple=True)
    @click.option("--trainers", multiple=True)
    @click.option("-f", "--folds", multiple=True, type=int)
    @click.option("--plans", multiple=True)
    @click.option("-np", "--num-processes", type=int, default=2)
    @click.option("--disable-ensembling", is_flag=True)
    @click.option("--keep-existing", is_flag=True)
    def find_best(**kw):
        click.echo(json.dumps(kw))

    monkeypatch.setitem(main.commands, "find-best", find_best)
    args = ["Dataset004_Hippocampus", "-c", "2d", "3d_fullres", "-tr", "A", "B", "-f", "0", "1", "-p", "P",
            "-np", "3", "--disable_ensembling", "--no_overwrite"]
    p = _parse("oxunet_find_best_configuration", args)
    assert p == {"dataset": "Dataset004_Hippocampus", "configurations": ("2d", "3d_fullres"), "trainers": ("A", "B"),
                 "folds": (0, 1), "plans": ("P",), "num_processes": 3, "disable_ensembling": True, "keep_existing": True}
    # the positional may also come after options (a list swallows it, as with nnU-Net's argparse)
    assert _parse("oxunet_find_best_configuration", ["-f", "0", "1", "-np", "3", "4"])["dataset"] == "4"
    assert _parse("oxunet_find_best_configuration", ["-d", "4"])["dataset"] == "4"
