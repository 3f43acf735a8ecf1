"""The Lightning callbacks' writes shown as progress bars on stderr: under a pseudo-terminal
during a real fit (Lightning's own bar on the same terminal), never on a pipe unless asked
(then as plain lines), never with ``progress=False``, never off global rank zero.

Each child process trains one tiny task once for each of the test's choices (the callbacks'
``progress`` and the bars' delay), a line on stderr between two fits, so that one start of
torch and Lightning checks them all."""

import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("lightning")

from support.terminal import read_terminal  # noqa: E402

from hatinspect.lightning.progress import writes_shown  # noqa: E402
from hatinspect.model import progress  # noqa: E402
from hatinspect.native.trajectory_file import read_trajectory  # noqa: E402
from hatinspect.terminal.progress import Bars  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")
BAR = "━"
SWITCH = "--- next fit ---"
CHILD = """
import sys
from pathlib import Path
import torch
from lightning.pytorch import Trainer
from support.lightning_modules import loader
from hatinspect.backbones import HATMaskMLP
from hatinspect.lightning import HATMaskCheckpoint, HATMaskTrajectory, HATModule

def fit(folder, progress):
    torch.manual_seed(0)
    module = HATModule(HATMaskMLP(4, [6, 5], 5, gate="sigmoid"), "hat", lr=0.1, s_max=400.0)
    module.start_task(1, 2)
    callbacks = [
        HATMaskCheckpoint(folder, progress=progress),
        HATMaskTrajectory(folder, progress=progress, log=False),
    ]
    trainer = Trainer(max_epochs=2, callbacks=callbacks, logger=False,
                      enable_model_summary=False,
                      accelerator="cpu", enable_progress_bar=True)
    trainer.fit(module, loader(n=16))

import os
switch, choices = sys.argv[2], sys.argv[3:]
for i, choice in enumerate(choices):
    progress, delay = choice.split(":")
    os.environ["HATINSPECT_PROGRESS_AFTER"] = delay
    if i:
        print(switch, file=sys.stderr, flush=True)
    fit(Path(sys.argv[1]) / str(i), {"none": None, "false": False, "true": True}[progress])
"""


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(
        TERM="xterm-256color",
        PYTHONPATH=os.pathsep.join(sys.path),
        PYTHONWARNINGS="ignore",
    )
    return env


def child(folder: Path, choices: tuple[str, ...]) -> list[str]:
    """The child's command line: each choice is ``<progress>:<the bars' delay in s>``."""
    return [sys.executable, "-c", CHILD, str(folder), SWITCH, *choices]


def in_terminal(folder: Path, *choices: str) -> str:
    """What the child wrote on its terminal (stdout and stderr both, as on a console)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        child(folder, choices),
        stdout=follower, stderr=follower, stdin=follower, env=environment(),
    )  # fmt: skip
    os.close(follower)
    text = read_terminal(leader)
    assert process.wait(timeout=120) == 0, text
    return text


def on_a_pipe(folder: Path, *choices: str) -> str:
    done = subprocess.run(
        child(folder, choices),
        capture_output=True, text=True, env=environment(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr


def written(folder: Path) -> None:
    """Both callbacks wrote their file, whole."""
    assert (folder / "after-task-1.safetensors").is_file()
    assert read_trajectory(folder / "trajectory-task-1.safetensors").points == (-1, 0, 1)


def test_a_terminal_shows_the_writes_unless_progress_is_false(tmp_path):
    # the delay 0: every write counts as long from its start; 0.5 s, Lightning's quick ones
    text = in_terminal(tmp_path, "false:0", "none:0", "none:0.5")
    quiet, shown, quick = text.split(SWITCH)
    for folder in ("0", "1", "2"):
        written(tmp_path / folder)
    # Lightning's own bar drew in both fits; the callbacks' only where not told False
    assert "Epoch 1" in ANSI.sub("", quiet)
    assert "after-task-1" not in quiet and "trajectory-task-1" not in quiet
    plain = ANSI.sub("", shown)
    assert BAR in shown
    assert "writing after-task-1.safetensors" in plain
    assert "checking after-task-1.safetensors" in plain  # the read-back, in bytes
    assert "writing trajectory-task-1.safetensors" in plain
    assert "kB" in plain
    # each bar goes on a line of its own below Lightning's, and gives the line back
    assert shown.count("\x1b[1A") >= 2
    # writes quicker than the delay draw nothing, as on the command line
    assert "Epoch 1" in ANSI.sub("", quick)
    assert "after-task-1" not in quick and "trajectory-task-1" not in quick


def test_a_pipe_shows_nothing_by_default_and_plain_lines_when_asked(tmp_path):
    stderr = on_a_pipe(tmp_path, "none:0", "true:0")
    unasked, asked = stderr.split(SWITCH)
    for folder in ("0", "1"):
        written(tmp_path / folder)
    assert BAR not in unasked and "after-task-1" not in unasked
    assert "\x1b" not in asked  # no terminal's codes: a log file reads it as it is
    size = (tmp_path / "1" / "after-task-1.safetensors").stat().st_size
    [line] = [line for line in asked.splitlines() if line.startswith("writing after-task-1")]
    assert BAR in line and f"{size / 1000:.1f}/{size / 1000:.1f} kB" in line
    [line] = [line for line in asked.splitlines() if line.startswith("checking after-task-1")]
    assert f"{size / 1000:.1f}/{size / 1000:.1f} kB" in line
    assert any(line.startswith("writing trajectory-task-1") for line in asked.splitlines())


@pytest.mark.parametrize("choice", [None, False, True])
def test_no_bars_off_global_rank_zero(monkeypatch, choice):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    trainer = SimpleNamespace(is_global_zero=False, progress_bar_callback=None)
    caller = progress.Silent()  # whoever called fit had a reporter of its own
    with progress.reporting(caller), writes_shown(choice, trainer):
        assert progress.reporter.get() is progress.SILENT


@pytest.mark.parametrize(
    ("choice", "terminal", "drawn"),
    [(None, True, True), (None, False, False), (False, True, False), (True, False, True)],
)
def test_progress_none_follows_the_terminal(monkeypatch, choice, terminal, drawn):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    trainer = SimpleNamespace(is_global_zero=True, progress_bar_callback=None)
    with writes_shown(choice, trainer):
        assert isinstance(progress.reporter.get(), Bars) is drawn


@pytest.mark.parametrize("engine", ["plain", "lightning"])
def test_train_demo_draws_its_own_bars_alone(tmp_path, engine):
    # its epochs' bars hold stderr: a write's bar there would scramble them
    leader, follower = pty.openpty()
    args = ["train-demo", "-n", "2", "-e", "1", "--engine", engine, "--record-every", "1"]
    with open(tmp_path / "stdout", "wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "hatinspect", *args, "-o", str(tmp_path / "run")],
            stdout=stdout, stderr=follower, stdin=follower,
            env=dict(environment(), HATINSPECT_PROGRESS_AFTER="0"),
        )  # fmt: skip
        os.close(follower)
        text = ANSI.sub("", read_terminal(leader))
        assert process.wait(timeout=120) == 0, text
    assert "task 2/2" in text and "trained 2 task(s)" in text
    assert "writing" not in text and "checking" not in text and "copying" not in text
    assert (tmp_path / "run" / "trajectory-task-2.safetensors").is_file()
