"""The command line: help without torch, info output."""

import subprocess
import sys

from click.testing import CliRunner

from oxunet.cli import main


def test_help_does_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from oxunet.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
        "[CliRunner().invoke(main, [c, '--help']) for c in main.commands]; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_info_lists_versions():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert "oxunet._core" in result.output and "threads" in result.output
    assert "numpy" in result.output and "torch" in result.output
