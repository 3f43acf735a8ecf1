"""Parameter-wise measures: a unit-wise measure spread over a layer's weights and biases.

Mirrors `HATMaskBackbone.get_layer_measure_parameter_wise` in numpy:
weight[i, j, ...] = agg(m_layer[i], m_preceding[j]); the first layer uses m_layer[i] alone;
bias[i] = m_layer[i].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from hatinspect.core.capacity import inputs_per_unit
from hatinspect.core.results import Result
from hatinspect.core.select import find_layer, select_tasks
from hatinspect.core.types import Checkpoint, LayerInfo

AGGREGATIONS = {"min": np.minimum, "max": np.maximum}
UNIT_WISE = ("cumulative", "summative", "task:N")


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
    checkpoint: str
    layer: str
    of: str  # "cumulative", "summative" or "task:N"
    aggregation: str  # "min" or "max"
    weight_stats: Stats
    bias_stats: Stats | None
    weight: np.ndarray = field(repr=False, compare=False)  # the weight's shape
    bias: np.ndarray | None = field(repr=False, compare=False)  # (units,), None without bias

    @property
    def weight_matrix(self) -> np.ndarray:
        """(out, in): conv kernels summed over their spatial extent, for drawing."""
        return self.weight.reshape(*self.weight.shape[:2], -1).sum(axis=2)


def measure(
    checkpoint: Checkpoint, layer_name: str, of: str = "cumulative", aggregation: str = "min"
) -> LayerMeasure:
    """The parameter-wise measure of one layer; `of` names the unit-wise measure."""
    layer = find_layer(checkpoint, layer_name)
    unit_wise = unit_wise_measure(checkpoint, of)
    weight, bias = parameter_wise(checkpoint, layer, unit_wise, aggregation)
    return LayerMeasure(
        checkpoint=checkpoint.path,
        layer=layer.name,
        of=of,
        aggregation=aggregation,
        weight_stats=summarise(weight),
        bias_stats=None if bias is None else summarise(bias),
        weight=weight,
        bias=bias,
    )


def parse_unit_wise(of: str) -> int | None:
    """The task of "task:N" (None for cumulative and summative); ValueError otherwise."""
    if of in ("cumulative", "summative"):
        return None
    kind, _, number = of.partition(":")
    if kind != "task" or not number.strip().lstrip("-").isdigit():
        raise ValueError(f"{of!r} is not one of {', '.join(UNIT_WISE)}")
    return int(number)


def unit_wise_measure(checkpoint: Checkpoint, of: str) -> Mapping[str, np.ndarray]:
    """Layer name -> (units,) measure: the cumulative, summative or one task's mask."""
    task = parse_unit_wise(of)
    if task is not None:
        return checkpoint.masks[select_tasks(checkpoint, [task])[0]]
    return checkpoint.cumulative_mask() if of == "cumulative" else checkpoint.summative_mask()


def parameter_wise(
    checkpoint: Checkpoint,
    layer: LayerInfo,
    unit_wise: Mapping[str, np.ndarray],
    aggregation: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(weight-shaped, bias-shaped or None) float32 measure of `layer`."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be min or max, not {aggregation!r}")
    rows = np.asarray(unit_wise[layer.name], dtype=np.float32)
    # (out, in): the 2-D pattern every kernel position repeats
    pattern = np.broadcast_to(rows[:, None], layer.weight_shape[:2])
    if layer.preceding is not None:
        source = checkpoint.layer(layer.preceding)
        columns = np.repeat(unit_wise[source.name], inputs_per_unit(layer, source))
        pattern = AGGREGATIONS[aggregation](rows[:, None], columns[None, :].astype(np.float32))
    spatial = (1,) * (len(layer.weight_shape) - 2)
    weight = np.broadcast_to(pattern.reshape(pattern.shape + spatial), layer.weight_shape)
    bias = rows.copy() if layer.has_bias else None
    return np.ascontiguousarray(weight), bias


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
