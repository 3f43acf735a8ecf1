"""The torch-free commands start fast: neither torch nor matplotlib gets imported."""

from support.cli_runs import modules_left_out, run_in_fresh_python, write_examples
from support.paths import REPO

HELP_COMMANDS = (
    "masks",
    "capacity",
    "measure",
    "overlap",
    "audit",
    "convert",
    "info",
    "train-demo",
    "trajectory",
)
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
    ["trajectory", str(REPO / "examples" / "hat-logs.pkz"), "-f", "json"],
    ["compare", str(REPO / "examples" / "hat-logs.pkz"), "-f", "json"],
]


def test_torch_free_commands_import_neither_torch_nor_matplotlib(tmp_path):
    write_examples(tmp_path)
    result = run_in_fresh_python(COMMANDS, modules_left_out("torch", "matplotlib"), tmp_path)
    assert result.returncode == 0, result.stderr


def test_help_of_every_command_stays_light():
    # numpy too: --help should cost little more than typer itself
    commands = [["--help"], *([name, "--help"] for name in HELP_COMMANDS)]
    result = run_in_fresh_python(commands, modules_left_out("torch", "matplotlib", "numpy"))
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_the_core_reader_never_reaches_up_to_storage():
    import ast
    from pathlib import Path

    import hatinspect.native.reader as reader

    tree = ast.parse(Path(reader.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {
        name
        for name in imported
        if name and name.startswith(("hatinspect.importers", "hatinspect.torch_io"))
    }
    assert not {name for name in imported if name in ("torch", "hatinspect.checkpoints")}
