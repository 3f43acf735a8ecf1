"""What a report holds: for each run, what the file is, its capacity, masks, overlap,
parameter-wise measures and (for a run of several files) the audit between them; for
several runs, their comparison. Torch-free; drawing and templates live in render."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hatinspect.analysis.adjustment import with_network_capacity
from hatinspect.analysis.audit import AuditReport, TensorReader, audit, verdict_tone
from hatinspect.analysis.capacity import (
    CapacityReport,
    capacity,
    inputs_per_unit,
    protects_anything,
)
from hatinspect.analysis.compare import Comparison, RunSummary, compare, summarise
from hatinspect.analysis.importance import ImportanceOverlap, importance_overlap, importances
from hatinspect.analysis.masks import MaskReport, summarise_masks
from hatinspect.analysis.measure import Stats, pair_stats, stats_record
from hatinspect.analysis.overlap import OverlapReport, overlap
from hatinspect.analysis.runs import Run, check_trajectory
from hatinspect.analysis.trajectory import TrajectoryReport, trajectory_report
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, HatinspectError
from hatinspect.model.names import TITLES
from hatinspect.model.progress import track
from hatinspect.model.records import document, record
from hatinspect.model.result import Result
from hatinspect.native.reader import read_native_tensors


@dataclass(frozen=True)
class LayerMeasures:
    """One layer's parameter-wise measures (aggregation min) over its weights."""

    name: str
    cumulative: Stats  # 1 where both of a weight's units are in the cumulative mask, else 0
    summative: Stats  # how many tasks use both of a weight's units
    protects: bool = True  # False where the masks protect nothing (fine-tuning)

    @property
    def protected(self) -> int:
        if not self.protects:
            return 0
        return sum(count for value, count in self.cumulative.histogram if value == 1)


@dataclass(frozen=True)
class RunReport:
    run: Run
    capacity: CapacityReport
    masks: MaskReport
    overlap: OverlapReport
    measures: tuple[LayerMeasures, ...]
    audits: tuple[AuditReport, ...]  # each file against the next; empty for one file
    outcome: RunSummary  # task by task: usage, accuracy, forgetting, backward transfer
    importance: ImportanceOverlap | None = None  # FG-AdaHAT: how alike tasks' importances are
    trajectory: TrajectoryReport | None = None  # the masks through training, where logged

    @property
    def checkpoint(self) -> Checkpoint:
        return self.run.final

    @property
    def summary(self) -> str:
        tasks = len(self.capacity.tasks)
        parts = [
            f"{tasks} task{'s' * (tasks != 1)}",
            f"{self.capacity.total.unit_usage:.0%} of units used",
            protection_summary(self.capacity),
        ]
        if self.audits:
            parts.append(audits_summary(self.audits))
        return ", ".join(parts)


def protection_summary(report: CapacityReport) -> str:
    if not report.protects:
        why = "no masks: a fine-tuning run" if report.tasks else "no task stored"
        return f"nothing protected ({why})"
    if report.total.param_usage is None:
        return "parameters unknown (logs without weights)"
    return f"{report.total.param_usage:.0%} of parameters protected"


def audits_summary(audits: Sequence[AuditReport]) -> str:
    """The audits of a run's file pairs in a few words: how many pass, and the most
    protected parameters changed in any one pair (a sum over pairs would count a parameter
    once for every pair it is protected in)."""
    pairs = f"{len(audits)} file pair{'s' * (len(audits) != 1)}"
    tones = [verdict_tone(report) for report in audits]
    if all(tone == "none" for tone in tones):
        return f"audit of {pairs}: nothing protected"
    failed = tones.count("fail")
    outcome = f"{failed} of {len(audits)} fail" if failed else "all pass"
    if not failed and "drift" in tones:
        title = TITLES.get(audits[0].algorithm, "soft protection")
        outcome += f" by {title}'s drift rule"
    most = max(audits, key=lambda report: report.changed)
    if not most.changed:
        return f"audit of {pairs}: {outcome}, no protected parameter changed"
    return (
        f"audit of {pairs}: {outcome}, up to {most.changed:,} of {most.protected:,} "
        "protected parameters changed in one pair"
    )


@dataclass(frozen=True)
class Report(Result):
    runs: tuple[RunReport, ...]
    comparison: Comparison | None  # when there are several runs

    @property
    def summary(self) -> str:
        if len(self.runs) == 1:
            return self.runs[0].summary
        return "; ".join(f"{run.run.name}: {run.summary}" for run in self.runs)


def build_report(runs: Sequence[Run], read_tensors: TensorReader = read_native_tensors) -> Report:
    """The report of `runs`; the audits read the weights of each run's files (PyTorch
    files through `read_tensors`, as `core.audit.audit` does)."""
    if not runs:
        raise HatinspectError("a report needs at least one checkpoint or run")
    reports = tuple(run_report(run, read_tensors) for run in track(runs, "report", unit="runs"))
    return Report(reports, compare(runs) if len(runs) > 1 else None)


def one_run_or_many(runs: Sequence[Run]) -> list[Run]:
    """Single checkpoints that are one run's files (each holding the tasks of the one
    before, masks agreeing) become that run; anything else stays as given."""
    if len(runs) < 2 or any(len(run.checkpoints) != 1 for run in runs):
        return list(runs)
    files = sorted((run.final for run in runs), key=lambda c: len(c.task_ids))
    tasks = [set(c.task_ids) for c in files]
    if any(not a < b for a, b in zip(tasks, tasks[1:], strict=False)):
        return list(runs)
    try:
        check_trajectory(files)
    except CheckpointError:
        return list(runs)
    return [Run(name=runs[0].name, path=files[-1].path, checkpoints=tuple(files))]


def run_report(run: Run, read_tensors: TensorReader = read_native_tensors) -> RunReport:
    final = run.final
    pairs = zip(run.checkpoints, run.checkpoints[1:], strict=False)
    return RunReport(
        run=run,
        capacity=with_network_capacity(capacity(final), final),
        masks=summarise_masks(final),
        overlap=overlap(final),
        # the parameter-wise measures spread unit masks; masks of weights are already that
        measures=tuple(
            layer_measures(final, layer)
            for layer in track(final.layers, f"measures of {run.name}", unit="layers")
        )
        if final.covers == Covers.UNITS and final.weights_known
        else (),  # the logs of a run hold no weights to measure
        audits=tuple(audit(before, after, read_tensors=read_tensors) for before, after in pairs),
        outcome=summarise(run),
        importance=importance_overlap(final) if importances(final) is not None else None,
        trajectory=None if run.trajectories is None else trajectory_report(run.trajectories),
    )


def layer_measures(checkpoint: Checkpoint, layer: LayerInfo) -> LayerMeasures:
    summative = checkpoint.summative_mask()
    cumulative = {name: (counts > 0).astype(np.int64) for name, counts in summative.items()}
    return LayerMeasures(
        name=layer.name,
        cumulative=min_measure_stats(checkpoint, layer, cumulative),
        summative=min_measure_stats(checkpoint, layer, summative),
        protects=protects_anything(checkpoint),
    )


def min_measure_stats(checkpoint: Checkpoint, layer: LayerInfo, unit_wise) -> Stats:
    """Stats of the weight measure min(m[i], m_preceding[j]) from the unit values, without
    building the weight-sized tensor (`core.measure.pair_stats`)."""
    columns = None  # a first layer takes m[i] alone
    if layer.preceding is not None:
        source = checkpoint.layer(layer.preceding)
        columns = np.repeat(unit_wise[source.name], inputs_per_unit(layer, source))
    return pair_stats(unit_wise[layer.name], columns, "min", layer.fan_in, layer.kernel_size)


# machine output (JSON record, CSV rows)


@record.register
def _(report: Report) -> dict:
    document = {"summary": report.summary, "runs": [_run(run) for run in report.runs]}
    comparison = report.comparison
    document["comparison"] = None if comparison is None else record(comparison)
    return document


def _run(run: RunReport) -> dict:
    final = (run.checkpoint,)
    files = run.run.checkpoints
    return {
        "name": run.run.name,
        "files": [checkpoint.path for checkpoint in files],
        "summary": run.summary,
        "info": document(run.checkpoint, final),
        "capacity": document(run.capacity, final),
        "masks": document(run.masks, final),
        "overlap": document(run.overlap, final),
        "measures": [
            {
                "name": layer.name,
                "cumulative": stats_record(layer.cumulative),
                "summative": stats_record(layer.summative),
            }
            for layer in run.measures
        ],
        "audits": [
            document(audit, pair)
            for audit, pair in zip(run.audits, zip(files, files[1:], strict=False), strict=True)
        ],
        "outcome": _outcome_record(run.outcome),
        "importance_overlap": None if run.importance is None else record(run.importance),
        "trajectory": None if run.trajectory is None else record(run.trajectory),
    }


def _outcome_record(outcome: RunSummary) -> dict:
    """Accuracy, forgetting and backward transfer task by task, and the metrics files."""
    full = record(Comparison((outcome,)))["runs"][0]
    keep = ("by_task", "accuracy_matrix", "metrics_files")
    return {key: full[key] for key in keep}
