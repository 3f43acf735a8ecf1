"""`terminal.progress`: rich bars that wait their delay before drawing anything, and the
API's ``progress=True``, which draws them on stderr (never by default)."""

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

import hatinspect
from hatinspect.model.progress import track, writing
from hatinspect.terminal.progress import bars

RUN = Path(__file__).resolve().parents[2] / "examples" / "hat-toy"


def terminal() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, force_terminal=True, width=100), stream


def test_work_shorter_than_the_delay_draws_nothing(monkeypatch):
    monkeypatch.delenv("HATINSPECT_PROGRESS_AFTER", raising=False)
    console, stream = terminal()
    with bars(console):
        assert sum(track(range(1000), "quick", unit="layers")) == 499500
    assert stream.getvalue() == ""


def test_work_longer_than_the_delay_is_drawn(monkeypatch):
    monkeypatch.setenv("HATINSPECT_PROGRESS_AFTER", "0.05")
    console, stream = terminal()
    with bars(console, transient=False):
        for _ in track(range(3), "slow", unit="files"):
            time.sleep(0.1)
    assert "slow" in stream.getvalue() and "3/3 files" in stream.getvalue()


def test_bytes_are_shown_with_their_rate(monkeypatch):
    monkeypatch.setenv("HATINSPECT_PROGRESS_AFTER", "0")
    console, stream = terminal()
    with bars(console, transient=False):
        for _ in track([1000, 1000], "audit", unit="bytes", size=int):
            time.sleep(0.05)
    assert "2.0/2.0 kB" in stream.getvalue() and "/s" in stream.getvalue()


@pytest.mark.parametrize("name", ["report", "compare"])
def test_the_api_prints_nothing_unless_asked(capfd, monkeypatch, name):
    monkeypatch.setenv("HATINSPECT_PROGRESS_AFTER", "0")
    getattr(hatinspect, name)(RUN)
    assert capfd.readouterr() == ("", "")
    getattr(hatinspect, name)(RUN, progress=True)
    out, err = capfd.readouterr()
    assert out == "" and "5/5 files" in err


def test_audit_and_overlap_show_progress_when_asked(capfd, monkeypatch):
    monkeypatch.setenv("HATINSPECT_PROGRESS_AFTER", "0")
    hatinspect.audit(RUN / "after-task-1.safetensors", RUN / "after-task-5.safetensors")
    hatinspect.overlap(RUN / "after-task-5.safetensors")
    assert capfd.readouterr() == ("", "")
    hatinspect.audit(
        RUN / "after-task-1.safetensors", RUN / "after-task-5.safetensors", progress=True
    )
    hatinspect.overlap(RUN / "after-task-5.safetensors", progress=True)
    err = capfd.readouterr().err
    assert "audit" in err and "kB" in err
    assert "5/5 tasks" in err


def test_a_delay_of_0_draws_even_the_quickest_work(monkeypatch):
    monkeypatch.setenv("HATINSPECT_PROGRESS_AFTER", "0")
    console, stream = terminal()
    with bars(console):
        assert list(track(["a"], "instant", unit="files")) == ["a"]
    assert "instant" in stream.getvalue()


def test_below_draws_on_a_line_of_its_own_and_gives_the_cursor_back(monkeypatch):
    monkeypatch.setenv("HATINSPECT_PROGRESS_AFTER", "0")
    console, stream = terminal()
    stream.write("Epoch 1/1 ━━━━ 2/2")  # another bar holds the cursor's line
    with bars(console, below=True):
        list(track(["a"], "writing a", unit="files"))
    drawn = stream.getvalue()
    assert drawn.startswith("Epoch 1/1 ━━━━ 2/2\n")  # that line left whole
    assert "writing a" in drawn
    assert drawn.endswith("\x1b[1A")  # the bars wiped, the cursor back up on it


def test_below_off_a_terminal_writes_no_cursor_moves(monkeypatch):
    monkeypatch.setenv("HATINSPECT_PROGRESS_AFTER", "0")
    stream = io.StringIO()
    with bars(Console(file=stream, width=100), transient=False, below=True):
        list(track(["a"], "writing a", unit="files"))
    assert stream.getvalue().startswith("writing a") and "\x1b" not in stream.getvalue()


def test_work_of_unknown_length_is_left_as_long_as_what_was_done(monkeypatch, tmp_path):
    monkeypatch.setenv("HATINSPECT_PROGRESS_AFTER", "0")
    console, stream = terminal()
    path = tmp_path / "out.bin"
    with bars(console, transient=False), writing(path, "writing out.bin"):
        path.write_bytes(b"x" * 2000)
    assert "2.0/2.0 kB" in stream.getvalue()
