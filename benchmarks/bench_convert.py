"""convert of a 10-task HATMaskResNet152 `.pt` against `torch.load` + `save_file`.

The `.pt` is the hatinspect bundle (state_dict, masks, backbone name and config), which
convert rebuilds structure-only to lay out the layers. The baseline loads the same file
with `torch.load(weights_only=True)` and writes its tensors with safetensors' `save_file`:
the least any conversion does. Fresh processes, interleaved pair by pair.

    python benchmarks/bench_convert.py [--pairs 5] [--tasks 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import readme_figures as readme
from interleaved import hatinspect, interleave_commands, report
from readme_figures import mib, secs, times
from workloads import hat_resnet152

README_FIGURES = ("workload", "convert", "baseline")

BASELINE = """
import sys, torch
from safetensors.torch import save_file
payload = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
tensors = {f"backbone.{k}": v.contiguous() for k, v in payload["state_dict"].items()}
for task, masks in payload["masks"].items():
    for name, mask in masks.items():
        tensors[f"mask.{task}.{name}"] = mask.to(torch.uint8)
save_file(tensors, sys.argv[2])
"""


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=10)
    readme.add_option(parser)
    args = parser.parse_args()
    backbone = hat_resnet152(args.tasks)
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "r152.pt"
        torch.save(
            {
                "state_dict": backbone.state_dict(),
                "masks": backbone.masks,
                "backbone": type(backbone).__name__,
                "config": backbone.config,
            },
            src,
        )
        sides = {  # the baseline first: each ratio printed is hatinspect's to it
            "torch.load + save_file": [
                sys.executable,
                "-c",
                BASELINE,
                src.name,
                "base.safetensors",
            ],
            "hatinspect convert --force": hatinspect(
                "convert", src.name, "out.safetensors", "--force"
            ),
        }
        size = src.stat().st_size / 2**20
        title = f"convert, HATMaskResNet152 with {args.tasks} tasks ({size:.0f} MiB .pt)"
        base, mine = report(title, interleave_commands(sides, args.pairs, cwd=folder), "s").values()
    figures = {
        "workload": f"{args.tasks}-task HATMaskResNet152 ({size:.0f} MiB), {args.pairs} pairs",
        "convert": f"median {secs(mine['median'])} s, {mib(mine['peak_mib'])} MiB "
        f"({times(mine['median'] / base['median'])})",
        "baseline": f"`torch.load` + `save_file`: {secs(base['median'])} s, "
        f"{mib(base['peak_mib'])} MiB",
    }
    readme.compare("convert", figures, args.write_readme)


if __name__ == "__main__":
    main()
