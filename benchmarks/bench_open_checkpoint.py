"""open_checkpoint + cumulative + summative masks vs torch.load(weights_only=True).

Both read the same state of a HATMaskResNet152 with 10 stored tasks: the native file
through the header-and-masks reader, a ``torch.save`` of the state_dict and masks through
``torch.load``, each followed by the cumulative and summative masks. Each variant runs in
its own process so that its peak RSS is its own.

    python benchmarks/bench_open_checkpoint.py [--tasks 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workloads import hat_resnet152


def build_files(folder: Path, tasks: int) -> tuple[Path, Path]:
    import torch

    import hatinspect

    backbone = hat_resnet152(tasks)
    native = hatinspect.save_checkpoint(folder / "resnet152.safetensors", backbone)
    pickled = folder / "resnet152.pt"
    torch.save({"state_dict": backbone.state_dict(), "masks": backbone.masks}, pickled)
    return native, pickled


def run_reader(path: str) -> None:
    import hatinspect

    checkpoint = hatinspect.open_checkpoint(path)
    checkpoint.cumulative_mask()
    checkpoint.summative_mask()


def run_torch_load(path: str) -> None:
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    masks = payload["masks"]
    for name in masks[next(iter(masks))]:
        stacked = torch.stack([mask[name] for mask in masks.values()])  # (tasks, units)
        stacked.amax(dim=0), stacked.sum(dim=0)


VARIANTS = {"reader": run_reader, "torch.load": run_torch_load}


def child(variant: str, path: str, repeats: int) -> None:
    """Time ``repeats`` runs of a variant (imports excluded) and report peak RSS."""
    if variant == "torch.load":
        import torch  # noqa: F401  (imported before timing, as the reader imports safetensors)
    else:
        import hatinspect.native.reader  # noqa: F401
    rss_before = _rss_kib()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        VARIANTS[variant](path)
        times.append(time.perf_counter() - start)
    peak = _peak_rss_kib()
    result = {
        "median_s": statistics.median(times),
        "peak_kib": peak,
        "growth_kib": peak - rss_before,
    }
    print(json.dumps(result))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _rss_kib() -> int:
    return _status_kib("VmRSS")


def _peak_rss_kib() -> int:
    # VmHWM starts afresh at exec; getrusage's ru_maxrss would also count the pages the
    # child shared with this (large) parent between fork and exec
    try:
        return _status_kib("VmHWM")
    except (OSError, RuntimeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(variant: str, path: Path, repeats: int) -> dict:
    command = [sys.executable, __file__, "--child", variant, str(path), "--repeats", str(repeats)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.repeats)
        return
    with tempfile.TemporaryDirectory() as folder:
        native, pickled = build_files(Path(folder), args.tasks)
        reader = measure("reader", native, args.repeats)
        loaded = measure("torch.load", pickled, args.repeats)
        report(native, pickled, reader, loaded, args)


def report(native: Path, pickled: Path, reader: dict, loaded: dict, args) -> None:
    mib = 1024 * 1024
    print(f"HATMaskResNet152, {args.tasks} stored tasks, median of {args.repeats} runs")
    print(
        f"  native file {native.stat().st_size / mib:.0f} MiB, torch file "
        f"{pickled.stat().st_size / mib:.0f} MiB"
    )
    for name, r in (
        ("open_checkpoint + cumulative + summative", reader),
        ("torch.load(weights_only=True) + same masks", loaded),
    ):
        print(
            f"  {name:44s} {r['median_s'] * 1000:9.1f} ms   peak RSS "
            f"{r['peak_kib'] / 1024:7.0f} MiB (+{r['growth_kib'] / 1024:.0f} MiB during the calls)"
        )
    print(
        f"  speed-up {loaded['median_s'] / reader['median_s']:.1f}x, "
        f"peak RSS ratio {loaded['peak_kib'] / reader['peak_kib']:.1f}x, "
        f"growth ratio {loaded['growth_kib'] / max(reader['growth_kib'], 1):.1f}x"
    )


if __name__ == "__main__":
    main()
