"""Parameter-wise measures: a unit-wise measure spread over a layer's weights and biases.

Mirrors `HATMaskBackbone.get_layer_measure_parameter_wise` in numpy:
weight[i, j, ...] = agg(m_layer[i], m_preceding[j]); the first layer uses m_layer[i] alone;
bias[i] = m_layer[i].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from hatinspect.analysis.adjustment import adjustment, rate_factors
from hatinspect.analysis.capacity import inputs_per_unit
from hatinspect.analysis.importance import importances
from hatinspect.analysis.select import (
    find_layer,
    require_unit_masks,
    require_weights,
    select_tasks,
)
from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.errors import HatinspectError
from hatinspect.model.records import csv_rows, record
from hatinspect.model.result import Result
from hatinspect.native.blocks import BLOCK_BYTES

AGGREGATIONS = {"min": np.minimum, "max": np.maximum}
ADJUSTMENT = "adjustment"  # AdaHAT's adjustment rate (analysis.adjustment)
IMPORTANCE = "importance"  # FG-AdaHAT's summed importance; "importance:N": task N's
UNIT_WISE = ("cumulative", "summative", "task:N", ADJUSTMENT, IMPORTANCE, "importance:N")


@dataclass(frozen=True)
class Stats:
    """Summary of a measure over a tensor's entries."""

    count: int
    min: float
    max: float
    mean: float
    histogram: tuple[tuple[float, int], ...]  # (value, entries with it), values ascending


@dataclass(frozen=True)
class LayerMeasure(Result):
    """One layer's parameter-wise measure, kept as its two unit-wise factors: the weight
    (i, j, ...) is agg(rows[i], columns[j]), so nothing weight-sized is held."""

    MARKS_INFERRED: ClassVar[bool] = True  # its JSON says which preceding layers are inferred
    checkpoint: str
    layer: str
    of: str  # "cumulative", "summative", "task:N" or "adjustment"
    aggregation: str  # "min" or "max" (always "max" for the adjustment rate)
    weight_stats: Stats
    bias_stats: Stats | None
    weight_shape: tuple[int, ...]
    rows: np.ndarray = field(repr=False, compare=False)  # (out,) float32: the layer's units
    # (in,) float32: the preceding layer's measure per input; None for a first layer
    columns: np.ndarray | None = field(repr=False, compare=False)
    # of="adjustment": the rule's inputs (task, mode, alpha, epsilon, sparsity, given)
    adjustment: Mapping | None = None

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        return None if self.bias_stats is None else (self.weight_shape[0],)

    @property
    def bias(self) -> np.ndarray | None:
        """(units,) float32; None without bias."""
        return None if self.bias_stats is None else self.rows.copy()

    @property
    def weight(self) -> np.ndarray:
        """The whole weight-shaped float32 measure (built on demand: a small layer's)."""
        return np.concatenate(list(self.weight_blocks())).reshape(self.weight_shape)

    def weight_blocks(self, limit: int = BLOCK_BYTES):
        """The weight-shaped measure as float32 blocks of whole rows, in row-major order,
        each about `limit` bytes at most (one row at least): for streaming it to a file."""
        per_row = math.prod(self.weight_shape[1:]) * 4
        step = max(1, limit // per_row)
        for start in range(0, self.weight_shape[0], step):
            pattern = self._pattern(slice(start, start + step))
            spatial = pattern.shape + (1,) * (len(self.weight_shape) - 2)
            yield np.broadcast_to(
                pattern.reshape(spatial), (pattern.shape[0], *self.weight_shape[1:])
            )

    @property
    def weight_matrix(self) -> np.ndarray:
        """(out, in): conv kernels summed over their spatial extent, for drawing."""
        kernel = math.prod(self.weight_shape[2:])
        return self._pattern(slice(None)) * np.float32(kernel)

    def _pattern(self, rows: slice) -> np.ndarray:
        """(rows, in) float32: the 2-D pattern every kernel position repeats."""
        mine = self.rows[rows, None]
        if self.columns is None:
            return np.repeat(mine, self.weight_shape[1], axis=1)
        return AGGREGATIONS[self.aggregation](mine, self.columns[None, :])


def measure(
    checkpoint: Checkpoint,
    layer_name: str,
    of: str = "cumulative",
    aggregation: str = "min",
    sparsity: float | None = None,
) -> LayerMeasure:
    """The parameter-wise measure of one layer; `of` names the unit-wise measure.

    Statistics and histograms come in closed form from the two unit-wise vectors, so the
    memory used is that of the vectors, whatever the layer's size."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be min or max, not {aggregation!r}")
    require_unit_masks(checkpoint, "the parameter-wise measure")
    require_weights(checkpoint, "the parameter-wise measure")
    layer = find_layer(checkpoint, layer_name)
    basis = None
    if of == ADJUSTMENT:  # a rate falls as importance rises: min of importance, max of rate
        rates = adjustment(checkpoint, sparsity)
        rows, columns = rate_factors(checkpoint, rates, layer.name)
        aggregation = rates.combine
        basis = rates.basis(layer.name)
    else:
        rows, columns = _mask_factors(checkpoint, layer, of)
    return LayerMeasure(
        checkpoint=checkpoint.path,
        layer=layer.name,
        of=of,
        aggregation=aggregation,
        weight_stats=pair_stats(rows, columns, aggregation, layer.fan_in, layer.kernel_size),
        bias_stats=summarise(rows) if layer.has_bias else None,
        weight_shape=layer.weight_shape,
        rows=rows,
        columns=columns,
        adjustment=basis,
    )


def _mask_factors(checkpoint: Checkpoint, layer, of: str):
    unit_wise = unit_wise_measure(checkpoint, of)
    rows = np.asarray(unit_wise[layer.name], dtype=np.float32)
    if layer.preceding is None:
        return rows, None
    source = checkpoint.layer(layer.preceding)
    repeats = inputs_per_unit(layer, source)
    return rows, np.repeat(np.asarray(unit_wise[source.name], dtype=np.float32), repeats)


def pair_stats(
    rows: np.ndarray, columns: np.ndarray | None, aggregation: str, fan_in: int, kernel: int
) -> Stats:
    """Stats of the entries agg(rows[i], columns[j]), each repeated `kernel` times, without
    building them: with R(v) and C(v) the rows and columns valued v, min(r, c) >= v exactly
    when both are, so #{min == v} = R>=(v) C>=(v) - R>(v) C>(v); max mirrors it with <=.
    A first layer (no columns) repeats each row `fan_in` times."""
    if columns is None:
        values, counts = np.unique(rows, return_counts=True)
        return _stats(values, counts.astype(np.int64) * (fan_in * kernel))
    values = np.unique(np.concatenate([rows, columns]))
    in_rows = _counts_at(values, rows)
    in_columns = _counts_at(values, columns)
    if aggregation == "max":  # reversed, "at least" becomes "at most"
        in_rows, in_columns = in_rows[::-1], in_columns[::-1]
    at_least_r = np.cumsum(in_rows[::-1])[::-1]
    at_least_c = np.cumsum(in_columns[::-1])[::-1]
    above = (at_least_r - in_rows) * (at_least_c - in_columns)
    counts = at_least_r * at_least_c - above
    if aggregation == "max":
        counts = counts[::-1]
    keep = counts > 0
    return _stats(values[keep], counts[keep] * kernel)


def _counts_at(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """(len(values),) int64: how many entries of `of` equal each of the sorted `values`."""
    found, counts = np.unique(of, return_counts=True)
    out = np.zeros(values.size, dtype=np.int64)
    out[np.searchsorted(values, found)] = counts
    return out


def _stats(values: np.ndarray, counts: np.ndarray) -> Stats:
    total = int(counts.sum())
    return Stats(
        count=total,
        min=_number(values[0]),
        max=_number(values[-1]),
        mean=float(np.dot(values.astype(np.float64), counts.astype(np.float64)) / total),
        histogram=tuple((_number(v), int(n)) for v, n in zip(values, counts, strict=True)),
    )


def parse_unit_wise(of: str) -> int | None:
    """The task of "task:N" or "importance:N" (None for cumulative, summative, adjustment
    and importance); ValueError otherwise."""
    if of in ("cumulative", "summative", ADJUSTMENT, IMPORTANCE):
        return None
    kind, _, number = of.partition(":")
    digits = number.strip().removeprefix("-")
    if kind not in ("task", IMPORTANCE) or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{of!r} is not one of {', '.join(UNIT_WISE)}")
    if len(digits) > 10:  # no task id has more (and int() of 5,000 digits raises)
        raise ValueError(f"{kind}:N: no task has a number of {len(digits)} digits")
    return int(number)


def unit_wise_measure(checkpoint: Checkpoint, of: str) -> Mapping[str, np.ndarray]:
    """Layer name -> (units,) measure: the cumulative, summative or one task's mask."""
    task = parse_unit_wise(of)
    if of.partition(":")[0] == IMPORTANCE:
        return _importance(checkpoint, task)
    if task is not None:
        return checkpoint.masks[select_tasks(checkpoint, [task])[0]]
    return checkpoint.cumulative_mask() if of == "cumulative" else checkpoint.summative_mask()


def _importance(checkpoint: Checkpoint, task: int | None) -> Mapping[str, np.ndarray]:
    stored = importances(checkpoint)
    if stored is None:
        raise HatinspectError(f"{checkpoint.path} holds no importances (FG-AdaHAT's are read)")
    if task is None:
        if stored.summative is None:
            raise HatinspectError(f"{checkpoint.path} holds no summed importance")
        return stored.summative
    if task not in stored.tasks:
        have = ", ".join(map(str, stored.tasks)) or "none"
        raise HatinspectError(
            f"{checkpoint.path} holds no importance of task {task}; it has {have}"
        )
    return stored.tasks[task]


def summarise(values: np.ndarray) -> Stats:
    distinct, counts = np.unique(values, return_counts=True)
    return Stats(
        count=int(values.size),
        min=_number(values.min()),
        max=_number(values.max()),
        mean=float(values.mean(dtype=np.float64)),
        histogram=tuple((_number(v), int(n)) for v, n in zip(distinct, counts, strict=True)),
    )


def _number(value) -> float | int:
    """An integral value as int, so that JSON shows 1 rather than 1.0."""
    value = float(value)
    return int(value) if value.is_integer() else value


# machine output (JSON record, CSV rows)


@record.register
def _(result: LayerMeasure) -> dict:
    return {
        "checkpoint": result.checkpoint,
        "layer": result.layer,
        "of": result.of,
        "aggregation": result.aggregation,
        **({} if result.adjustment is None else {"adjustment": dict(result.adjustment)}),
        "weight": stats_record(result.weight_stats, result.weight_shape),
        "bias": None
        if result.bias_stats is None
        else stats_record(result.bias_stats, result.bias_shape),
    }


@csv_rows.register
def _(result: LayerMeasure) -> tuple[list[str], list[list]]:
    tensors = [("weight", result.weight_stats), ("bias", result.bias_stats)]
    rows = [
        [name, value, count] for name, stats in tensors if stats for value, count in stats.histogram
    ]
    return ["tensor", "value", "count"], rows


def stats_record(stats: Stats, shape: tuple[int, ...] | None = None) -> dict:
    """A measure's statistics; a tensor's come with its shape first."""
    return {
        **({} if shape is None else {"shape": list(shape)}),
        "count": stats.count,
        "min": stats.min,
        "max": stats.max,
        "mean": stats.mean,
        "histogram": [{"value": value, "count": count} for value, count in stats.histogram],
    }
