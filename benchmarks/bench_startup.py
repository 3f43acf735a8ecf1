"""Start-up and whole commands: capacity on the shipped example against the import floor,
what Typer's pydantic costs, and info/masks/capacity/overlap on a 155-layer 52 GB file.

Sides, interleaved pair by pair (fresh processes):
- `python -c "import numpy, safetensors"`: the floor any inspection pays;
- `python -c "import numpy, safetensors, pydantic"`: the floor plus the pydantic that Typer
  (0.26 and later) imports to convert every non-flag option value of a command run;
- `typer_floor.py`: a one-command Typer app with `capacity`'s kinds of options that reads
  the header and prints a small rich table, the least any command of this stack pays;
- the commands; then the same four as library calls in this process, after a first call.
The 52 GB file has ResNet-152's 155 weighted layers with every width times 15, 10 tasks,
its weights in holes (sparse: no disk used).

    python benchmarks/bench_startup.py [--pairs 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import readme_figures as readme
from interleaved import hatinspect, interleave_commands, report
from readme_figures import mib, ms, slashed, times
from workloads import median_time

EXAMPLE = (
    Path(__file__).resolve().parent.parent / "examples" / "hat-toy" / "after-task-5.safetensors"
)
FLOOR = [sys.executable, "-c", "import numpy, safetensors"]
PYDANTIC = [sys.executable, "-c", "import numpy, safetensors, pydantic"]
TYPER_FLOOR = [sys.executable, str(Path(__file__).resolve().parent / "typer_floor.py")]
COMMANDS = ("info", "masks", "capacity", "overlap")
README_FIGURES = ("capacity", "floors", "commands", "commands-floor", "in-process")


def wide_resnet152(factor: int = 15):
    """ResNet-152's weighted layers (as tests/support/inspect_checkpoints.py lays them out) with
    every channel count times `factor` (the input's 3 channels kept)."""
    from dataclasses import replace

    from support.inspect_checkpoints import resnet152_layers

    layers = []
    for layer in resnet152_layers():
        out, fan_in, *kernel = layer.weight_shape
        shape = (out * factor, fan_in if layer.preceding is None else fan_in * factor, *kernel)
        layers.append(replace(layer, units=shape[0], weight_shape=shape))
    return tuple(layers)


def main() -> None:
    from support.sparse_files import write_sparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    readme.add_option(parser)
    args = parser.parse_args()
    sides = {  # the floor first: each ratio printed is to it
        "floor: import numpy, safetensors": FLOOR,
        "floor + import pydantic": PYDANTIC,
        "a Typer command with the same options": [*TYPER_FLOOR, str(EXAMPLE)],
        "hatinspect capacity (shipped example)": hatinspect("capacity", str(EXAMPLE)),
    }
    start = list(report("start-up", interleave_commands(sides, args.pairs)).values())
    from support.inspect_checkpoints import random_masks

    layers = wide_resnet152()
    masks = random_masks(layers, range(1, 11), seed=0, density=0.2)
    with tempfile.TemporaryDirectory() as folder:
        path = write_sparse(Path(folder) / "r152x15.safetensors", layers, masks)
        gb = path.stat().st_size / 1e9
        sides = {"floor: import numpy, safetensors": FLOOR}
        for cmd in COMMANDS:
            sides[f"hatinspect {cmd}"] = hatinspect(cmd, path.name)
        title = f"commands on a {len(layers)}-layer {gb:.0f} GB sparse file, 10 tasks"
        floor, *commands = report(
            title, interleave_commands(sides, args.pairs, cwd=folder)
        ).values()
        calls = in_process(path, args.pairs)
        path.unlink()
    floors = (
        f"`import numpy, safetensors` {ms(start[0]['median'])} ms; with `import pydantic` "
        f"{ms(start[1]['median'])} ms; a Typer command with the same options "
        f"{ms(start[2]['median'])} ms ({times(start[3]['median'] / start[2]['median'])})"
    )
    peaks = [c["peak_mib"] for c in commands]
    figures = {
        "capacity": f"median {ms(start[3]['median'])} ms, {mib(start[3]['peak_mib'])} MiB",
        "floors": floors,
        "commands": f"median {slashed([c['median'] for c in commands], 'ms')}, "
        f"{mib(min(peaks))}–{mib(max(peaks))} MiB",
        "commands-floor": f"`import numpy, safetensors` {ms(floor['median'])} ms",
        "in-process": slashed(calls, "ms"),
    }
    readme.compare("startup", figures, args.write_readme)


def in_process(path: Path, runs: int) -> list[float]:
    """Median seconds of each command's library call in this process, after a first call
    (which pays the imports)."""
    import hatinspect

    print(f"the same as library calls in this process, median of {runs} after the first")
    medians = []
    for cmd in COMMANDS:
        call = getattr(hatinspect, cmd)
        call(path)
        medians.append(median_time(lambda c=call: c(path), runs))
        print(f"  hatinspect.{cmd:<10} {medians[-1] * 1000:8.1f} ms")
    return medians


if __name__ == "__main__":
    main()
