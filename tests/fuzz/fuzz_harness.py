"""Runs fuzz cases in worker processes and blames hangs, crashes and escapes on cases.

Each worker handles many cases in turn (starting torch once), under an address-space
limit; the parent gives every case a wall-clock budget. A worker that overruns it is
killed and the case recorded as a hang; a worker that dies mid-case records a crash;
either way a fresh worker carries on from the next case.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("fuzz_worker.py")
REPO = Path(__file__).resolve().parents[2]
START_BUDGET = 120.0  # seconds for a fresh worker to import torch and begin


@dataclass(frozen=True)
class Finding:
    case: str
    what: str

    def __str__(self) -> str:
        return f"{self.case}: {self.what}"


@dataclass
class Outcome:
    loaded: int = 0
    refused: int = 0
    findings: list[Finding] | None = None


def write_cases(folder: Path, cases, companions: dict | None = None) -> list[Path]:
    """The cases' files; beside a case whose name ends with a suffix of ``companions``,
    that suffix's files (other suffix -> bytes) under the case's own prefix."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in cases:
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
        for suffix, files in (companions or {}).items():
            if name.endswith(suffix):
                for other, more in files.items():
                    (folder / (name[: -len(suffix)] + other)).write_bytes(more)
    return paths


def run_cases(
    paths: list[Path], workers: int = 2, case_timeout: float = 20.0, memory_mb: int = 1024
) -> Outcome:
    outcome = Outcome(findings=[])
    lock = threading.Lock()
    shares = [paths[i::workers] for i in range(workers)]
    threads = [
        threading.Thread(target=_run_share, args=(share, outcome, lock, case_timeout, memory_mb, n))
        for n, share in enumerate(shares)
        if share
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.findings.sort(key=lambda f: f.case)
    return outcome


def _run_share(paths, outcome: Outcome, lock, case_timeout: float, memory_mb: int, n: int):
    manifest = paths[0].parent / f".manifest-{n}-{os.getpid()}"
    manifest.write_text("\n".join(map(str, paths)) + "\n")
    start = 0
    while start < len(paths):
        start = _one_worker(manifest, paths, start, outcome, lock, case_timeout, memory_mb)
    manifest.unlink()


def _one_worker(manifest, paths, start, outcome, lock, case_timeout, memory_mb) -> int:
    """Runs a worker from case ``start``; returns where the next worker begins."""
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(manifest), str(start), str(memory_mb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    current, deadline, buffer = None, time.monotonic() + START_BUDGET, b""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(timeout=remaining):
                if time.monotonic() < deadline:
                    continue
                _kill(process)
                if current is None:
                    raise RuntimeError("fuzz worker did not start")
                _record(outcome, lock, paths[current], f"hang: over {case_timeout:.0f} s")
                return current + 1
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:  # the worker died
                code = process.wait()
                if current is None:
                    if start >= len(paths):
                        return start
                    raise RuntimeError(f"fuzz worker exited with {code} before a case")
                reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
                _record(outcome, lock, paths[current], f"crash: {reason}")
                return current + 1
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                kind, _, rest = line.decode().partition(" ")
                if kind == "S":
                    current, deadline = int(rest), time.monotonic() + case_timeout
                elif kind == "R":
                    result = json.loads(rest)
                    _count(outcome, lock, paths[current], result)
                    if current == len(paths) - 1:
                        process.wait()
                        return len(paths)
                    current, deadline = None, time.monotonic() + case_timeout
    finally:
        selector.close()
        if process.poll() is None:
            _kill(process)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _count(outcome: Outcome, lock, path: Path, result: dict) -> None:
    with lock:
        if result["status"] == "loaded":
            outcome.loaded += 1
        else:
            outcome.refused += 1
        if result["finding"]:
            outcome.findings.append(Finding(path.name, result["finding"]))


def _record(outcome: Outcome, lock, path: Path, what: str) -> None:
    with lock:
        outcome.findings.append(Finding(path.name, what))
