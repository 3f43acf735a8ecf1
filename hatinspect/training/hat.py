"""HAT's training rules (Serra et al. 2018), as small functions over a ``HATMaskBackbone``.

Equation numbers are the paper's. Masks are dicts layer name -> (units,) tensor; the
cumulative mask is the element-wise max of the binary masks of the tasks learnt before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

S_MAX = 400.0
SPARSITY_FACTOR = 0.75  # c in eq. 5
EMBEDDING_BOUND = 6.0  # gate(s_max * 6) is 1 in float32: no need to go further
COSH_BOUND = 50.0  # cosh overflows float32 just above 89


def sparsity_regularisation(
    mask: Mapping[str, Tensor], cumulative: Mapping[str, Tensor], factor: float = SPARSITY_FACTOR
) -> Tensor:
    """Eq. 5: ``c * sum a (1 - a_cum) / sum (1 - a_cum)`` over all layers' units.

    Only units still free (not in the cumulative mask) count, so reusing units of
    earlier tasks costs nothing. With no free unit left the term is zero.
    """
    return SparsityRegulariser(cumulative, factor)(mask)


class SparsityRegulariser:
    """Eq. 5 for one task. Which units are free is fixed while the task trains, so their
    weights ``1 - a_cum`` (all layers end to end) and their count are worked out once; each
    step is then one dot product, with the same gradient as the sum it stands for."""

    def __init__(self, cumulative: Mapping[str, Tensor], factor: float = SPARSITY_FACTOR) -> None:
        self.factor, self.names = factor, list(cumulative)
        self.free_units = torch.cat([1 - cumulative[name] for name in self.names])
        self.free = self.free_units.sum()
        self.full = bool(self.free == 0)

    def __call__(self, mask: Mapping[str, Tensor]) -> Tensor:
        if self.full:
            return torch.zeros(())
        used = torch.dot(torch.cat([mask[name] for name in self.names]), self.free_units)
        return self.factor * used / self.free


def parameter_measures(
    backbone: nn.Module, unit_measure: Mapping[str, Tensor]
) -> Iterator[tuple[str, nn.Parameter, Tensor]]:
    """(layer name, weight or bias, ``min(m[i], m_preceding[j])`` shaped like it)."""
    for name in backbone.weighted_layer_names:
        layer = backbone.get_layer_by_name(name)
        weight_measure, bias_measure = backbone.get_layer_measure_parameter_wise(
            unit_measure, name, "min"
        )
        yield name, layer.weight, weight_measure
        if bias_measure is not None:
            yield name, layer.bias, bias_measure


class HATConditioning:
    """Eq. 2: every weighted layer's gradient times ``1 - min(cum[i], cum_preceding[j])``.

    The factors are 0 or 1 and fixed for the whole task, so they are computed once. A
    parameter with factor 0 gets an exact zero gradient: under plain SGD it stays
    bit-identical.
    """

    def __init__(self, backbone: nn.Module) -> None:
        cumulative = backbone.get_cumulative_mask()
        self.factors = [(p, 1 - m) for _, p, m in parameter_measures(backbone, cumulative)]

    def __call__(self, mask: Mapping[str, Tensor]) -> None:
        for parameter, factor in self.factors:
            if parameter.grad is not None:
                parameter.grad.mul_(factor)


def embedding_gradient_factor(embedding: Tensor, s: float, s_max: float) -> Tensor:
    """``s_max (cosh(clamp(s e, ±50)) + 1) / (s (cosh(e) + 1))``, HAT's compensation.

    It makes the embedding's gradient as if the gate had slope s_max throughout, so
    embeddings keep learning while s is still small.
    """
    # in place on fresh tensors: the same operations in the same order, fewer allocations
    numerator = (s * embedding).clamp_(-COSH_BOUND, COSH_BOUND).cosh_().add_(1).mul_(s_max)
    return numerator.div_(torch.cosh(embedding).add_(1).mul_(s))


@torch.no_grad()
def compensate_embedding_gradients(backbone: nn.Module, s: float, s_max: float) -> None:
    for embedding in backbone.task_embedding_t.values():
        if embedding.weight.grad is not None:
            embedding.weight.grad.mul_(embedding_gradient_factor(embedding.weight, s, s_max))


@torch.no_grad()
def clamp_embeddings(backbone: nn.Module, bound: float = EMBEDDING_BOUND) -> None:
    for embedding in backbone.task_embedding_t.values():
        embedding.weight.clamp_(-bound, bound)
