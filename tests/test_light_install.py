"""The install without torch: what it declares, and what a command needing torch says."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support.cli_runs import write_examples
from support.paths import REPO

PYPROJECT = REPO / "pyproject.toml"

# torch made unimportable in a fresh interpreter, whether or not it is installed
NO_TORCH_CLI = """
import sys
sys.modules["torch"] = None
from hatinspect.cli.app import main
sys.argv = ["hatinspect", *{args!r}]
main()
"""


def run_without_torch(*args: str, cwd: Path):
    code = NO_TORCH_CLI.format(args=[str(a) for a in args])
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "HATINSPECT_DEBUG": ""},
    )


def test_torch_is_an_extra_not_a_requirement():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = [r.split(">")[0].split("=")[0] for r in project["dependencies"]]
    assert "torch" not in requirements and "jinja2" in requirements
    extras = project["optional-dependencies"]
    assert extras["torch"] == ["torch>=2.4"]
    assert any("torch" in r for r in extras["dev"])


@pytest.mark.parametrize(
    "args",
    [
        ["train-demo", "--out", "demo"],
        ["convert", "foreign.pt", "out.safetensors"],
        ["masks", "foreign.pt"],
    ],
    ids=["train-demo", "convert", "foreign-file"],
)
def test_a_command_needing_torch_says_what_to_install(tmp_path, args):
    (tmp_path / "foreign.pt").write_bytes(b"\x80\x02}q\x00.")  # a pickle: the torch importer's
    result = run_without_torch(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {args[0]} needs torch, which is not installed: pip install 'hatinspect[torch]'"
    ]
    assert not (tmp_path / "out.safetensors").exists()


def test_inspection_commands_run_without_torch(tmp_path):
    write_examples(tmp_path)
    for args in (["masks", "net.safetensors"], ["capacity", "conv.safetensors", "-f", "json"]):
        result = run_without_torch(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
