"""Progress on stderr, --quiet and -v on every command, Ctrl-C, and a stdout closed early.

Bars are looked for in a pseudo-terminal on stderr (stdout a file); an interrupt is sent
to a command held in the middle of writing its output (a test hook in the child process
slows the writing down), and the folder it writes to is listed before and after."""

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.inspect_checkpoints import layer, make_checkpoint, random_masks, write_native
from support.terminal import read_terminal

from hatinspect.cli.app import app

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")
BAR = "━"
MLP = (layer("fc/0", (8, 4)), layer("fc/1", (6, 8), "fc/0"), layer("fc/2", (3, 6), "fc/1"))
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hat-toy-state-dict.pt"
# Run in the child: the folder's fsync made to wait (the temporary file is then written)
# until the test interrupts it; HOLD_AT names the file that says the child got there.
HOLD = """
import os, sys, time
from pathlib import Path
from hatinspect.native import atomic
real = atomic.syncing
def held(path):
    Path(os.environ["HOLD_AT"]).write_text(path)
    time.sleep(60)
    return real(path)
atomic.syncing = held
from hatinspect.cli.app import main
sys.argv[0] = "hatinspect"
main()
"""


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", PYTHONPATH=os.pathsep.join(sys.path), **extra)
    return env


def stderr_in_terminal(*args, cwd: Path, **env) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `hatinspect ARGS` whose stderr is a terminal."""
    leader, follower = pty.openpty()
    out = cwd / ".stdout"
    with open(out, "wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "hatinspect", *map(str, args)],
            stdout=stdout, stderr=follower, stdin=follower, cwd=cwd, env=environment(**env),
        )  # fmt: skip
        os.close(follower)
        stderr = read_terminal(leader)
        code = process.wait(timeout=60)
    text = out.read_text()
    out.unlink()
    return code, text, stderr


def piped(*args, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hatinspect", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=environment(**env), timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run of three after-task files."""
    folder = tmp_path_factory.mktemp("progress") / "run"
    folder.mkdir()
    masks = random_masks(MLP, (1, 2, 3), seed=3)
    for t in (1, 2, 3):
        stored = {k: masks[k] for k in range(1, t + 1)}
        write_native(folder / f"after-task-{t}.safetensors", make_checkpoint(MLP, stored))
    return folder


# --- progress bars ---------------------------------------------------------------------


def test_a_bar_is_drawn_on_a_terminal_for_work_that_lasts(run_folder):
    # the delay set to 0: the work counts as long from its start
    code, _, stderr = stderr_in_terminal(
        "report", "run", "-o", "r.json", "--force", cwd=run_folder.parent,
        HATINSPECT_PROGRESS_AFTER="0",
    )  # fmt: skip
    assert code == 0, stderr
    assert BAR in stderr
    assert "reading run" in ANSI.sub("", stderr)


def test_quick_work_draws_no_bar(run_folder):
    code, out, stderr = stderr_in_terminal("masks", "run/after-task-3.safetensors",
                                           cwd=run_folder.parent)  # fmt: skip
    assert code == 0 and "Masks of" in out
    assert stderr == ""


@pytest.mark.torch
def test_a_pytorch_file_shows_its_bytes_loading(tmp_path):
    code, _, stderr = stderr_in_terminal(
        "convert", EXAMPLE, "t5.safetensors", "--task-id", "5", cwd=tmp_path,
        HATINSPECT_PROGRESS_AFTER="0",
    )  # fmt: skip
    assert code == 0, stderr
    text = ANSI.sub("", stderr)
    assert f"loading {EXAMPLE.name}" in text and "kB" in text


def test_no_bar_on_a_pipe(run_folder):
    done = piped("report", "run", "-o", "p.json", "--force", cwd=run_folder.parent,
                 HATINSPECT_PROGRESS_AFTER="0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert BAR not in done.stderr and "\x1b" not in done.stderr
    assert done.stderr.startswith("wrote p.json: ")


def test_quiet_draws_no_bar_and_says_nothing(run_folder):
    code, _, stderr = stderr_in_terminal(
        "report", "run", "-o", "q.json", "--force", "--quiet", cwd=run_folder.parent,
        HATINSPECT_PROGRESS_AFTER="0",
    )  # fmt: skip
    assert code == 0
    assert stderr == ""
    assert json.loads((run_folder.parent / "q.json").read_text())["runs"]


def test_no_bar_in_json_or_stdout(run_folder):
    code, out, stderr = stderr_in_terminal(
        "compare", "run", "-f", "json", cwd=run_folder.parent, HATINSPECT_PROGRESS_AFTER="0"
    )
    assert code == 0, stderr
    assert BAR in stderr  # drawn, but on stderr only
    assert json.loads(out)["runs"][0]["name"] == "run"


# --- --quiet and -v ----------------------------------------------------------------------


def test_every_command_has_quiet_and_verbose():
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        opts = {opt for param in command.params for opt in param.opts}
        assert {"--quiet", "-q", "--verbose", "-v"} <= opts, name


@pytest.fixture
def noted(tmp_path) -> Path:
    return write_native(tmp_path / "noted.safetensors", make_checkpoint(), notes=("a caveat",))


def test_quiet_drops_notes_and_json_keeps_them(noted):
    loud = piped("masks", noted.name, cwd=noted.parent)
    assert loud.returncode == 0 and "note: a caveat" in loud.stderr
    quiet = piped("masks", noted.name, "--quiet", cwd=noted.parent)
    assert quiet.returncode == 0 and quiet.stderr == "" and "Masks of" in quiet.stdout
    as_json = piped("masks", noted.name, "-q", "-f", "json", cwd=noted.parent)
    assert as_json.stderr == ""
    assert "a caveat" in json.loads(as_json.stdout)["notes"]


def test_quiet_still_says_errors(tmp_path):
    done = piped("masks", "missing.safetensors", "--quiet", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")


def test_verbose_says_what_read_the_file_and_its_size(noted):
    done = piped("masks", noted.name, "-v", cwd=noted.parent)
    assert done.returncode == 0
    details = [line for line in done.stderr.splitlines() if line.startswith("detail: ")]
    size = noted.stat().st_size
    assert details[0].startswith(f"detail: {noted.name}: {size:,} bytes, read by the native reader")
    assert "3 layers" in details[0]
    assert re.fullmatch(r"detail: masks took \d+\.\d\d s", details[-1])
    assert "detail:" not in piped("masks", noted.name, cwd=noted.parent).stderr


@pytest.mark.torch
def test_verbose_convert_says_what_it_read_and_wrote(tmp_path):
    dst = tmp_path / "task5.safetensors"
    done = piped("convert", EXAMPLE, dst.name, "--task-id", "5", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith(f"detail: {EXAMPLE}")]
    assert f"{EXAMPLE.stat().st_size:,} bytes, read by the " in line
    assert f"{dst.name}: {dst.stat().st_size:,} bytes, written and checked in " in line


def test_quiet_and_verbose_together_is_a_usage_error(noted):
    done = piped("masks", noted.name, "-q", "-v", cwd=noted.parent)
    assert done.returncode == 2 and done.stderr.startswith("error: --quiet and --verbose")


# --- a stdout closed early -----------------------------------------------------------------


@pytest.fixture(scope="module")
def many_layers(tmp_path_factory) -> Path:
    """A file whose every view is longer than a pipe holds (64 KiB)."""
    layers = [layer("fc/0", (4, 3))]
    layers += [layer(f"fc/{i}", (4, 4), f"fc/{i - 1}") for i in range(1, 1200)]
    path = tmp_path_factory.mktemp("long") / "long.safetensors"
    return write_native(path, make_checkpoint(tuple(layers), random_masks(layers, (1, 2))))


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_head_takes_one_line_and_the_command_exits_0(many_layers, fmt):
    line = f"{sys.executable} -m hatinspect masks {many_layers} -f {fmt} | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        capture_output=True, text=True, env=environment(), timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.count("\n") == 1


# --- Ctrl-C ------------------------------------------------------------------------------


def interrupted(args: list, cwd: Path) -> tuple[int, str]:
    """Run `hatinspect ARGS` in a terminal, held while it writes; Ctrl-C (SIGINT) once it
    is there. (exit code, stderr without the terminal's codes)."""
    hold_at = cwd.parent / f"{cwd.name}.held"
    hold_at.unlink(missing_ok=True)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, *map(str, args)],
        stdout=follower, stderr=subprocess.PIPE, stdin=follower, cwd=cwd,
        env=environment(HOLD_AT=str(hold_at), HATINSPECT_PROGRESS_AFTER="100"),
    )  # fmt: skip
    os.close(follower)
    deadline = time.monotonic() + 30
    while not hold_at.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the command never reached its writing"
        time.sleep(0.02)
    assert Path(hold_at.read_text()).exists()  # the temporary file, half-way
    process.send_signal(signal.SIGINT)
    stderr = process.stderr.read().decode()
    code = process.wait(timeout=30)
    read_terminal(leader)
    return code, ANSI.sub("", stderr)


def listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize(
    "output",
    ["report.md", "report.html", "masks.png"],
)
def test_ctrl_c_exits_130_in_one_line_leaving_the_folder_as_it_was(run_folder, tmp_path, output):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("there before")
    before = listing(out)
    if output.startswith("report"):
        args = ["report", run_folder, "-o", out / output]
    else:
        args = ["masks", run_folder / "after-task-3.safetensors", "--heatmap", out / output]
    code, stderr = interrupted(args, cwd=tmp_path)
    assert code == 130
    assert stderr.splitlines() == ["error: interrupted"]
    assert listing(out) == before


@pytest.mark.torch
def test_ctrl_c_in_convert_leaves_no_partial_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = listing(out)
    args = ["convert", EXAMPLE, out / "task5.safetensors", "--task-id", "5"]
    code, stderr = interrupted(args, cwd=tmp_path)
    assert code == 130
    assert stderr.splitlines() == ["error: interrupted"]
    assert listing(out) == before


def test_a_command_on_a_pipe_never_imports_rich_progress(run_folder):
    script = (
        "import sys\n"
        "from hatinspect.cli.app import app\n"
        "app(['capacity', sys.argv[1]], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m in ('rich.progress', 'rich.live')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(run_folder)],
        capture_output=True, text=True, env=environment(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_ctrl_c_while_the_command_line_loads_is_one_line(monkeypatch, capsys):
    from hatinspect.cli.entry import main as entry

    class Interrupting:  # the import of the app stopped by Ctrl-C
        def find_spec(self, name, path=None, target=None):
            if name == "hatinspect.cli.app":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "hatinspect.cli.app")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as stopped:
        entry()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "error: interrupted\n"
