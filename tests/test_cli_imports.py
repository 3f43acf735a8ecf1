"""The torch-free commands start fast: neither torch nor matplotlib gets imported."""

import subprocess
import sys

from cli_runs import write_examples

COMMANDS = [
    ["masks", "--help"],
    ["measure", "--help"],
    ["masks", "net.safetensors", "--show"],
    ["masks", "net.safetensors", "-f", "csv"],
    ["capacity", "net.safetensors", "--by-task"],
    ["measure", "net.safetensors", "-l", "fc/1", "--save", "m.safetensors"],
    ["overlap", "net.safetensors", "-f", "json"],
    ["audit", "net.safetensors", "net.safetensors"],
    ["info", "net.safetensors"],
]

SCRIPT = """
import sys
from hatinspect.cli.app import main
for args in {commands!r}:
    sys.argv = ["hatinspect", *args]
    try:
        main()
    except SystemExit as exit:
        assert exit.code in (0, None), (args, exit.code)
heavy = [m for m in ("torch", "matplotlib") if m in sys.modules]
assert not heavy, heavy
"""


def test_torch_free_commands_import_neither_torch_nor_matplotlib(tmp_path):
    write_examples(tmp_path)
    code = SCRIPT.format(commands=COMMANDS)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_source_choices_follow_the_reader():
    from hatinspect.cli.inspect_commands import SOURCES
    from hatinspect.core.format import SOURCES as READER_SOURCES

    assert SOURCES == READER_SOURCES


def test_help_of_every_command_stays_light():
    # numpy too: --help should cost little more than typer itself
    code = (
        "import sys\nfrom hatinspect.cli.app import main\n"
        "for name in ('masks', 'capacity', 'measure', 'overlap', 'audit', 'convert', 'info'):\n"
        "    sys.argv = ['hatinspect', name, '--help']\n"
        "    try:\n        main()\n    except SystemExit as exit:\n        assert exit.code == 0\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
