"""audit and measure on generated sparse checkpoints of about 1, 10 and 50 GB.

Each size is a pair of native files of square linear layers whose weights are holes (no
disk used; reading them costs what reading zeros from the page cache costs). Tasks keep a
leading slice of each layer's units (`--share` of them), so audit reads that share of
each weight. Sides, interleaved pair by pair:

- `hatinspect audit` / `hatinspect measure` (fresh processes);
- the whole-file way they worked before, in a child process of this script: both files'
  weights read whole and compared (audit), the weight-shaped measure built and counted
  with `np.unique` (measure); run only where it fits in memory (about 3x the file for
  audit, 11 bytes per weight for measure), i.e. at 1 GB;
- `cmp` of the two files, the floor of reading both whole (audit, at 1 GB).

    python benchmarks/bench_audit_measure.py [--sizes 1 10 50] [--pairs 5] [--share 0.05]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import readme_figures as readme
from interleaved import free_disk_gib, hatinspect, interleave_commands, report
from readme_figures import mib, secs

# file size in GB -> (layers, units of each square layer)
SIZES = {1: (2, 11584), 10: (2, 36864), 50: (3, 65536)}
IN_MEMORY_GB = 1  # the whole-file baselines run at this size only
README_FIGURES = (  # what README shows of each size; the former ways ran at 1 GB only
    "audit-1",
    "audit-1-before",
    "measure-1",
    "measure-1-before",
    "when-1",
    "audit-10",
    "measure-10",
    "when-10",
    "audit-50",
    "measure-50",
    "when-50",
)


def make_pair(folder: Path, size: int, share: float) -> tuple[Path, Path]:
    from support.sparse_files import leading_masks, wide_layers, write_sparse

    count, units = SIZES[size]
    layers = wide_layers(units, count)
    masks = leading_masks(layers, tasks=3, share=share)
    meta = {"run_id": "bench", "algorithm": "hat"}
    before = write_sparse(folder / f"before-{size}.safetensors", layers, masks, meta)
    after = write_sparse(folder / f"after-{size}.safetensors", layers, masks, meta)
    return before, after


def whole_file_audit(before: str, after: str) -> None:
    """The former audit: every weight of both files in memory, compared entry by entry."""
    import numpy as np

    from hatinspect.checkpoints import open_checkpoint, read_tensors

    early, late = open_checkpoint(before), open_checkpoint(after)
    keys = [k for layer in early.layers for k in (layer.weight_key, layer.bias_key) if k]
    old, new = read_tensors(before, keys), read_tensors(after, keys)
    cumulative = early.cumulative_mask()
    for layer in early.layers:
        rows = cumulative[layer.name].astype(bool)
        columns = (
            cumulative[layer.preceding].astype(bool)
            if layer.preceding
            else np.ones(layer.fan_in, bool)
        )
        a, b = old[layer.weight_key], new[layer.weight_key]
        differs = a.view(np.uint8).reshape(*a.shape, 4) != b.view(np.uint8).reshape(*b.shape, 4)
        mask = rows[:, None] & columns[None, :]
        changes = np.abs(b[differs.any(-1) & mask].astype(np.float64))
        assert late.layer(layer.name) and changes.size == 0


def whole_measure(path: str, layer_name: str) -> None:
    """The former measure: the weight-shaped array built, then counted with np.unique."""
    import numpy as np

    from hatinspect.checkpoints import open_checkpoint

    checkpoint = open_checkpoint(path)
    layer = checkpoint.layer(layer_name)
    unit = checkpoint.cumulative_mask()
    rows = unit[layer.name].astype(np.float32)
    columns = unit[layer.preceding].astype(np.float32)
    weight = np.ascontiguousarray(np.minimum(rows[:, None], columns[None, :]))
    np.unique(weight, return_counts=True)
    weight.mean(dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50], choices=SIZES)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    readme.add_option(parser)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        (whole_file_audit if kind == "audit" else whole_measure)(*rest)
        return
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        print(f"free disk: {free_disk_gib(folder):.0f} GiB (the files are sparse: ~0 used)")
        for size in args.sizes:
            before, after = make_pair(folder, size, args.share)
            gib = before.stat().st_size / 2**30
            try:
                figures = bench_size(size, gib, before, after, args)
            finally:
                before.unlink()
                after.unlink()
            readme.compare("audit_measure", figures, args.write_readme, f"when-{size}")


def bench_size(size: int, gib: float, before: Path, after: Path, args) -> dict[str, str]:
    """Time audit and measure at one size; README's figures of it."""
    me = [sys.executable, __file__, "--child"]
    last = f"fc/{SIZES[size][0] - 1}"
    audit = {"hatinspect audit": hatinspect("audit", before.name, after.name)}
    if size <= IN_MEMORY_GB:
        audit["whole-file audit (before)"] = [*me, "audit", before.name, after.name]
    if size <= IN_MEMORY_GB:  # beyond, reading holes at this machine's pace takes minutes
        audit["cmp (both files read whole)"] = ["cmp", before.name, after.name]
    title = f"audit, two {gib:.1f} GiB files, {args.share:.0%} of units protected"
    audits = report(title, interleave_commands(audit, args.pairs, cwd=before.parent), "s")
    measure = {"hatinspect measure": hatinspect("measure", before.name, "-l", last)}
    if size <= IN_MEMORY_GB:
        measure["weight-shaped measure (before)"] = [*me, "measure", before.name, last]
    units = SIZES[size][1]
    title = f"measure of {last} ({units:,} x {units:,}) in a {gib:.1f} GiB file"
    measures = report(title, interleave_commands(measure, args.pairs, cwd=before.parent), "s")
    return figures_at(size, list(audits.values()), list(measures.values()))


def figures_at(size: int, audits: list[dict], measures: list[dict]) -> dict[str, str]:
    """README's cells of one size: hatinspect's, and the former ways' where they ran."""

    def seconds(side: dict, low: bool = False) -> str:
        lowest = f", min {secs(side['min'])} s" if low else ""
        return f"median {secs(side['median'])} s{lowest}, **{mib(side['peak_mib'])} MiB**"

    figures = {
        f"audit-{size}": seconds(audits[0], low=True),
        f"measure-{size}": seconds(measures[0]),
    }
    if len(audits) == 3:
        figures[f"audit-{size}-before"] = (
            f"former whole-file audit: {seconds(audits[1])}; `cmp`: {secs(audits[2]['median'])} s"
        )
    if len(measures) == 2:
        figures[f"measure-{size}-before"] = f"former weight-shaped measure: {seconds(measures[1])}"
    return figures


if __name__ == "__main__":
    main()
