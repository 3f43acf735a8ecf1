"""Machine output: each result as a JSON document (`"schema": 1`) or CSV rows, raw numbers only.

The JSON keys are a public contract that scripts rely on; add keys, never rename them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from functools import singledispatch
from itertools import chain, cycle, repeat

from hatinspect.analysis.audit import AuditReport, verdict
from hatinspect.analysis.capacity import CapacityReport
from hatinspect.analysis.compare import Comparison, RunSummary
from hatinspect.analysis.masks import MaskReport
from hatinspect.analysis.measure import LayerMeasure, Stats
from hatinspect.analysis.overlap import Overlap, OverlapReport
from hatinspect.analysis.report import Report, RunReport
from hatinspect.analysis.runs import RunCapacity
from hatinspect.model.checkpoint import Checkpoint

SCHEMA = 1


def to_json(result, checkpoints: Sequence[Checkpoint] = ()) -> str:
    """The JSON document of ``result``, with the ``notes`` of the checkpoints it came from
    and, per layer, whether its preceding layer is inferred."""
    document = {"schema": SCHEMA, **record(result)}
    if "notes" not in document:
        document["notes"] = list(dict.fromkeys(n for c in checkpoints for n in c.notes))
    if isinstance(result, CapacityReport | LayerMeasure | RunCapacity):  # those using the flow
        _mark_inferred(document, {layer.name: layer for c in checkpoints for layer in c.layers})
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _mark_inferred(document: dict, layers: dict) -> None:
    """``preceding_inferred`` beside each layer a document names (its layers, or its layer)."""
    for entry in document.get("layers", []):
        if isinstance(entry, dict) and entry.get("name") in layers:
            entry.setdefault("preceding_inferred", layers[entry["name"]].preceding_inferred)
    if isinstance(document.get("layer"), str) and document["layer"] in layers:
        document["preceding_inferred"] = layers[document["layer"]].preceding_inferred


def to_csv(result, **options) -> str:
    if isinstance(result, OverlapReport):  # tasks x tasks rows per scope: written as text
        return _overlap_csv(result, **options)
    header, rows = csv_rows(result, **options)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _csv_line(fields: list) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


@singledispatch
def record(result) -> dict:
    """The JSON document of a result, without the schema key."""
    raise TypeError(f"no JSON record for {type(result).__name__}")


@singledispatch
def csv_rows(result, **options) -> tuple[list[str], list[list]]:
    """(header, rows) of a result as one flat table."""
    raise TypeError(f"no CSV rows for {type(result).__name__}")


# masks


@record.register
def _(report: MaskReport) -> dict:
    return {
        "checkpoint": report.checkpoint,
        "backbone": report.backbone,
        "tasks": list(report.tasks),
        "layers": [
            {
                "name": layer.name,
                "units": layer.units,
                "tasks": {
                    str(task): {"active": layer.active[task], "fraction": layer.fraction(task)}
                    for task in report.tasks
                },
                "cumulative": {"active": layer.cumulative, "fraction": layer.cumulative_fraction},
                "summative": {"max": layer.summative_max, "mean": layer.summative_mean},
            }
            for layer in report.layers
        ],
    }


@csv_rows.register
def _(report: MaskReport) -> tuple[list[str], list[list]]:
    per_task = [f"task_{task}_{key}" for task in report.tasks for key in ("active", "fraction")]
    header = [
        "layer",
        "units",
        *per_task,
        "cumulative_active",
        "cumulative_fraction",
        "summative_max",
        "summative_mean",
    ]
    rows = [
        [
            layer.name,
            layer.units,
            *[v for task in report.tasks for v in (layer.active[task], layer.fraction(task))],
            layer.cumulative,
            layer.cumulative_fraction,
            layer.summative_max,
            layer.summative_mean,
        ]
        for layer in report.layers
    ]
    return header, rows


# capacity

USAGE_KEYS = [
    "name",
    "units",
    "units_used",
    "unit_usage",
    "params",
    "params_protected",
    "param_usage",
    "free",
]
GROWTH_KEYS = ["task", "new_units", "reused_units", "network_sparsity", "param_usage"]
GROWTH_CSV_KEYS = [*GROWTH_KEYS, "units_used", "params_protected"]


@record.register
def _(report: CapacityReport) -> dict:
    return {
        "checkpoint": report.checkpoint,
        "tasks": list(report.tasks),
        "layers": [_fields(layer, USAGE_KEYS) for layer in report.layers],
        "total": _fields(report.total, USAGE_KEYS),
        "by_task": [_fields(step, GROWTH_KEYS) for step in report.by_task],
        "protects": report.protects,  # false: no masks protect anything (e.g. fine-tuning)
    }


@csv_rows.register
def _(report: CapacityReport, by_task: bool = False) -> tuple[list[str], list[list]]:
    if by_task:
        return GROWTH_CSV_KEYS, [_values(step, GROWTH_CSV_KEYS) for step in report.by_task]
    usages = [*report.layers, report.total]
    return USAGE_KEYS, [_values(usage, USAGE_KEYS) for usage in usages]


def _fields(item, keys: list[str]) -> dict:
    return dict(zip(keys, _values(item, keys), strict=True))


def _values(item, keys: list[str]) -> list:
    return [_finite(getattr(item, key)) for key in keys]


def _finite(value):
    """JSON has no NaN or infinity: such a float (say, a change to NaN) becomes null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


# measure


@record.register
def _(result: LayerMeasure) -> dict:
    return {
        "checkpoint": result.checkpoint,
        "layer": result.layer,
        "of": result.of,
        "aggregation": result.aggregation,
        "weight": _stats(result.weight_stats, result.weight_shape),
        "bias": None if result.bias_stats is None else _stats(result.bias_stats, result.bias_shape),
    }


@csv_rows.register
def _(result: LayerMeasure) -> tuple[list[str], list[list]]:
    tensors = [("weight", result.weight_stats), ("bias", result.bias_stats)]
    rows = [
        [name, value, count] for name, stats in tensors if stats for value, count in stats.histogram
    ]
    return ["tensor", "value", "count"], rows


def _stats(stats: Stats, shape: tuple[int, ...] | None = None) -> dict:
    """A measure's statistics; a tensor's come with its shape first."""
    return {
        **({} if shape is None else {"shape": list(shape)}),
        "count": stats.count,
        "min": stats.min,
        "max": stats.max,
        "mean": stats.mean,
        "histogram": [{"value": value, "count": count} for value, count in stats.histogram],
    }


# overlap


@record.register
def _(report: OverlapReport) -> dict:
    return {
        "checkpoint": report.checkpoint,
        "tasks": list(report.tasks),
        "network": _matrices(report.network),
        "layers": [{"name": layer.name, **_matrices(layer)} for layer in report.layers],
    }


OVERLAP_KEYS = ["scope", "task_a", "task_b", "shared", "union", "jaccard"]


@csv_rows.register
def _(report: OverlapReport, per_layer: bool = False) -> tuple[list[str], list[list]]:
    rows = [
        [scope.name, a, b, shared, union, jaccard]
        for scope in _overlap_scopes(report, per_layer)
        for (a, b), shared, union, jaccard in zip(
            _task_pairs(report.tasks), *_flat_matrices(scope), strict=True
        )
    ]
    return OVERLAP_KEYS, rows


def _overlap_csv(report: OverlapReport, per_layer: bool = False) -> str:
    """What `to_csv` would write of `csv_rows`, formatted a line at a time: the csv module
    takes about twice as long over the 409,600 rows of a network at 640 tasks."""
    tasks, count = report.tasks, len(report.tasks)
    lines = [_csv_line(OVERLAP_KEYS)]
    for scope in _overlap_scopes(report, per_layer):
        name = _csv_line([scope.name]).removesuffix("\n")  # quoted where csv quotes
        firsts = chain.from_iterable(map(repeat, tasks, repeat(count)))  # row-major pairs
        columns = (repeat(name), firsts, cycle(tasks), *_flat_matrices(scope))
        lines += map("{},{},{},{},{},{!r}\n".format, *columns)
    return "".join(lines)


def _overlap_scopes(report: OverlapReport, per_layer: bool) -> tuple[Overlap, ...]:
    return (report.network, *(report.layers if per_layer else ()))


def _task_pairs(tasks: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(a, b) for a in tasks for b in tasks]  # row-major, as the matrices


def _flat_matrices(scope: Overlap) -> tuple[list[int], list[int], list[float]]:
    return (
        scope.shared.ravel().tolist(),
        scope.union.ravel().tolist(),
        scope.jaccard.ravel().tolist(),
    )


def _matrices(scope: Overlap) -> dict:
    return {
        "units": scope.units,
        "shared": scope.shared.tolist(),
        "union": scope.union.tolist(),
        "jaccard": scope.jaccard.tolist(),
    }


# audit

AUDIT_KEYS = ["name", "protected", "changed", "max_abs_change", "mean_abs_change"]


@record.register
def _(report: AuditReport) -> dict:
    return {
        "before": report.before,
        "after": report.after,
        "tasks": list(report.tasks),
        "notes": list(report.notes),
        "algorithm": report.algorithm,
        "rule": report.rule,
        "tolerance": report.tolerance,
        "ok": report.ok,
        "verdict": verdict(report),  # the audit command's and the report's sentence
        "protected": report.protected,
        "changed": report.changed,
        "layers": [_fields(layer, AUDIT_KEYS) for layer in report.layers],
    }


@csv_rows.register
def _(report: AuditReport) -> tuple[list[str], list[list]]:
    return AUDIT_KEYS, [_values(layer, AUDIT_KEYS) for layer in report.layers]


# info


@record.register
def _(checkpoint: Checkpoint) -> dict:
    return {
        "checkpoint": checkpoint.path,
        "backbone": checkpoint.backbone,
        "source": checkpoint.source,
        "tasks": list(checkpoint.task_ids),
        "layers": [
            {
                "name": layer.name,
                "units": layer.units,
                "weight_shape": list(layer.weight_shape),
                "has_bias": layer.has_bias,
                "preceding": layer.preceding,
                "preceding_inferred": layer.preceding_inferred,
                "params": layer.params,
            }
            for layer in checkpoint.layers
        ],
        "metadata": _metadata(checkpoint.metadata),
        "notes": list(checkpoint.notes),
    }


def _metadata(metadata) -> dict:
    """User metadata with its values' types back, keys sorted (the file keeps no order).

    The file stores a string as is and anything else as JSON text, so text that parses
    as a JSON number, boolean, null, list or object is shown as that value."""
    return {key: _typed(metadata[key]) for key in sorted(metadata)}


def _typed(text: str):
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, str) or (isinstance(value, float) and not math.isfinite(value)):
        return text  # a string stored as is stays as it was written
    return value


@csv_rows.register
def _(checkpoint: Checkpoint) -> tuple[list[str], list[list]]:
    rows = [
        [
            layer.name,
            layer.units,
            "x".join(map(str, layer.weight_shape)),
            layer.has_bias,
            layer.preceding or "",
            layer.params,
        ]
        for layer in checkpoint.layers
    ]
    return ["name", "units", "weight_shape", "has_bias", "preceding", "params"], rows


# runs

STEP_KEYS = [
    "task",
    "units",
    "units_used",
    "unit_usage",
    "params",
    "params_protected",
    "param_usage",
    "new_units",
    "reused_units",
    "network_sparsity",
    "accuracy",
    "forgetting",
]
LAYER_KEYS = ["units", "units_used", "unit_usage", "params", "params_protected", "param_usage"]
FILE_KEYS = [
    "file",
    "tasks",
    "last_task",
    "units",
    "units_used",
    "unit_usage",
    "params",
    "params_protected",
    "param_usage",
]


@record.register
def _(comparison: Comparison) -> dict:
    return {"runs": [_run_record(run) for run in comparison.runs]}


def _run_record(run: RunSummary) -> dict:
    return {
        "name": run.name,
        "path": run.path,
        "files": list(run.files),
        "backbone": run.backbone,
        "algorithm": run.algorithm,
        "tasks": [step.task for step in run.steps],
        "by_task": [_fields(step, STEP_KEYS) for step in run.steps],
        "layers": [{"name": layer.name, **_fields(layer, LAYER_KEYS)} for layer in run.layers],
    }


@csv_rows.register
def _(comparison: Comparison, per_layer: bool = False) -> tuple[list[str], list[list]]:
    if per_layer:
        rows = [
            [run.name, layer.name, *_values(layer, LAYER_KEYS)]
            for run in comparison.runs
            for layer in run.layers
        ]
        return ["run", "layer", *LAYER_KEYS], rows
    rows = [[run.name, *_values(step, STEP_KEYS)] for run in comparison.runs for step in run.steps]
    return ["run", *STEP_KEYS], rows


@record.register
def _(result: RunCapacity) -> dict:
    return {
        **record(result.capacity),
        "trajectory": [_fields(step, FILE_KEYS) for step in result.trajectory],
    }


@csv_rows.register
def _(result: RunCapacity, by_task: bool = False) -> tuple[list[str], list[list]]:
    return csv_rows(result.capacity, by_task=by_task)


# reports


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
        "info": _document(run.checkpoint, final),
        "capacity": _document(run.capacity, final),
        "masks": _document(run.masks, final),
        "overlap": _document(run.overlap, final),
        "measures": [
            {
                "name": layer.name,
                "cumulative": _stats(layer.cumulative),
                "summative": _stats(layer.summative),
            }
            for layer in run.measures
        ],
        "audits": [
            _document(audit, pair)
            for audit, pair in zip(run.audits, zip(files, files[1:], strict=False), strict=True)
        ],
    }


def _document(result, checkpoints) -> dict:
    """The command's JSON document of `result`, without the schema key."""
    document = json.loads(to_json(result, checkpoints))
    del document["schema"]
    return document
