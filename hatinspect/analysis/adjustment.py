"""Soft protection rebuilt from a file: the rate by which AdaHAT and FG-AdaHAT scale each
parameter's gradient while the newest task trains.

Both rates have the form a = alpha / (k_l * I + alpha), I a parameter's importance for the
earlier tasks and k_l a factor of its layer l:

- AdaHAT (Wang et al., 2024, eqs. 8-9): a = r / (I + r) with r = alpha / (epsilon + s_l),
  that is k_l = epsilon + s_l; I is the summative mask of the earlier tasks, the smaller of
  a weight's two units'. CLArena's modes: ``adahat``; ``adahat_no_sum``, with I = the task's
  id everywhere; ``adahat_no_reg``, with s_l = 0.
- FG-AdaHAT: I is the summed per-unit importance of the earlier tasks (optionally times the
  cumulative mask), combined by the run's aggregation; k_l = s_l + base_mask_sparsity_reg,
  times (t + base_linear) under the ``linear_sparsity_reg`` scheduler.

s_l is the layer's network sparsity: the share of the units free before the task that the
task claims (0 where at most ten units were free, as CLArena's regulariser has it). CLArena
recomputes it every batch from the soft mask and never stores it; here it is the newest
retained task's stored (binary) mask against the earlier tasks' cumulative mask: the rates
at the end of that task's training, or the sparsity the user gives.

The rate falls as I grows, so the rate of min(I_i, I_j) is max(a_i, a_j) (and of the max,
the min): the rates of a weight's two units, combined, are a parameter-wise measure like
the masks'.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hatinspect.analysis.capacity import inputs_per_unit
from hatinspect.analysis.importance import importances
from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.errors import HatinspectError
from hatinspect.model.names import SOFT
from hatinspect.native.format import hyperparameters, named_algorithm, protection_of

MODES = ("adahat", "adahat_no_sum", "adahat_no_reg")
FG_SCHEDULERS = ("sparsity_reg", "linear_sparsity_reg")
MIN_FREE_UNITS = 10  # CLArena's regulariser counts a layer's sparsity only above this
# how a weight combines its two units' importances -> how it combines their rates
RATE_COMBINATION = {"min": "max", "max": "min"}
COMBINE = {"max": np.maximum, "min": np.minimum}


class AdjustmentRefused(HatinspectError, ValueError):
    """The file's algorithm has no adjustment rate this module can rebuild."""


@dataclass(frozen=True)
class Adjustment:
    """The inputs of the rate: the training task, the rule and its constants, and per
    layer the network sparsity, the factor k and the unit-wise importance."""

    task: int
    mode: str  # an AdaHAT mode, or "fg-adahat"
    alpha: float
    sparsity: dict[str, float]
    factor: dict[str, float]  # k_l
    importance: dict[str, np.ndarray]  # layer -> (units,) float64
    combine: str = "max"  # how a weight combines its two units' rates
    sparsity_given: bool = False

    def basis(self, layer: str) -> dict:
        """What layer `layer`'s rates were built from, for a report."""
        return {"task": self.task, "mode": self.mode, "alpha": self.alpha,
                "factor": self.factor[layer], "sparsity": self.sparsity[layer],
                "sparsity_given": self.sparsity_given}  # fmt: skip

    def rates(self, layer: str, importance: np.ndarray) -> np.ndarray:
        """float64: the rate of layer `layer`'s parameters of the given importances."""
        return self.alpha / (self.factor[layer] * importance + self.alpha)


def adjustment(checkpoint: Checkpoint, sparsity: float | None = None) -> Adjustment:
    """The adjustment of the newest retained task of an AdaHAT-family file."""
    algorithm = named_algorithm(checkpoint.metadata)
    hparams = hyperparameters(checkpoint.metadata)
    if not _number(hparams.get("adjustment_intensity")):
        raise _refused(checkpoint, algorithm, "it records no adjustment_intensity")
    tasks = checkpoint.retained_task_ids
    if not tasks:
        raise AdjustmentRefused(f"{checkpoint.path} stores no learned task")
    last, earlier = tasks[-1], tasks[:-1]
    regulariser = hparams.get("mask_sparsity_reg_mode", "original")
    if sparsity is None and regulariser != "original":
        why = f"its network sparsity comes from the {regulariser!r} regulariser; give --sparsity S"
        raise _refused(checkpoint, algorithm, why)
    if sparsity is None:
        shares = network_sparsity(checkpoint, last, earlier)
    else:
        shares = {layer.name: float(sparsity) for layer in checkpoint.layers}
    rule = _fg_adahat if algorithm == "fg-adahat" else _adahat
    return rule(checkpoint, hparams, last, earlier, shares, sparsity is not None)


def _adahat(checkpoint, hparams, last, earlier, shares, given) -> Adjustment:
    mode = hparams.get("adjustment_mode")
    if mode not in MODES:
        why = f"its adjustment_mode is {mode!r}, not one of {', '.join(MODES)}"
        raise _refused(checkpoint, named_algorithm(checkpoint.metadata), why)
    epsilon = float(hparams["epsilon"]) if _number(hparams.get("epsilon")) else 0.1
    if mode == "adahat_no_sum":
        importance = {layer.name: np.full(layer.units, float(last)) for layer in checkpoint.layers}
    else:
        importance = _summed(checkpoint, earlier)
    no_reg = mode == "adahat_no_reg"
    factor = {name: epsilon + (0.0 if no_reg else s) for name, s in shares.items()}
    return Adjustment(last, mode, float(hparams["adjustment_intensity"]), shares, factor,
                      importance, sparsity_given=given)  # fmt: skip


def _fg_adahat(checkpoint, hparams, last, earlier, shares, given) -> Adjustment:
    stored = importances(checkpoint)
    scheduler = hparams.get("importance_scheduler_type")
    aggregation = hparams.get("neuron_to_weight_importance_aggregation_mode")
    problems = [
        (stored is None, "the file holds no importances"),
        (hparams.get("importance_summing_strategy") != "add_latest",
         "its importances are summed by a strategy other than add_latest"),
        (scheduler not in FG_SCHEDULERS, f"its importance scheduler is {scheduler!r}"),
        (aggregation not in RATE_COMBINATION, f"its importances combine by {aggregation!r}"),
        (hparams.get("filter_by_cumulative_mask") is True and aggregation != "min",
         "it filters max-combined importances by the cumulative mask"),
        (not all(_number(hparams.get(k)) for k in ("base_mask_sparsity_reg", "base_linear")),
         "it records no base_mask_sparsity_reg or base_linear"),
    ]  # fmt: skip
    for failed, why in problems:
        if failed:
            raise _refused(checkpoint, "fg-adahat", why)
    missing = [t for t in earlier if t not in stored.tasks]
    if missing:
        raise _refused(checkpoint, "fg-adahat", f"task {missing[0]}'s importance is missing")
    importance = {
        layer.name: sum((stored.tasks[t][layer.name] for t in earlier), np.zeros(layer.units))
        for layer in checkpoint.layers
    }
    if hparams.get("filter_by_cumulative_mask") is True:  # min(I_i c_i, I_j c_j): c is 0/1
        cumulative = _summed(checkpoint, earlier)
        importance = {n: v * (cumulative[n] > 0) for n, v in importance.items()}
    scale = last + float(hparams["base_linear"]) if scheduler == "linear_sparsity_reg" else 1.0
    base = float(hparams["base_mask_sparsity_reg"])
    factor = {name: (s + base) * scale for name, s in shares.items()}
    return Adjustment(last, "fg-adahat", float(hparams["adjustment_intensity"]), shares, factor,
                      importance, RATE_COMBINATION[aggregation], given)  # fmt: skip


def _summed(checkpoint: Checkpoint, tasks) -> dict[str, np.ndarray]:
    """Per layer, how many of `tasks` use each unit, as float64."""
    return {
        layer.name: sum((checkpoint.masks[t][layer.name].astype(np.float64) for t in tasks),
                        np.zeros(layer.units))
        for layer in checkpoint.layers
    }  # fmt: skip


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
    """(rows, columns) float32 of layer `name`: a weight's rate combines rows[i] and
    columns[j] by ``rates.combine`` (columns None for a first layer, whose weights take
    their unit's rate)."""
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
        rows, columns = (part if part is None else part.astype(np.float64)
                         for part in rate_factors(checkpoint, rates, layer.name))  # fmt: skip
        if columns is None:
            weight_sum = rows.sum() * layer.fan_in * layer.kernel_size
        else:
            pairs = COMBINE[rates.combine](rows[:, None], columns[None, :])
            weight_sum = pairs.sum() * layer.kernel_size
        weights = layer.params - (layer.units if layer.has_bias else 0)
        total += weight_sum + (rows.sum() if layer.has_bias else 0.0)
        count += layer.params
        if rates.mode == "adahat_no_sum":
            clarena_total += 2 * float(rows[0]) if rows.size else 0.0
            clarena_count += 2
        else:
            clarena_total += weight_sum + rows.sum()
            clarena_count += weights + layer.units
    return {"clarena": float(clarena_total / clarena_count), "per_parameter": float(total / count)}


def with_network_capacity(report, checkpoint: Checkpoint):
    """A capacity report with the network capacity of a soft-protecting algorithm's file
    (the report unchanged for any other file, or one whose rate cannot be rebuilt)."""
    if protection_of(checkpoint.metadata) != SOFT:
        return report
    try:
        rates = adjustment(checkpoint)
    except AdjustmentRefused:
        return report
    return replace(report, network_capacity=network_capacity(checkpoint, rates))


def _refused(checkpoint: Checkpoint, algorithm: str, why: str) -> AdjustmentRefused:
    return AdjustmentRefused(
        f"{checkpoint.path}: no adjustment rate to rebuild ({algorithm or 'no algorithm named'}:"
        f" {why})"
    )


def _number(value) -> bool:
    return type(value) in (int, float) and value == value
