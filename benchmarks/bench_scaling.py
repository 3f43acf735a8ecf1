"""capacity against the number of layers, overlap against the number of tasks (in-process).

Each is interleaved with the way it was computed before, kept here as the baseline:
capacity one layer at a time with a list scan per look-up by name (quadratic in layers);
overlap as an int64 matrix product per layer (numpy runs no BLAS for integers), against
hatinspect's network matrices alone (what a command shows by default) and with every
layer's. Both results are checked equal before timing. Then whole `hatinspect overlap`
commands at 640 tasks, run as `python -m hatinspect` with this interpreter.

    python benchmarks/bench_scaling.py [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from types import MappingProxyType

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI sets it; before numpy loads

import numpy as np  # noqa: E402
import readme_figures as readme  # noqa: E402
from interleaved import hatinspect, interleave_calls, interleave_commands, report  # noqa: E402
from readme_figures import mib, secs, slashed  # noqa: E402

from hatinspect.analysis.capacity import capacity, inputs_per_unit
from hatinspect.analysis.overlap import overlap
from hatinspect.model.checkpoint import Checkpoint, LayerInfo

LAYER_COUNTS = (100, 400, 1600, 3200)
TASK_COUNTS = (10, 40, 160, 640)
README_FIGURES = (
    "capacity",
    "capacity-before",
    "overlap",
    "overlap-layers",
    "overlap-before",
    "command",
    "command-floor",
)
UNITS = 128  # per layer, in the overlap runs


def chain(layers: int, tasks: int, units: int = 64, seed: int = 0) -> Checkpoint:
    """`layers` linear layers of `units` units, each fed by the one before, random masks."""
    rng = np.random.default_rng(seed)
    infos = tuple(
        LayerInfo(
            f"fc/{i}", units, (units, units), f"fc.{i}.weight", None, f"fc/{i - 1}" if i else None
        )
        for i in range(layers)
    )
    masks = {
        t: MappingProxyType(
            {layer.name: (rng.random(units) < 0.3).astype(np.uint8) for layer in infos}
        )
        for t in range(1, tasks + 1)
    }
    return Checkpoint("bench", "HATMaskMLP", "hatinspect", infos, tuple(masks), masks)


def capacity_before(checkpoint: Checkpoint) -> list[int]:
    """Protected parameters per layer, as computed before: layer by layer, list scans."""

    def scan(name):  # the former Checkpoint.layer
        for layer in checkpoint.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    used = {}
    for layer in checkpoint.layers:
        matrix = np.array([checkpoint.masks[t][layer.name] for t in checkpoint.task_ids])
        used[layer.name] = np.maximum.accumulate(matrix, axis=0).sum(axis=1, dtype=np.int64)
    protected = []
    for layer in checkpoint.layers:
        if layer.preceding is None:
            fan_in = layer.fan_in
        else:
            source = scan(layer.preceding)
            fan_in = used[source.name] * inputs_per_unit(layer, source)
        protected.append(int((layer.kernel_size * used[layer.name] * fan_in)[-1]))
    return protected


def overlap_before(checkpoint: Checkpoint) -> np.ndarray:
    total = 0
    for layer in checkpoint.layers:
        rows = np.array([checkpoint.masks[t][layer.name] for t in checkpoint.task_ids], np.int64)
        total = total + rows @ rows.T
    return total


def bench_capacity(pairs: int) -> dict[str, str]:
    medians = []
    for count in LAYER_COUNTS:
        checkpoint = chain(count, tasks=10)
        fresh = [layer.params_protected for layer in capacity(checkpoint).layers]
        assert fresh == capacity_before(checkpoint)
        sides = {
            "hatinspect capacity()": lambda c=checkpoint: capacity(_copy(c)),
            "before: per layer, list-scan look-ups": lambda c=checkpoint: capacity_before(c),
        }
        results = report(f"capacity, {count} layers x 10 tasks", interleave_calls(sides, pairs))
        medians.append([side["median"] for side in results.values()])
    mine, before = zip(*medians, strict=True)
    return {"capacity": slashed(mine, "ms"), "capacity-before": slashed(before, "ms")}


def bench_overlap(pairs: int) -> dict[str, str]:
    medians = []
    for tasks in TASK_COUNTS:
        checkpoint = chain(155, tasks, units=UNITS)
        assert (overlap(checkpoint).network.shared == overlap_before(checkpoint)).all()
        sides = {
            "hatinspect overlap(), network": lambda c=checkpoint: _network(overlap(c)),
            "hatinspect overlap(), network and layers": lambda c=checkpoint: _every(overlap(c)),
            "before: int64 matrix products": lambda c=checkpoint: overlap_before(c),
        }
        title = f"overlap core, {tasks} tasks x 155 layers x {UNITS} units"
        medians.append(
            [side["median"] for side in report(title, interleave_calls(sides, pairs)).values()]
        )
    network, every, before = zip(*medians, strict=True)
    return {
        "overlap": slashed(network, "ms"),
        "overlap-layers": slashed(every, "ms"),
        "overlap-before": slashed(before, "ms"),
    }


def _network(report) -> None:
    # the matrices are counted when first asked for: ask for what a command shows
    report.network.jaccard  # noqa: B018


def _every(report) -> None:
    for scope in (report.network, *report.layers):
        scope.jaccard  # noqa: B018


def bench_overlap_command(pairs: int) -> dict[str, str]:
    from support.sparse_files import write_sparse

    checkpoint = chain(155, 640, units=UNITS)
    with tempfile.TemporaryDirectory() as folder:
        path = write_sparse(Path(folder) / "t640.safetensors", checkpoint.layers, checkpoint.masks)
        command = hatinspect("overlap", path.name)
        sides = {
            "hatinspect overlap -f csv (640 tasks)": [*command, "-f", "csv"],
            "hatinspect overlap (table, 640 tasks)": command,
            "python -c 'import numpy, safetensors'": [
                sys.executable,
                "-c",
                "import numpy, safetensors",
            ],
        }
        results = interleave_commands(sides, pairs, cwd=folder)
        title = "overlap command, 640 tasks x 155 layers: network as CSV, or summarised"
        csv, table, floor = report(title, results, unit="s").values()
    return {
        "command": f"median {secs(table['median'])} / {secs(csv['median'])} s, "
        f"{mib(table['peak_mib'])} / {mib(csv['peak_mib'])} MiB",
        "command-floor": f"`import numpy, safetensors` {secs(floor['median'])} s",
    }


def _copy(checkpoint: Checkpoint) -> Checkpoint:
    # a fresh object each call, so that no look-up table is reused between runs
    return Checkpoint(*(getattr(checkpoint, f) for f in Checkpoint.__dataclass_fields__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--only", choices=("capacity", "overlap", "command"))
    readme.add_option(parser)
    args = parser.parse_args()
    figures = {}
    for name, bench in (
        ("capacity", bench_capacity),
        ("overlap", bench_overlap),
        ("command", bench_overlap_command),
    ):
        if args.only in (None, name):
            figures |= bench(args.pairs)
    readme.compare("scaling", figures, args.write_readme)


if __name__ == "__main__":
    main()
