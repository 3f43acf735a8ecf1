"""The long fuzz run: ``python tests/fuzz/run.py --cases 10000 --seed 1``.

Prints how many cases loaded, how many were refused, and every finding (a case that broke
the reader's promise), grouped by what went wrong. Exit status 1 when there are findings.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_harness import run_cases, write_cases  # noqa: E402
from fuzz_mutations import make_cases  # noqa: E402
from fuzz_seeds import build_seeds, companions  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address space per worker")
    parser.add_argument("--keep", type=Path, help="folder to keep the cases in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        seeds = {name: path.read_bytes() for name, path in build_seeds(folder / "seeds").items()}
        cases = make_cases(seeds, args.cases, args.seed)
        paths = write_cases(folder / "cases", cases, companions())
        began = time.perf_counter()
        outcome = run_cases(paths, args.workers, args.timeout, args.memory_mb)
        elapsed = time.perf_counter() - began
    print(f"{len(paths)} cases from {len(seeds)} seeds (seed {args.seed}) in {elapsed:.0f} s:")
    print(f"  {outcome.loaded} loaded, {outcome.refused} refused, "
          f"{len(outcome.findings)} findings")  # fmt: skip
    groups = collections.defaultdict(list)
    for finding in outcome.findings:
        groups[finding.what.split(":")[0][:60]].append(finding)
    for what, findings in sorted(groups.items(), key=lambda g: -len(g[1])):
        print(f"\n{len(findings)} x {what}")
        for finding in findings[:5]:
            print(f"    {finding}"[:400])
    return 1 if outcome.findings else 0


if __name__ == "__main__":
    sys.exit(main())
