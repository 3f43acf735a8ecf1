"""The root command: its version (start-up weight is checked in test_cli_imports)."""

from typer.testing import CliRunner

import hatinspect
from hatinspect.cli.app import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"hatinspect {hatinspect.__version__}"
