"""The long fuzz run: ``python tests/fuzz/run.py --cases 10000 --seed 1``.

Prints how many cases loaded, how many were refused, and every finding (a case that broke
the reader's promise), grouped by what went wrong. Exit status 1 when there are findings.
With several seeds (``--seed 1 2 3``), each seed's cases in turn, then the totals beside
README's last long run (``--write-readme`` puts them in its place).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "benchmarks"))  # README's figures

import readme_figures as readme  # noqa: E402
from fuzz_harness import run_cases, write_cases  # noqa: E402
from fuzz_mutations import make_cases  # noqa: E402
from fuzz_seeds import FIXTURES, build_seeds, companions  # noqa: E402

README_FIGURES = ("last-run",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, nargs="+", default=[1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address space per worker")
    parser.add_argument("--keep", type=Path, help="folder to keep the cases in")
    readme.add_option(parser)
    args = parser.parse_args()
    totals = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        paths = build_seeds(folder / "seeds")
        seeds = {name: path.read_bytes() for name, path in paths.items()}
        for seed in args.seed:
            cases = make_cases(seeds, args.cases, seed)
            found = run_seed(folder / f"cases-{seed}", cases, seed, len(seeds), args)
            totals.update(found)
    if len(args.seed) > 1:
        print(f"\nall {len(args.seed)} seeds: {totals['cases']} cases in "
              f"{totals['seconds']:.0f} s: {totals['loaded']} loaded, {totals['refused']} "
              f"refused, {totals['findings']} findings")  # fmt: skip
    figures = {"last-run": last_run(args, paths, totals)}  # its command quotes the options
    readme.compare("fuzz", figures, args.write_readme, options=False)
    return 1 if totals["findings"] else 0


def run_seed(folder: Path, cases, seed: int, seed_count: int, args) -> collections.Counter:
    """Run one seed's cases; print its outcome and findings; return its counts."""
    paths = write_cases(folder, cases, companions())
    began = time.perf_counter()
    outcome = run_cases(paths, args.workers, args.timeout, args.memory_mb)
    elapsed = time.perf_counter() - began
    print(f"{len(paths)} cases from {seed_count} seeds (seed {seed}) in {elapsed:.0f} s:")
    print(f"  {outcome.loaded} loaded, {outcome.refused} refused, "
          f"{len(outcome.findings)} findings")  # fmt: skip
    groups = collections.defaultdict(list)
    for finding in outcome.findings:
        groups[finding.what.split(":")[0][:60]].append(finding)
    for what, findings in sorted(groups.items(), key=lambda g: -len(g[1])):
        print(f"\n{len(findings)} x {what}")
        for finding in findings[:5]:
            print(f"    {finding}"[:400])
    return collections.Counter(
        cases=len(paths), seconds=elapsed, loaded=outcome.loaded, refused=outcome.refused,
        findings=len(outcome.findings),
    )  # fmt: skip


def seed_sources(paths: dict[str, Path]) -> str:
    """``15 generated, the committed files: 7 in `tests/fixtures/peers/`, ...``: where the
    seeds come from (a fixture by its folder two levels down)."""
    folders = collections.Counter(
        (FIXTURES.relative_to(ROOT) / Path(*path.relative_to(FIXTURES).parts[:-1][:2])).as_posix()
        for path in paths.values()
        if path.is_relative_to(FIXTURES)
    )
    generated = len(paths) - sum(folders.values())
    held = ", ".join(f"{n} in `{folder}/`" for folder, n in sorted(folders.items()))
    return f"{generated} generated, the committed files: {held}"


def last_run(args, paths: dict[str, Path], totals: collections.Counter) -> str:
    """The run's figures as README words its last long run."""
    seeds = args.seed
    if len(seeds) == 1:
        listed = f"seed {seeds[0]}"
    elif seeds == list(range(seeds[0], seeds[-1] + 1)):
        listed = f"seeds {seeds[0]} to {seeds[-1]}"
    else:
        listed = "seeds " + ", ".join(map(str, seeds))
    seed_list = " ".join(map(str, seeds))
    command = f"python tests/fuzz/run.py --cases {args.cases} --seed {seed_list}"
    return (
        f"`{command} --workers {args.workers}`: {listed}, {args.cases:,} cases each from "
        f"{len(paths)} seeds ({seed_sources(paths)}); {totals['seconds']:.0f} s of cases): "
        f"of {totals['cases']:,} files, {totals['loaded']:,} loaded and "
        f"{totals['refused']:,} were refused with one line naming the file, "
        f"**{totals['findings']} finding{'' if totals['findings'] == 1 else 's'}**"
    )


if __name__ == "__main__":
    sys.exit(main())
