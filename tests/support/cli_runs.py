"""Running the CLI in the tests: fixed width, no colour, stdout and stderr apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hatinspect.cli.app import app
from support.inspect_checkpoints import CONV, make_checkpoint, random_masks, write_native

ENV = {"COLUMNS": "100", "NO_COLOR": "1", "HATINSPECT_DEBUG": ""}
CONV_TASKS = (0, 1, 2)


def run(*args: str, **env: str):
    return CliRunner().invoke(app, [str(a) for a in args], env={**ENV, **env})


def write_examples(folder: Path) -> None:
    """net.safetensors: the hand-picked MLP masks; conv.safetensors: random conv masks."""
    write_native(folder / "net.safetensors", make_checkpoint(), metadata={"s_max": 400})
    conv = make_checkpoint(CONV, random_masks(CONV, CONV_TASKS, seed=1), backbone="TinyConv")
    write_native(folder / "conv.safetensors", conv)


def one_error_line(result, *fragments: str) -> str:
    """The single stderr line of a failed command, checked to contain `fragments`."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


FRESH_CLI = """
import sys
from hatinspect.cli.app import main
for args in {commands!r}:
    sys.argv = ["hatinspect", *args]
    try:
        main()
    except SystemExit as exit:
        assert exit.code in (0, None), (args, exit.code)
{then}
"""


def run_in_fresh_python(commands: list[list[str]], then: str, cwd: Path | None = None):
    """Run each argv through the console entry point in one new interpreter, then the
    statements `then` (asserts on `sys.modules`, say); the finished process is returned."""
    code = FRESH_CLI.format(commands=commands, then=then)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def modules_left_out(*names: str) -> str:
    """Statements for `run_in_fresh_python`: none of `names` was imported."""
    return f"heavy = [m for m in {names!r} if m in sys.modules]\nassert not heavy, heavy"
