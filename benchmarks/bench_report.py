"""report on a HATMaskResNet152 with 20 stored tasks: time and size of the HTML and
Markdown reports, against `capacity` of the same file (open + count) as the baseline.

    python benchmarks/bench_report.py [--tasks 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import readme_figures as readme
from readme_figures import ms, secs
from workloads import hat_resnet152, median_time

README_FIGURES = ("report", "capacity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    readme.add_option(parser)
    args = parser.parse_args()

    import hatinspect

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        path = hatinspect.save_checkpoint(
            folder / "resnet152.safetensors", hat_resnet152(args.tasks)
        )
        checkpoint = hatinspect.open_checkpoint(path)
        print(f"HATMaskResNet152, {args.tasks} tasks, {len(checkpoint.layers)} layers")
        baseline = median_time(lambda: hatinspect.capacity(path), args.repeats)
        print(f"capacity (baseline)  {baseline:7.2f} s")
        took, sizes = [], []
        for suffix in ("html", "md"):
            output = folder / f"report.{suffix}"
            seconds = median_time(lambda o=output: hatinspect.report(path, output=o), args.repeats)
            size = output.stat().st_size
            figures = folder / "report-figures"
            if suffix == "md":
                size += sum(f.stat().st_size for f in figures.iterdir())
            took.append(seconds)
            sizes.append(size / 2**20)
            print(
                f"report .{suffix:<4}         {seconds:7.2f} s  {seconds / baseline:5.1f}x baseline"
                f"  {size / 2**20:6.2f} MiB{' (with its SVG figures)' if suffix == 'md' else ''}"
            )
    fresh = {
        "report": f"median {secs(took[0])} / {secs(took[1])} s, "
        f"{sizes[0]:.2f} / {sizes[1]:.2f} MiB",
        "capacity": f"`capacity` {ms(baseline)} ms (the reports "
        f"{took[0] / baseline:,.0f} / {took[1] / baseline:,.0f} times it)",
    }
    readme.compare("report", fresh, args.write_readme)


if __name__ == "__main__":
    main()
