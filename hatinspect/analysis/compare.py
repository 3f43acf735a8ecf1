"""Runs side by side: per task, what each run used, protected and (where the metadata
says) how accurate it was and how much it forgot; per layer, the final usage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hatinspect.analysis.accuracy import (
    AccuracyView,
    accuracy_matrix,
    average_accuracy,
    backward_transfer,
    mean_forgetting,
)
from hatinspect.analysis.capacity import USAGE_FIELDS, Shares, Usage, capacity
from hatinspect.analysis.clarena_output import ACCURACY, MetricsTable
from hatinspect.analysis.runs import Run
from hatinspect.model.errors import HatinspectError
from hatinspect.model.records import csv_rows, fields_of, record, values_of
from hatinspect.model.result import Result


@dataclass(frozen=True)
class RunStep(Shares):
    """A run once task `task` was learned."""

    task: int
    units: int
    units_used: int
    params: int
    params_protected: int
    new_units: int
    reused_units: int
    network_sparsity: float
    accuracy: float | None  # mean test accuracy over the tasks learned so far
    forgetting: float | None  # mean forgetting of the earlier tasks; None after the first
    # mean change of the earlier tasks' accuracy since each was learned; None after the first
    backward_transfer: float | None = None
    # masks of weights: the weights this task owns that no earlier task had, and those it
    # shares with earlier ones; None where the masks cover units
    new_params: int | None = None
    reused_params: int | None = None


@dataclass(frozen=True)
class RunSummary:
    name: str
    path: str
    files: tuple[str, ...]
    backbone: str
    algorithm: str | None  # the metadata's "algorithm", when it has one
    steps: tuple[RunStep, ...]
    layers: tuple[Usage, ...]  # after the last task
    # row t: accuracy on tasks 1..t+1 after learning task t+1; None without accuracies
    accuracy: tuple[tuple[float, ...], ...] | None = None
    accuracy_tasks: tuple[int, ...] = ()  # the task of each row and column
    metrics: tuple[MetricsTable, ...] = ()  # a CLArena folder's other metrics files
    covers: str = "units"  # what a mask's entries are: "units", or "parameters" (weights)

    @property
    def covers_weights(self) -> bool:
        return self.covers != "units"

    @property
    def accuracy_view(self) -> AccuracyView | None:
        return None if self.accuracy is None else AccuracyView(self.accuracy_tasks, self.accuracy)

    def layer(self, name: str) -> Usage | None:
        return next((usage for usage in self.layers if usage.name == name), None)


@dataclass(frozen=True)
class Comparison(Result):
    runs: tuple[RunSummary, ...]

    @property
    def layer_names(self) -> list[str]:
        """Every run's layers, in the order they first appear."""
        return list(dict.fromkeys(layer.name for run in self.runs for layer in run.layers))

    @property
    def task_count(self) -> int:
        return max(len(run.steps) for run in self.runs)


def compare(runs: Sequence[Run]) -> Comparison:
    if not runs:
        raise HatinspectError("compare needs at least one run")
    names = [run.name for run in runs]
    if len(set(names)) < len(names):  # e.g. seed1/hat and seed2/hat: the paths tell apart
        names = [run.path for run in runs]
    return Comparison(tuple(summarise(run, name) for run, name in zip(runs, names, strict=True)))


def summarise(run: Run, name: str | None = None) -> RunSummary:
    final = run.final
    report = capacity(final)
    matrix = accuracy_matrix(final)
    steps = tuple(
        RunStep(
            task=growth.task,
            units=report.total.units,
            units_used=growth.units_used,
            params=growth.params,
            params_protected=growth.params_protected,
            new_units=growth.new_units,
            reused_units=growth.reused_units,
            network_sparsity=growth.network_sparsity,
            accuracy=None if row is None else average_accuracy(matrix, row),
            forgetting=None if row is None else mean_forgetting(matrix, row),
            backward_transfer=None if row is None else backward_transfer(matrix, row),
            new_params=growth.new_params,
            reused_params=growth.reused_params,
        )
        for growth in report.by_task
        # the accuracy matrix has a row per stored task, unlearned ones too
        for row in [None if matrix is None else final.task_ids.index(growth.task)]
    )
    return RunSummary(
        name=name or run.name,
        path=run.path,
        files=tuple(checkpoint.path for checkpoint in run.checkpoints),
        backbone=final.backbone,
        algorithm=final.metadata.get("algorithm"),
        steps=steps,
        layers=report.layers,
        accuracy=None if matrix is None else tuple(map(tuple, matrix)),
        accuracy_tasks=final.task_ids,
        metrics=tuple(table for table in run.metrics if Path(table.path).name != ACCURACY),
        covers=report.covers,
    )


# machine output (JSON record, CSV rows)

STEP_KEYS = [
    "task",
    *USAGE_FIELDS,
    "new_units",
    "reused_units",
    "network_sparsity",
    "accuracy",
    "forgetting",
    "backward_transfer",
]
WEIGHT_STEP_KEYS = ["new_params", "reused_params"]  # runs whose masks cover weights
LAYER_KEYS = USAGE_FIELDS


@record.register
def _(comparison: Comparison) -> dict:
    return {"runs": [_run_record(run) for run in comparison.runs]}


def _run_record(run: RunSummary) -> dict:
    keys = [*STEP_KEYS, *WEIGHT_STEP_KEYS] if run.covers_weights else STEP_KEYS
    out = {
        "name": run.name,
        "path": run.path,
        "files": list(run.files),
        "backbone": run.backbone,
        "algorithm": run.algorithm,
        "tasks": [step.task for step in run.steps],
        "by_task": [fields_of(step, keys) for step in run.steps],
        "layers": [{"name": layer.name, **fields_of(layer, LAYER_KEYS)} for layer in run.layers],
        "accuracy_matrix": None
        if run.accuracy is None
        else {"tasks": list(run.accuracy_tasks), "rows": [list(row) for row in run.accuracy]},
        "metrics_files": [_metrics_record(table) for table in run.metrics],
    }
    if run.covers_weights:  # as capacity says it
        out["covers"] = run.covers
    return out


def _metrics_record(table: MetricsTable) -> dict:
    return {
        "file": table.path,
        "average": table.average,
        "rows": [
            {"step": step, "average": average, "by_task": {str(t): v for t, v in values.items()}}
            for step, average, values in table.rows
        ],
    }


@csv_rows.register
def _(comparison: Comparison, per_layer: bool = False) -> tuple[list[str], list[list]]:
    if per_layer:
        rows = [
            [run.name, layer.name, *values_of(layer, LAYER_KEYS)]
            for run in comparison.runs
            for layer in run.layers
        ]
        return ["run", "layer", *LAYER_KEYS], rows
    keys = STEP_KEYS
    if any(run.covers_weights for run in comparison.runs):  # blank for runs of units
        keys = [*STEP_KEYS, *WEIGHT_STEP_KEYS]
    rows = [[run.name, *values_of(step, keys)] for run in comparison.runs for step in run.steps]
    return ["run", *keys], rows
