"""AdaHAT's soft protection, rebuilt from the stored masks: the rate by which each
parameter's gradient is scaled while the newest task trains.

AdaHAT (Wang et al., 2024, eqs. 8-9): a parameter of layer l with importance I (the
summative mask of the earlier tasks, the smaller of its two units') moves by
a = r / (I + r), with r = alpha / (epsilon + s_l) and s_l the layer's network sparsity:
the share of the units free before the task that the task claims (0 where at most ten
units were free, as CLArena's regulariser has it). CLArena's modes: ``adahat`` as above,
``adahat_no_sum`` with I = the task's id everywhere, ``adahat_no_reg`` with s_l = 0.

The rate falls as I grows, so r / (min(I_i, I_j) + r) = max(a_i, a_j): the rates of the
two units, combined by max, are a parameter-wise measure like the masks'.

CLArena recomputes s_l every batch from the soft mask and never stores it; here it is the
newest retained task's stored (binary) mask against the earlier tasks' cumulative mask:
the rates at the end of that task's training, or the sparsity the user gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hatinspect.analysis.capacity import inputs_per_unit
from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.errors import HatinspectError
from hatinspect.model.names import SOFT
from hatinspect.native.format import hyperparameters, named_algorithm, protection_of

MODES = ("adahat", "adahat_no_sum", "adahat_no_reg")
MIN_FREE_UNITS = 10  # CLArena's regulariser counts a layer's sparsity only above this


class AdjustmentRefused(HatinspectError, ValueError):
    """The file's algorithm has no adjustment rate this module can rebuild."""


@dataclass(frozen=True)
class Adjustment:
    """The inputs of the rate: the training task, its mode and constants, and per layer
    the network sparsity and the unit-wise importance."""

    task: int
    mode: str
    alpha: float
    epsilon: float
    sparsity: dict[str, float]
    importance: dict[str, np.ndarray]  # layer -> (units,) float64
    sparsity_given: bool = False

    def basis(self, layer: str) -> dict:
        """What layer `layer`'s rates were built from, for a report."""
        return {"task": self.task, "mode": self.mode, "alpha": self.alpha,
                "epsilon": self.epsilon, "sparsity": self.sparsity[layer],
                "sparsity_given": self.sparsity_given}  # fmt: skip

    def rates(self, layer: str, importance: np.ndarray) -> np.ndarray:
        """float64: the rate of layer `layer`'s parameters of the given importances."""
        sparsity = 0.0 if self.mode == "adahat_no_reg" else self.sparsity[layer]
        r = self.alpha / (self.epsilon + sparsity)
        if self.mode == "adahat_no_sum":
            importance = np.full_like(importance, float(self.task))
        return r / (importance + r)


def adjustment(checkpoint: Checkpoint, sparsity: float | None = None) -> Adjustment:
    """The adjustment of the newest retained task of an AdaHAT-family file."""
    algorithm = named_algorithm(checkpoint.metadata)
    hparams = hyperparameters(checkpoint.metadata)
    mode = hparams.get("adjustment_mode")
    if algorithm == "fg-adahat":
        raise AdjustmentRefused(
            "FG-AdaHAT's rate is built from its per-unit importances, not from the masks; "
            "measure --of adjustment rebuilds AdaHAT's"
        )
    if mode not in MODES or not _number(hparams.get("adjustment_intensity")):
        raise AdjustmentRefused(
            f"{checkpoint.path} names no AdaHAT adjustment (its algorithm: "
            f"{algorithm or 'none named'}); the adjustment rate needs adjustment_mode and "
            "adjustment_intensity"
        )
    tasks = checkpoint.retained_task_ids
    if not tasks:
        raise AdjustmentRefused(f"{checkpoint.path} stores no learned task")
    last, earlier = tasks[-1], tasks[:-1]
    importance = {
        layer.name: sum((checkpoint.masks[t][layer.name].astype(np.float64) for t in earlier),
                        np.zeros(layer.units))
        for layer in checkpoint.layers
    }  # fmt: skip
    if sparsity is None:
        shares = network_sparsity(checkpoint, last, earlier)
    else:
        shares = {layer.name: float(sparsity) for layer in checkpoint.layers}
    epsilon = hparams.get("epsilon")
    return Adjustment(
        task=last,
        mode=mode,
        alpha=float(hparams["adjustment_intensity"]),
        epsilon=float(epsilon) if _number(epsilon) else 0.1,
        sparsity=shares,
        importance=importance,
        sparsity_given=sparsity is not None,
    )


def network_sparsity(checkpoint: Checkpoint, task: int, earlier) -> dict[str, float]:
    """Per layer, the share of the units free before `task` that its mask claims (HAT's
    regulariser's ratio, CLArena's ``network_sparsity``); 0 with ten free units or fewer."""
    out = {}
    for layer in checkpoint.layers:
        before = np.zeros(layer.units, dtype=bool)
        for t in earlier:
            before |= checkpoint.masks[t][layer.name] > 0
        free = int((~before).sum())
        claimed = int(((checkpoint.masks[task][layer.name] > 0) & ~before).sum())
        out[layer.name] = claimed / free if free > MIN_FREE_UNITS else 0.0
    return out


def rate_factors(checkpoint: Checkpoint, rates: Adjustment, name: str):
    """(rows, columns) float32 of layer `name`: a weight's rate is max(rows[i], columns[j])
    (columns None for a first layer, whose weights take their unit's rate)."""
    layer = checkpoint.layer(name)
    rows = rates.rates(name, rates.importance[name])
    columns = None
    if layer.preceding is not None:
        source = checkpoint.layer(layer.preceding)
        importance = np.repeat(rates.importance[source.name], inputs_per_unit(layer, source))
        columns = rates.rates(name, importance).astype(np.float32)
    return rows.astype(np.float32), columns


def network_capacity(checkpoint: Checkpoint, rates: Adjustment) -> dict[str, float]:
    """Two means of the rate over the network.

    ``clarena``: as CLArena's ``HATNetworkCapacityMetric`` sums it: every weight, and a
    rate per unit for a bias whether the layer has one or not; in ``adahat_no_sum`` mode
    each layer's rates are one number, counted once for its weight and once for its bias.
    ``per_parameter``: the mean over the parameters the network has."""
    total = count = clarena_total = clarena_count = 0.0
    for layer in checkpoint.layers:
        rows, columns = rate_factors(checkpoint, rates, layer.name)
        rows64 = rows.astype(np.float64)
        if columns is None:
            weight_sum = rows64.sum() * layer.fan_in * layer.kernel_size
        else:
            pairs = np.maximum(rows64[:, None], columns.astype(np.float64)[None, :])
            weight_sum = pairs.sum() * layer.kernel_size
        weights = layer.params - (layer.units if layer.has_bias else 0)
        total += weight_sum + (rows64.sum() if layer.has_bias else 0.0)
        count += layer.params
        if rates.mode == "adahat_no_sum":
            clarena_total += 2 * float(rows64[0]) if rows64.size else 0.0
            clarena_count += 2
        else:
            clarena_total += weight_sum + rows64.sum()
            clarena_count += weights + layer.units
    return {"clarena": float(clarena_total / clarena_count), "per_parameter": float(total / count)}


def _number(value) -> bool:
    return type(value) in (int, float) and value == value


def with_network_capacity(report, checkpoint: Checkpoint):
    """A capacity report with the network capacity of a soft-protecting algorithm's file
    (the report unchanged for any other file)."""
    from dataclasses import replace

    if protection_of(checkpoint.metadata) != SOFT:
        return report
    try:
        rates = adjustment(checkpoint)
    except AdjustmentRefused:
        return report
    return replace(report, network_capacity=network_capacity(checkpoint, rates))
