"""AdaHAT (Wang et al. 2024): HAT's hard gradient cut replaced by an adaptive, soft one.

A parameter used by n earlier tasks (n from the summative mask, eq. 9) gets its gradient
scaled by ``r / (n + r)``: untouched when no task uses it (n = 0), damped more the more
tasks rely on it. ``r = alpha / (R_l + eps)`` grows as the current task claims fewer new
units in layer l (R_l small), so a task that fits in old units may adapt them a little.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from hatinspect.training.hat import parameter_measures

ALPHA = 0.1  # adjustment intensity; smaller is closer to HAT (1e-3 is HAT here, to 3 decimals)
EPSILON = 0.1


def network_sparsity(mask: Mapping[str, Tensor], cumulative: Mapping[str, Tensor]) -> dict:
    """R_l per layer: ``sum a (1 - a_cum) / sum (1 - a_cum)``, eq. 5's term for layer l alone.

    The share of layer l's free units that the current (annealed) mask claims; 0 when
    no unit is free.
    """
    sparsity = {}
    for name, layer_mask in mask.items():
        free = (1 - cumulative[name]).sum()
        used = (layer_mask.detach() * (1 - cumulative[name])).sum()
        sparsity[name] = float(used / free) if free > 0 else 0.0
    return sparsity


def adjustment_rate(summative: Tensor, sparsity: float, alpha: float, epsilon: float) -> Tensor:
    """``r / (summative + r)`` with ``r = alpha / (sparsity + epsilon)``."""
    r = alpha / (sparsity + epsilon)
    return r / (summative + r)


class AdaHATAdjustment:
    """Scales each weighted layer's gradient by its adjustment rate, parameter by parameter."""

    def __init__(self, backbone: nn.Module, alpha: float = ALPHA, epsilon: float = EPSILON):
        self.alpha, self.epsilon = alpha, epsilon
        self.cumulative = backbone.get_cumulative_mask()
        summative = backbone.get_summative_mask()
        # (layer name, parameter, min(sum[i], sum_preceding[j]) shaped like the parameter)
        self.measures = list(parameter_measures(backbone, summative))

    @torch.no_grad()
    def __call__(self, mask: Mapping[str, Tensor]) -> None:
        sparsity = network_sparsity(mask, self.cumulative)
        for name, parameter, summative in self.measures:
            if parameter.grad is not None:
                rate = adjustment_rate(summative, sparsity[name], self.alpha, self.epsilon)
                parameter.grad.mul_(rate)
