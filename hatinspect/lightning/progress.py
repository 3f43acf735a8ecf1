"""The progress of the callbacks' writes: drawn on stderr by `terminal.progress`'s bars
while a hook writes, on global rank zero only, and stopped before the hook returns, so
that Lightning's own bar (TQDM or rich, on stdout) is drawn between epochs as before.

``progress``: None draws the bars when stderr is a terminal (where Lightning draws its
own), False never, True always: on a pipe or a file, the bars' last state is then
written once the write is done, a plain line without the terminal's codes."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager

from hatinspect.model.progress import SILENT, reporting


def writes_shown(progress: bool | None, trainer) -> AbstractContextManager:
    """The block's writes reported as `progress` asks (see the module), silent elsewhere:
    never in the reporter of whoever called ``fit`` (``train-demo`` draws its own bars)."""
    terminal = sys.stderr.isatty()
    if not trainer.is_global_zero or not (terminal if progress is None else progress):
        return reporting(SILENT)
    from hatinspect.terminal.progress import bars

    # Lightning's bar holds the cursor's line of the terminal: ours go on the line below
    below = trainer.progress_bar_callback is not None and sys.stdout.isatty()
    return bars(transient=terminal, below=below)
