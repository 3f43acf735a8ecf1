"""Headless Chromium (Debian's package) for the report tests: the DOM after loading, the
console messages, and a screenshot, with networking disabled. Nothing is downloaded."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    # no network: every host unresolvable, every connection through a dead proxy
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=socks5://127.0.0.1:9",
    # console messages go to stderr as `INFO:CONSOLE:<line>] "<message>", source: ...`
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE = re.compile(r":CONSOLE:\d+\] (.*)")


@dataclass(frozen=True)
class Page:
    dom: str
    console: list[str]  # every console message: errors, CSP violations, failed loads

    @property
    def title(self) -> str:
        return re.search(r"<title>(.*?)</title>", self.dom, re.S)[1]


def load(path: Path, *action: str, window=(1200, 5000)) -> tuple[str, list[str]]:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}",
                *action,
                path.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, CONSOLE.findall(done.stderr)


def open_page(path: Path) -> Page:
    dom, console = load(path, "--dump-dom")
    return Page(dom, console)


def screenshot(path: Path, png: Path, window=(1200, 5000)):
    """The page as an (height, width, 3) float array in [0, 1]."""
    from matplotlib.image import imread

    _, console = load(path, f"--screenshot={png}", window=window)
    return imread(png)[..., :3], console
