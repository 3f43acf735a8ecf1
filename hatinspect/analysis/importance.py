"""FG-AdaHAT's per-unit importances, as an import of its saved model recorded them: each
task's (``importances[t][layer]``, the mean step importance plus the base importance) and
the summed one the algorithm keeps for the tasks learned so far
(``summative_importance_for_previous_tasks``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.errors import CheckpointError, HatinspectError
from hatinspect.model.names import IMPORTANCES_KEY
from hatinspect.model.records import csv_rows, record
from hatinspect.model.result import Result


@dataclass(frozen=True)
class Importances:
    kind: str  # the run's importance_type, e.g. "output_weight_abs_sum"
    tasks: dict[int, dict[str, np.ndarray]]  # task -> layer -> (units,) float64
    summative: dict[str, np.ndarray] | None  # layer -> (units,) float64


def importances(checkpoint: Checkpoint) -> Importances | None:
    """The importances the file's metadata holds, checked against its layers; None when
    it holds none."""
    text = checkpoint.metadata.get(IMPORTANCES_KEY)
    if text is None:
        return None
    try:
        value = json.loads(text)
        tasks = {int(t): _layers(checkpoint, layers) for t, layers in value["tasks"].items()}
        summative = value.get("summative")
        return Importances(
            kind=str(value.get("type")),
            tasks=dict(sorted(tasks.items())),
            summative=None if summative is None else _layers(checkpoint, summative),
        )
    except (TypeError, ValueError, KeyError, AttributeError):
        raise CheckpointError(
            f"{checkpoint.path}: its recorded importances are malformed"
        ) from None


def _layers(checkpoint: Checkpoint, layers: dict) -> dict[str, np.ndarray]:
    out = {}
    for layer in checkpoint.layers:
        values = np.asarray(layers[layer.name], dtype=np.float64)
        if values.shape != (layer.units,) or not np.isfinite(values).all():
            raise ValueError(layer.name)
        out[layer.name] = values
    return out


@dataclass(frozen=True)
class ImportanceOverlap(Result):
    """How alike tasks' importances are: task x task weighted Jaccard indices,
    sum(min(a, b)) / sum(max(a, b)) over the units (the Jaccard index of masks, where the
    importances are 0/1), network-wide and per layer."""

    checkpoint: str
    kind: str
    tasks: tuple[int, ...]
    scopes: tuple[str, ...]  # "network", then the layers
    similarity: tuple[np.ndarray, ...] = field(repr=False, compare=False)  # per scope


def importance_overlap(checkpoint: Checkpoint) -> ImportanceOverlap:
    stored = importances(checkpoint)
    if stored is None:
        raise HatinspectError(f"{checkpoint.path} holds no importances (FG-AdaHAT's are read)")
    tasks = tuple(stored.tasks)
    names = checkpoint.layer_names
    per_layer = [np.stack([stored.tasks[t][n] for t in tasks]) for n in names]
    scopes = [np.concatenate(per_layer, axis=1), *per_layer]
    return ImportanceOverlap(
        checkpoint.path, stored.kind, tasks, ("network", *names),
        tuple(weighted_jaccard(matrix) for matrix in scopes),
    )  # fmt: skip


def weighted_jaccard(matrix: np.ndarray) -> np.ndarray:
    """(tasks, tasks): row a against row b of the (tasks, units) non-negative matrix."""
    low = np.minimum(matrix[:, None, :], matrix[None, :, :]).sum(axis=2)
    high = np.maximum(matrix[:, None, :], matrix[None, :, :]).sum(axis=2)
    return np.divide(low, high, out=np.ones_like(low), where=high > 0)


@record.register
def _(result: ImportanceOverlap) -> dict:
    return {
        "checkpoint": result.checkpoint,
        "importance_type": result.kind,
        "tasks": list(result.tasks),
        "scopes": [
            {"name": name, "weighted_jaccard": matrix.tolist()}
            for name, matrix in zip(result.scopes, result.similarity, strict=True)
        ],
    }


@csv_rows.register
def _(result: ImportanceOverlap, per_layer: bool = False) -> tuple[list[str], list[list]]:
    chosen = zip(result.scopes, result.similarity, strict=True)
    rows = [
        [name, a, b, float(matrix[i, j])]
        for name, matrix in (chosen if per_layer else [next(chosen)])
        for i, a in enumerate(result.tasks)
        for j, b in enumerate(result.tasks)
    ]
    return ["scope", "task_a", "task_b", "weighted_jaccard"], rows
