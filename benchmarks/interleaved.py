"""Timing two or more sides in alternation, so that the load of a shared machine falls on
all of them alike: pair after pair, each side once, the order turned round every pair.

Commands run under GNU time, whose ``%M`` is the command's own peak RSS (a Python parent's
``ru_maxrss`` would include pages shared before exec). Functions run in this process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support package

TIME = "/usr/bin/time"


def hatinspect(*args: str) -> list[str]:
    """The command line of `hatinspect ARGS` from this interpreter's environment: its own
    console script, never another installation found first on PATH."""
    script = Path(sys.executable).with_name("hatinspect")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "hatinspect", *args]


def compile_package() -> None:
    """Byte-compile the package, as installing a wheel does, so that fresh processes time
    the program rather than its compilation (an editable install with bytecode writing off,
    PYTHONDONTWRITEBYTECODE, would otherwise compile every module on every run)."""
    import compileall

    compileall.compile_dir(ROOT / "hatinspect", quiet=1)


compile_package()


def run_command(argv: list[str], cwd=None) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one run of ``argv``."""
    start = time.perf_counter()
    done = subprocess.run(
        [TIME, "-f", "%M", *argv], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wall = time.perf_counter() - start
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n" + "\n".join(lines[-5:]))
    return wall, int(lines[-1])


def interleave_commands(
    sides: Mapping[str, list[str]], pairs: int = 5, cwd=None
) -> dict[str, dict]:
    """Each side run ``pairs`` times, alternating; its wall times and largest peak RSS."""
    results = {name: {"times": [], "peak_kib": 0} for name in sides}
    names = list(sides)
    for index in range(pairs):
        for name in names if index % 2 == 0 else names[::-1]:
            wall, peak = run_command(sides[name], cwd)
            results[name]["times"].append(wall)
            results[name]["peak_kib"] = max(results[name]["peak_kib"], peak)
    return results


def interleave_calls(sides: Mapping[str, Callable[[], object]], pairs: int = 5) -> dict:
    """Like `interleave_commands` for functions called in this process (no RSS)."""
    results = {name: {"times": [], "peak_kib": None} for name in sides}
    names = list(sides)
    for index in range(pairs):
        for name in names if index % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            sides[name]()
            results[name]["times"].append(time.perf_counter() - start)
    return results


def report(title: str, results: Mapping[str, dict], unit: str = "ms") -> dict[str, dict]:
    """One line per side: median, minimum, peak RSS; then each side's ratio to the first.
    Returns each side's median and minimum in seconds and its peak RSS in MiB (or None)."""
    scale, digits = (1000, 1) if unit == "ms" else (1, 2)
    print(title)
    first = None
    for name, result in results.items():
        median, low = statistics.median(result["times"]), min(result["times"])
        first = first or median
        peak = result["peak_kib"]
        rss = f"  peak RSS {peak / 1024:7.1f} MiB" if peak is not None else ""
        print(
            f"  {name:<42} median {median * scale:9.{digits}f} {unit}"
            f"  min {low * scale:9.{digits}f} {unit}"
            f"{rss}  ({median / first:5.2f}x the first)"
        )
    return {
        name: {
            "median": statistics.median(result["times"]),
            "min": min(result["times"]),
            "peak_mib": None if result["peak_kib"] is None else result["peak_kib"] / 1024,
        }
        for name, result in results.items()
    }


def free_disk_gib(folder: Path) -> float:
    import shutil

    return shutil.disk_usage(folder).free / 2**30
