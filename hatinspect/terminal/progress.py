"""Progress bars on stderr, drawn by rich for the work `model.progress` reports: bytes
with their rate and the time left, layers and files counted. Drawing starts only once the
work has lasted `DELAY` seconds, so that quick commands draw nothing (a delay of 0 draws
at once). `below` draws them on a line of their own under another program's bar that
holds the cursor's line (Lightning's, on stdout), and gives that line back."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from hatinspect.model.progress import reporting

DELAY = 0.5  # seconds of work before a bar is drawn
DELAY_ENV = "HATINSPECT_PROGRESS_AFTER"  # another delay, in seconds (0: at once)


class _Amount(ProgressColumn):
    """``12.3/40.0 MB 8.1 MB/s`` for bytes, ``3/12 layers`` for things counted."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()
        self._rate = TransferSpeedColumn()

    def render(self, task) -> Text:
        unit = task.fields.get("unit", "")
        if unit == "bytes":
            return Text.assemble(self._bytes.render(task), " ", self._rate.render(task))
        total = "?" if task.total is None else f"{task.total:.0f}"
        return Text(f"{task.completed:.0f}/{total} {unit}", style="progress.download")


class Bars:
    """A `model.progress.Reporter` drawing one bar per piece of work on `console`."""

    def __init__(
        self, console: Console, delay: float = DELAY, transient: bool = True, below: bool = False
    ) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            _Amount(),
            TimeRemainingColumn(),
            console=console,
            transient=transient,
            redirect_stdout=False,  # the output is stdout's own, never drawn among the bars
            redirect_stderr=False,
        )
        self._delay = delay
        self._timer = threading.Timer(delay, self._show)
        self._timer.daemon = True
        self._lock = threading.Lock()
        self._transient, self._below = transient, below and console.is_terminal
        self._shown = self._closed = False

    def start(self, description: str, total: int | None, unit: str) -> TaskID:
        handle = self._progress.add_task(description, total=total, unit=unit)
        if self._delay == 0:
            self._show()  # not left to a timer that quick work could outrun
        elif not self._timer.is_alive() and not self._shown and not self._closed:
            self._timer.start()
        return handle

    def advance(self, handle: TaskID, amount: int) -> None:
        self._progress.advance(handle, amount)

    def finish(self, handle: TaskID) -> None:
        for task in self._progress.tasks:  # work of unknown length: as long as what was done
            if task.id == handle and task.total is None:
                self._progress.update(handle, total=task.completed)
        if self._transient:  # a finished bar goes; else it stays, to be read at the end
            self._progress.remove_task(handle)

    def _show(self) -> None:
        with self._lock:
            if not self._closed and not self._shown:
                if self._below:
                    self._progress.console.file.write("\n")
                self._progress.start()
                self._shown = True

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._shown:
                self._progress.stop()
                if self._below and self._transient:  # the cursor back on the other bar's line
                    self._progress.console.file.write("\x1b[1A")
                    self._progress.console.file.flush()


def delay() -> float:
    try:
        return max(0.0, float(os.environ.get(DELAY_ENV, DELAY)))
    except ValueError:
        return DELAY


@contextmanager
def bars(
    console: Console | None = None, transient: bool = True, below: bool = False
) -> Iterator[Bars]:
    """Progress of the work inside the block drawn on `console` (stderr by default);
    `transient`: the bars are wiped once done (else the last state is left); `below`: under
    the line the cursor is on, which is left as it was."""
    shown = Bars(console or Console(file=sys.stderr), delay(), transient, below)
    try:
        with reporting(shown):
            yield shown
    finally:
        shown.close()
