"""capacity and overlap of a ResNet-50 with 20 tasks' masks of weights, against numpy reading
the same mask bytes once.

The layers are ResNet-50's: the 53 convs of hatinspect's ResNet50 (torchvision's shapes,
23,454,912 weights) and torchvision's 1000-class `fc` (2048 inputs), 25,502,912 masked
weights in all. Each task's masks are random bits (half the weights), written in the native
format as `pmask.<task>.<layer>` tensors of packed bits; the weights are holes of a sparse
file (no disk). In one process, interleaved round after round: numpy reading every mask
tensor once (`np.fromfile` at its offset; also the whole mask region in one read), then
`capacity` and `overlap` through the API, each opening the file (overlap also counted in
one thread). Peak memory is traced
(tracemalloc, numpy's buffers included) in separate runs.

    python benchmarks/bench_parameter_masks.py [--tasks 20] [--rounds 7]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import readme_figures as readme

import hatinspect
from hatinspect.analysis import packed
from hatinspect.model.bits import packed_size, padding_mask
from hatinspect.model.checkpoint import Covers, LayerInfo
from hatinspect.native import format as fmt

README_FIGURES = ("figures", "baseline")


def resnet50_layers() -> tuple[LayerInfo, ...]:
    """ResNet-50's weighted layers: hatinspect's ResNet50 convs and torchvision's fc."""
    from hatinspect.backbones import HATMaskResNet50
    from hatinspect.backbones.layers import describe_layers

    convs = describe_layers(HATMaskResNet50(3, 2048, "sigmoid"))
    fc = LayerInfo("fc", 1000, (1000, 2048), "backbone.fc.weight", "backbone.fc.bias",
                   convs[-1].name)  # fmt: skip
    return (*convs, fc)


def write_packed_sparse(path: Path, layers, tasks: int, seed: int = 0) -> dict[str, tuple]:
    """A native file of ``tasks`` random masks of weights per layer, packed, the weights
    left in holes; returns each mask tensor's (offset, bytes) in the file."""
    rng = np.random.default_rng(seed)
    header = fmt.Header("ResNet50", None, tuple(layers), tuple(range(tasks)),
                        covers=Covers.PARAMETERS)  # fmt: skip
    entries, offset = {}, 0
    for task in range(tasks):
        for layer in layers:
            size = packed_size(layer.mask_size(Covers.PARAMETERS))
            entries[fmt.packed_key(task, layer.name)] = ("U8", [size], offset, size)
            offset += size
    for layer in layers:
        for key, shape in [(layer.weight_key, list(layer.weight_shape)),
                           (layer.bias_key, [layer.units])]:  # fmt: skip
            if key:
                entries[key] = ("F32", shape, offset, 4 * math.prod(shape))
                offset += 4 * math.prod(shape)
    table = {key: {"dtype": d, "shape": s, "data_offsets": [o, o + n]}
             for key, (d, s, o, n) in entries.items()}  # fmt: skip
    table["__metadata__"] = fmt.encode_header(header)
    text = json.dumps(table).encode()
    text += b" " * (-len(text) % 8)
    start = 8 + len(text)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for _ in range(tasks):
            for layer in layers:
                weights = layer.mask_size(Covers.PARAMETERS)
                data = rng.integers(0, 256, packed_size(weights), dtype=np.uint8)
                data[-1] &= padding_mask(weights)
                f.write(data.tobytes())
        f.truncate(start + offset)
    return {k: (start + o, n) for k, (_, _, o, n) in entries.items() if k.startswith("pmask.")}


def read_each(path: Path, spans: dict[str, tuple]) -> int:
    """numpy reading every mask tensor once, at its offset."""
    return sum(int(np.fromfile(path, np.uint8, n, offset=o)[-1]) for o, n in spans.values())


def read_region(path: Path, spans: dict[str, tuple]) -> int:
    """numpy reading the whole mask region in one call (the masks lie side by side)."""
    first = min(o for o, _ in spans.values())
    return int(np.fromfile(path, np.uint8, sum(n for _, n in spans.values()), offset=first)[-1])


def one_thread(analysis, path):
    """``analysis(path)`` counted in one thread (blocks, or layers, one after another)."""
    workers, packed.WORKERS = packed.WORKERS, 1
    try:
        return analysis(path)
    finally:
        packed.WORKERS = workers


def interleave(sides: dict, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Each side once a round, the order turned round every round: wall and CPU seconds
    (the CPU time of this process: what the load of a shared machine moves least)."""
    times = {name: {"wall": [], "cpu": []} for name in sides}
    names = list(sides)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            sides[name]()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def show(times: dict) -> None:
    first = None
    for name, both in times.items():
        wall, cpu = (statistics.median(both[kind]) for kind in ("wall", "cpu"))
        first = first or (wall, cpu)
        print(f"  {name:<38} wall {wall * 1000:7.1f} ms ({wall / first[0]:5.2f}x)"
              f"  cpu {cpu * 1000:7.1f} ms ({cpu / first[1]:5.2f}x)"
              f"  min wall {min(both['wall']) * 1000:7.1f} ms")  # fmt: skip


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    readme.add_option(parser)
    args = parser.parse_args()
    layers = resnet50_layers()
    weights = sum(layer.mask_size(Covers.PARAMETERS) for layer in layers)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet50-masks.safetensors"
        spans = write_packed_sparse(path, layers, args.tasks)
        packed = sum(n for _, n in spans.values())
        print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, numpy {np.__version__},"
              f" python {sys.version.split()[0]}")  # fmt: skip
        print(f"ResNet-50: {len(layers)} layers, {weights:,} masked weights, {args.tasks} tasks")
        print(f"  mask bytes: {packed:,} packed ({packed / 2**20:.1f} MiB) against"
              f" {weights * args.tasks:,} as dense uint8 ({weights * args.tasks / 2**20:.1f}"
              f" MiB): {weights * args.tasks / packed:.2f}x smaller")  # fmt: skip
        print(f"  file: {path.stat().st_size:,} bytes (F32 weights, in holes here)")
        sides = {
            "numpy: each mask tensor read once": lambda: read_each(path, spans),
            "numpy: the mask region in one read": lambda: read_region(path, spans),
            "capacity (open + count)": lambda: hatinspect.capacity(path),
            "overlap (open + count)": lambda: hatinspect.overlap(path),
            "overlap, one thread": lambda: one_thread(hatinspect.overlap, path),
        }
        for side in sides.values():  # warm the page cache and the imports
            side()
        print(f"interleaved, {args.rounds} rounds, medians (ratios to the first side):")
        times = interleave(sides, args.rounds)
        show(times)
        print("peak traced memory (tracemalloc, numpy's buffers included):")
        peaks = {}
        for name, side in sides.items():
            peaks[name] = peak_mib(side)
            print(f"  {name:<42} {peaks[name]:8.1f} MiB")
    wall, cpu = ({name: statistics.median(both[kind]) for name, both in times.items()}
                 for kind in ("wall", "cpu"))  # fmt: skip
    numpy_s = wall["numpy: each mask tensor read once"]
    capacity, overlap = "capacity (open + count)", "overlap (open + count)"
    one = wall["overlap, one thread"]
    figures = {
        "figures": f"median {wall[capacity] * 1000:.1f} / {wall[overlap] * 1000:.1f} ms "
        f"({wall[capacity] / numpy_s:.2f}× / {wall[overlap] / numpy_s:.2f}×), CPU "
        f"{cpu[capacity] * 1000:.1f} / {cpu[overlap] * 1000:.1f} ms; `overlap` in one "
        f"thread {one * 1000:.1f} ms ({one / numpy_s:.2f}×); peak traced "
        f"{peaks[capacity]:.1f} / {peaks[overlap]:.1f} MiB; masks {packed / 2**20:.1f} MiB "
        f"packed against {weights * args.tasks / 2**20:.1f} MiB as uint8",
        "baseline": f"numpy reading each mask tensor once: {numpy_s * 1000:.1f} ms",
    }
    readme.compare("parameter_masks", figures, args.write_readme)


if __name__ == "__main__":
    main()
