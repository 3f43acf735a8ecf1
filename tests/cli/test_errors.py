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
        (["audit", "net.safetensors", "conv.safetensors"], ["has no layer fc/0"]),
        (["audit", "net.safetensors", "missing.safetensors"], ["no such file"]),
        (
            ["capacity", "net.safetensors", "--fail-above", "0.5"],
            ["param usage 84.51% is above --fail-above 50.00%", "--by-task"],
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
    assert result.exit_code in (1, 2), result.stdout + result.stderr  # an output: a usage error
    one_error_line(result, fragment)


ON_ONE_CHECKPOINT = [c for c in COMMANDS_ON_ONE_FILE if c[0] != "capacity"]  # it reads runs


@pytest.mark.parametrize("command", ON_ONE_CHECKPOINT, ids=lambda c: c[0])
def test_a_folder_where_one_checkpoint_is_read_says_which_file_to_pick(command):
    Path("run").mkdir()
    for t in (2, 10):  # numbered, not sorted by name: after-task-10 is the last
        Path(f"run/after-task-{t}.safetensors").hardlink_to("net.safetensors")
    result = run(command[0], "run", *command[1:])
    assert result.exit_code == 1
    one_error_line(result, "run is a run folder", "pick one, e.g. run/after-task-10.safetensors")
    Path("empty").mkdir()
    result = run(command[0], "empty", *command[1:])
    assert result.exit_code == 1
    one_error_line(result, "empty is a folder with no checkpoint in it")


# an output that cannot be written where asked: a usage error (exit 2) naming what the
# user typed and what to do, before any work is done
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["masks", "net.safetensors", "--heatmap", "taken.png"],
            [
                "error: taken.png already exists",
                "hint: pass --force to overwrite it, or choose another --heatmap",
            ],
        ),
        (
            ["masks", "net.safetensors", "--heatmap", "no/such/folder/m.png"],
            [
                "cannot write no/such/folder/m.png: folder no/such/folder does not exist",
                "choose another --heatmap",
            ],
        ),
        (
            ["report", "net.safetensors", "-o", "notes.txt/r.html"],
            [
                "cannot write notes.txt/r.html: notes.txt is a file, not a folder",
                "choose another --output",
            ],
        ),
        (
            ["capacity", "net.safetensors", "--plot", "taken.png"],
            ["taken.png already exists", "choose another --plot"],
        ),
        (
            ["convert", "net.safetensors", "net.safetensors"],
            ["net.safetensors is an input of this command", "write to another file"],
        ),
    ],
)
def test_outputs_that_cannot_be_written_are_usage_errors(args, fragments):
    result = run(*args)
    assert result.exit_code == 2, result.stdout + result.stderr
    one_error_line(result, *fragments)
    assert ".tmp" not in result.stderr


def test_fail_above_still_prints_the_report():
    result = run("capacity", "net.safetensors", "--fail-above", "0.8", "--format", "json")
    assert result.exit_code == 1 and '"param_usage"' in result.stdout
    assert run("capacity", "net.safetensors", "--fail-above", "0.9").exit_code == 0


def test_an_existing_file_is_left_alone():
    run("masks", "net.safetensors", "--heatmap", "taken.png")
    assert open("taken.png", "rb").read() == b"keep me"


# every usage error: one line in hatinspect's words, naming the option and what it accepts
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["masks", "net.safetensors", "--format", "xml"],
         "--format must be one of table, json, csv, not 'xml'"),
        (["capacity", "net.safetensors", "--source", "keras"],
         "--source must be one of hatinspect, original-hat, hat-cl, clarena, "
         "avalanche-packnet, original-packnet, piggyback, supsup, wsn, not 'keras'"),
        (["masks", "net.safetensors", "--heatmap", "m.jpg"],
         "--heatmap: m.jpg: the extension must be one of .png, .svg, .pdf"),
        (["masks", "net.safetensors", "--heatmap", "m"],
         "--heatmap: m: the extension must be one of .png, .svg, .pdf"),
        (["overlap", "net.safetensors", "--heatmap", "o.png", "--dpi", "5"],
         "--dpi must be a whole number from 20 to 1200, not '5'"),
        (["overlap", "net.safetensors", "--heatmap", "o.png", "--cmap", "rainbowish"],
         "--cmap: unknown colormap 'rainbowish'; try viridis, magma, Greys or Blues"),
        (["masks", "net.safetensors", "--show", "--format", "json"],
         "--show draws in the terminal; use it with --format table"),
        (["masks", "net.safetensors", "-t", "one"], "--task must be a whole number, not 'one'"),
        (["masks", "net.safetensors", "--width", "5"],
         "--width must be a whole number of at least 20, not '5'"),
        (["capacity", "net.safetensors", "--fail-above", "1.5"],
         "--fail-above must be a number from 0 to 1, not '1.5'"),
        (["audit", "net.safetensors", "net.safetensors", "--tolerance", "x"],
         "--tolerance must be a number of at least 0, not 'x'"),
        (["capacity", "net.safetensors", "--plot", "p.gif"],
         "--plot: p.gif: the extension must be one of .png, .svg, .pdf"),
        (["measure", "net.safetensors"], "--layer NAME is required"),
        (["measure", "net.safetensors", "-l", "fc/0", "--of", "average"],
         "--of: 'average' is not one of cumulative, summative, task:N, adjustment, "
         "importance, importance:N"),
        (["measure", "net.safetensors", "-l", "fc/0", "--aggregation", "mean"],
         "--aggregation must be one of min, max, not 'mean'"),
        (["measure", "net.safetensors", "-l", "fc/0", "--save", "m.npz"],
         "--save: m.npz: the extension must be one of .safetensors"),
        (["convert", "net.safetensors", "out.pt"],
         "DST: out.pt: the extension must be one of .safetensors"),
        (["audit", "net.safetensors"], "AFTER is required"),
        (["masks"], "CHECKPOINT is required"),
        (["report", "net.safetensors"], "--output FILE is required"),
        (["report", "net.safetensors", "-o", "r.pdf"],
         "--output: r.pdf: the extension must be one of .html, .md, .json"),
        (["masks", "net.safetensors", "--frobnicate"], "No such option: --frobnicate"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(args, line):
    result = run(*args)
    assert result.exit_code == 2, result.stdout + result.stderr
    hint = f"(hint: see hatinspect {args[0]} --help)"
    assert result.stderr.splitlines() == [f"error: {line} {hint}"]
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


def _typed_options():
    """(command, option, a bad value) for every option of every command that takes a
    number or one of some choices."""
    import typer.main

    from hatinspect.cli.app import app

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            described = getattr(param, "type_descriptor", None)
            if param.param_type_name != "option" or described is None or param.is_flag:
                continue
            annotation = described.annotation
            element = getattr(annotation, "__args__", (annotation,))[0]
            if described.choices is not None or element in (int, float):
                yield name, max(param.opts, key=len), "zzz"


ARGUMENTS = {
    "audit": ["net.safetensors"] * 2,
    "convert": ["a.pt", "b.safetensors"],
    "train-demo": [],
}


@pytest.mark.parametrize(("name", "option", "value"), list(_typed_options()))
def test_every_typed_option_refuses_in_our_words(name, option, value):
    result = run(name, *ARGUMENTS.get(name, ["net.safetensors"]), option, value)
    assert result.exit_code == 2, result.stderr
    line = one_error_line(result, option, "'zzz'")
    assert "Value error" not in line and "Input should" not in line and "valid" not in line
    assert " must be " in line or ": " in line


@pytest.mark.torch
def test_too_many_tasks_for_the_digits_are_worded_with_the_options_given():
    result = run("train-demo", "--dataset", "digits", "-n", "6", "--out", "demo")
    assert result.exit_code == 2
    line = one_error_line(
        result, "--tasks must be 1..5 with --dataset digits (10 classes, 2 a task), got 6"
    )
    assert "the number of tasks" not in line
    assert not Path("demo").exists()  # refused before anything is written
