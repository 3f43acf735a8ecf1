"""README's figures beside fresh ones, so that a stale figure shows.

README wraps each figure it states in a marker naming the script that measures it:

    | start-up ... | <!-- bench:startup.capacity -->median 258 ms, 49 MiB<!-- /bench --> | ...

The name is ``SCRIPT.FIGURE``: ``benchmarks/bench_SCRIPT.py`` lists its figures in a
``README_FIGURES`` tuple and, at its end, hands `compare` the fresh text of each, worded as
README words it. `compare` prints README's text beside the fresh one; with ``--write-readme``
it puts the fresh text in place, and the script's ``SCRIPT.when`` marker gets the date, UTC
time, load average (one minute, at the script's start and at its end) and options of the run.
`tests/test_readme_figures.py` checks that markers and scripts agree.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = re.compile(r"<!-- bench:(?P<name>[\w.-]+) -->(?P<text>.*?)<!-- /bench -->", re.S)
WHEN = "when"
WRITE = "--write-readme"

_LOAD_AT_START = os.getloadavg()[0]  # this module is imported as a script starts


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(WRITE, action="store_true", help="put the fresh figures in README.md")


def readme_figures(text: str) -> dict[str, str]:
    """Each marker's name and the text it wraps."""
    return {match["name"]: match["text"] for match in MARKER.finditer(text)}


def when(now: datetime.datetime | None = None, argv: list[str] | None = None) -> str:
    """The date, UTC time and load average of this run, and the options it ran with, as
    README records them."""
    now = now or datetime.datetime.now(datetime.UTC)
    load = sorted((_LOAD_AT_START, os.getloadavg()[0]))
    options = [arg for arg in (sys.argv[1:] if argv is None else argv) if arg != WRITE]
    ran = f", `{' '.join(options)}`" if options else ""
    return f"{now:%Y-%m-%d %H:%M} UTC, load average {load[0]:.1f}–{load[1]:.1f}{ran}"


def replace_figures(text: str, fresh: Mapping[str, str]) -> str:
    """README's text with each marker named in `fresh` wrapping its fresh text instead."""

    def put(match: re.Match) -> str:
        name = match["name"]
        new = fresh.get(name, match["text"])
        return f"<!-- bench:{name} -->{new}<!-- /bench -->"

    return MARKER.sub(put, text)


def compare(
    script: str,
    figures: Mapping[str, str],
    write: bool = False,
    when_name: str = WHEN,
    options: bool = True,
) -> None:
    """Print README's figure beside the fresh one for each of `script`'s figures and its
    `when_name` marker (a script whose rows were measured at different times names one for
    each; one whose figures quote its command line leaves its `options` out of it); with
    `write`, put the fresh ones in README."""
    fresh = {f"{script}.{name}": value for name, value in figures.items()}
    fresh[f"{script}.{when_name}"] = when(argv=None if options else [])
    text = README.read_text(encoding="utf-8")
    stated = readme_figures(text)
    print(f"\nREADME's figures ({README.name}) beside this run's:")
    for name, value in fresh.items():
        print(f"  {name}\n    README: {stated.get(name, '(no marker)')}\n    now:    {value}")
    if write:
        README.write_text(replace_figures(text, fresh), encoding="utf-8")
        print(f"written to {README}")


def ms(seconds: float) -> str:
    """Milliseconds as README writes them: 0.6, 52.1, 143, 6,092."""
    value = seconds * 1000
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def secs(seconds: float) -> str:
    """Seconds as README writes them: 0.42, 2.64, 12.1."""
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def mib(value: float) -> str:
    return f"{value:,.0f}"


def times(ratio: float) -> str:
    """A ratio: 0.98×, 38.5×."""
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.1f}×"


def slashed(values, unit: str, form=ms) -> str:
    """``0.6 / 1.9 / 6.3 ms``: several figures of one kind."""
    return " / ".join(form(value) for value in values) + f" {unit}"
