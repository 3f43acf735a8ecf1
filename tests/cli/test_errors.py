"""Every way a command can fail: one stderr line with a hint, and the right exit code.

Exit 1 is bad data or a failed check; exit 2 a usage error (click prints its own usage).
"""

from pathlib import Path

import pytest
from support.cli_runs import one_error_line, run, write_examples

from hatinspect.model.errors import CheckpointError


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    (tmp_path / "notes.safetensors").write_text("{'weights': 'elsewhere'}\n")
    (tmp_path / "taken.png").write_bytes(b"keep me")


COMMANDS_ON_ONE_FILE = [
    ["masks"],
    ["capacity"],
    ["measure", "--layer", "fc/0"],
    ["overlap"],
    ["info"],
]


@pytest.mark.parametrize("command", COMMANDS_ON_ONE_FILE, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missing.safetensors", "no such file"),
        ("notes.txt", "not a checkpoint (it starts with text)"),
        ("notes.safetensors", "not a checkpoint (it starts with text)"),
        (".", "is a directory"),
    ],
)
def test_unreadable_checkpoints_exit_1(command, path, message):
    result = run(command[0], path, *command[1:])
    assert result.exit_code == 1
    assert result.stdout == ""
    line = one_error_line(result, message)
    assert "HATINSPECT_DEBUG" not in line  # an expected error: no traceback to offer


def test_debug_variable_shows_the_exception():
    result = run("masks", "missing.safetensors", HATINSPECT_DEBUG="1")
    assert isinstance(result.exception, CheckpointError)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["masks", "net.safetensors", "-t", "3"], ["no task 3", "its tasks are 1, 2, 4"]),
        (["overlap", "net.safetensors", "-t", "1", "-t", "9"], ["no task 9"]),
        (
            ["masks", "net.safetensors", "-l", "conv*"],
            ["'conv*' matches no layer", "fc/0, fc/1, fc/2"],
        ),
        (["overlap", "net.safetensors", "-x", "head"], ["'head' matches no layer"]),
        (["masks", "net.safetensors", "-x", "*"], ["leave no layer"]),
        (["measure", "net.safetensors", "-l", "fc1"], ["no layer 'fc1'", "did you mean 'fc/1'"]),
        (["measure", "net.safetensors", "-l", "fc/0", "--of", "task:3"], ["no task 3"]),
        (
            ["masks", "net.safetensors", "--heatmap", "taken.png"],
            ["taken.png already exists", "--force"],
        ),
        (["audit", "net.safetensors", "conv.safetensors"], ["has no layer fc/0"]),
        (["audit", "net.safetensors", "missing.safetensors"], ["no such file"]),
        (
            ["capacity", "net.safetensors", "--fail-above", "0.5"],
            ["param usage 84.51% is above --fail-above 50.00%", "--by-task"],
        ),
        (
            ["masks", "net.safetensors", "--heatmap", "no/such/folder/m.png"],
            ["folder no/such/folder does not exist"],
        ),
    ],
)
def test_bad_data_and_failed_checks_exit_1(args, fragments):
    result = run(*args)
    assert result.exit_code == 1, result.stdout + result.stderr
    one_error_line(result, *fragments)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["masks", "a\nb\x1b[31m.safetensors"], "a\\nb\\x1b[31m.safetensors: no such file"),
        (["capacity", "run\nx"], "run\\nx: is a directory with no after-task"),
        (["masks", "net.safetensors", "--heatmap", "new\nfolder/m.png"], "new\\nfolder does not"),
    ],
    ids=["checkpoint", "run folder", "output"],
)
def test_control_characters_in_paths_stay_escaped_on_one_line(args, fragment):
    Path("run\nx").mkdir()
    result = run(*args)
    assert result.exit_code == 1, result.stdout + result.stderr
    one_error_line(result, fragment)


def test_fail_above_still_prints_the_report():
    result = run("capacity", "net.safetensors", "--fail-above", "0.8", "--format", "json")
    assert result.exit_code == 1 and '"param_usage"' in result.stdout
    assert run("capacity", "net.safetensors", "--fail-above", "0.9").exit_code == 0


def test_an_existing_file_is_left_alone():
    run("masks", "net.safetensors", "--heatmap", "taken.png")
    assert open("taken.png", "rb").read() == b"keep me"


# fragments that every supported typer version prints: its own range and type errors are
# worded differently from one version to the next, so those name only the option
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["masks", "net.safetensors", "--format", "xml"], "'xml' is not one of"),
        (["capacity", "net.safetensors", "--source", "keras"], "'keras' is not one of"),
        (
            ["masks", "net.safetensors", "--heatmap", "m.jpg"],
            "the extension must be one of .png, .svg, .pdf",
        ),
        (["masks", "net.safetensors", "--heatmap", "m"], "the extension must be one of"),
        (
            ["overlap", "net.safetensors", "--heatmap", "o.png", "--dpi", "5"],
            "'--dpi'",
        ),
        (
            ["overlap", "net.safetensors", "--heatmap", "o.png", "--cmap", "rainbowish"],
            "unknown colormap 'rainbowish'",
        ),
        (
            ["masks", "net.safetensors", "--show", "--format", "json"],
            "--show draws in the terminal",
        ),
        (
            ["masks", "net.safetensors", "-t", "one"],
            "'--task' / '-t'",
        ),
        (
            ["capacity", "net.safetensors", "--fail-above", "1.5"],
            "'--fail-above'",
        ),
        (["capacity", "net.safetensors", "--plot", "p.gif"], "the extension must be one of"),
        (["measure", "net.safetensors"], "Missing option '--layer'"),
        (
            ["measure", "net.safetensors", "-l", "fc/0", "--of", "average"],
            "'average' is not one of cumulative",
        ),
        (
            ["measure", "net.safetensors", "-l", "fc/0", "--aggregation", "mean"],
            "'mean' is not one of",
        ),
        (
            ["measure", "net.safetensors", "-l", "fc/0", "--save", "m.npz"],
            "must be one of .safetensors",
        ),
        (["convert", "net.safetensors", "out.pt"], "must be one of .safetensors"),
        (["audit", "net.safetensors"], "Missing argument"),
        (["masks"], "Missing argument"),
        (["masks", "net.safetensors", "--frobnicate"], "No such option"),
    ],
)
def test_usage_errors_exit_2(args, fragment):
    result = run(*args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert fragment in " ".join(result.stderr.replace("│", " ").split())
    assert result.stdout == ""


def test_notes_go_to_stderr(tmp_path):
    from support.inspect_checkpoints import make_checkpoint, write_native

    write_native(
        tmp_path / "last.safetensors", make_checkpoint(), notes=["only the last task's mask"]
    )
    result = run("capacity", "last.safetensors", "--format", "json")
    assert result.exit_code == 0
    assert result.stderr == "note: only the last task's mask\n"
    assert result.stdout.startswith("{")
