"""The root command: version, help, and a start-up that leaves torch alone."""

import subprocess
import sys

from typer.testing import CliRunner

import hatinspect
from hatinspect.cli.app import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"hatinspect {hatinspect.__version__}"


def test_help_imports_neither_torch_nor_matplotlib():
    code = (
        "import sys\n"
        "from hatinspect.cli.app import main\n"
        "sys.argv = ['hatinspect', '--help']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "heavy = [m for m in ('torch', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
