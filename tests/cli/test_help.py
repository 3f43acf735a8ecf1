"""Every command's help: a one-line purpose, placeholders in the tool's words, and two or
three examples, each of which runs on the shipped example (parsed out of ``--help`` and
run by bash in a fresh folder holding a copy of ``examples/``)."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
from support.cli_runs import run
from support.paths import REPO

from hatinspect.cli.registry import COMMANDS

NAMES = [command.name for command in COMMANDS]
NEEDS_TORCH = re.compile(r"train-demo|convert|\.pt\b")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def help_of(*args: str) -> str:
    result = run(*args, "--help", COLUMNS="80")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def example_lines(text: str) -> list[str]:
    """The lines under "Examples:" in a rendered help, up to its first panel."""
    after = text.split("Examples:", 1)[1].split("╭", 1)[0]
    return [line.rstrip()[1:] for line in after.splitlines() if line.strip()]


def examples_in(text: str) -> list[str]:
    """The example commands, a line that ends with a backslash joined to the next."""
    commands: list[str] = []
    for line in example_lines(text):
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1] + line.strip()
        else:
            commands.append(line.strip())
    return commands


@pytest.mark.parametrize("name", NAMES)
def test_each_command_has_a_purpose_placeholders_and_examples(name):
    text = help_of(name)
    assert re.search(rf"Usage: .* {re.escape(name)} \[OPTIONS\]", text)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "<" not in usage  # plain names: RUN..., CHECKPOINT
    for python_word in ("<int", "<float", "<str", "<path", "<list", "x>=", "<=x", "[x"):
        assert python_word not in text, (name, python_word)
    found = examples_in(text)
    assert 2 <= len(found) <= 3, found
    assert all(len(line) <= 78 for line in example_lines(text))  # none wraps at 80 columns
    assert all(line.startswith(f"hatinspect {name} ") for line in found), found
    purpose = COMMANDS[NAMES.index(name)].options["help"].split("\n\n")[0]
    assert "\n" not in purpose and purpose.endswith(".")


def test_the_top_level_help_gives_each_purpose_on_one_line():
    text = help_of()  # wide enough, none of them wraps: a line break is in the text itself
    wide = run("--help", COLUMNS="200").stdout
    for command in COMMANDS:
        purpose = command.options["help"].split("\n\n")[0]
        assert any(f" {command.name} " in line and purpose in line for line in wide.splitlines())
    assert "Usage:" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_the_help_examples_run_on_the_shipped_example(name, tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    found = examples_in(help_of(name))
    if not HAS_TORCH and any(NEEDS_TORCH.search(line) for line in found):
        pytest.skip("these examples need torch")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "100"}
    shell = f'hatinspect() {{ "{sys.executable}" -m hatinspect "$@"; }}\n'
    for line in found:
        done = subprocess.run(["bash", "-c", shell + line], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, (line, done.stderr)
        assert "error:" not in done.stderr, (line, done.stderr)
