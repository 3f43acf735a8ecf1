"""train-demo with its default settings, against the same run with torch.optim.SGD and
against `import torch` alone.

The demo's optimiser makes `torch.optim.SGD(momentum=0, weight_decay=0)`'s very update
without importing `torch._dynamo`, which every `torch.optim` optimiser does when built. The
baseline runs the same command with `torch.optim.SGD` put back; both print the same
accuracy matrix (checked). hatinspect runs as its console script, into a folder it may
overwrite. Fresh processes, interleaved pair by pair.

    python benchmarks/bench_train_demo.py [--pairs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import readme_figures as readme
from interleaved import hatinspect, interleave_commands, report
from readme_figures import mib, secs

README_FIGURES = ("train-demo", "baselines")

RUN = """
import sys, uuid, torch
from hatinspect.training import engine
if sys.argv[1] == "torch.optim":
    engine.PlainSGD = lambda parameters, lr: torch.optim.SGD(
        parameters, lr=lr, momentum=0.0, weight_decay=0.0
    )
from hatinspect.cli.app import main
out = f"{sys.argv[2]}/{uuid.uuid4().hex}"  # a fresh folder each run
sys.argv = ["hatinspect", "train-demo", "-o", out, *sys.argv[3:]]
main()
"""


def command(kind: str, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-c", RUN, kind, out, *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    readme.add_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        accuracy = {
            kind: json.loads(
                subprocess.run(
                    command(kind, f"{folder}/{kind}", "-f", "json"),
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )["accuracy"]
            for kind in ("plain", "torch.optim")
        }
        assert accuracy["plain"] == accuracy["torch.optim"], accuracy
        print(f"same accuracy matrix from both: final row {accuracy['plain'][-1]}")
        sides = {
            "hatinspect train-demo": hatinspect("train-demo", "-o", f"{folder}/a", "--force"),
            "the same with torch.optim.SGD": command("torch.optim", f"{folder}/b"),
            "import torch": [sys.executable, "-c", "import torch"],
        }
        results = interleave_commands(sides, args.pairs)
        mine, optim, torch = report("train-demo, default settings", results, "s").values()
    figures = {
        "train-demo": f"median {secs(mine['median'])} s, {mib(mine['peak_mib'])} MiB",
        "baselines": f"the same with `torch.optim.SGD`: {secs(optim['median'])} s, "
        f"{mib(optim['peak_mib'])} MiB; `import torch` alone: {secs(torch['median'])} s",
    }
    readme.compare("train_demo", figures, args.write_readme)


if __name__ == "__main__":
    main()
