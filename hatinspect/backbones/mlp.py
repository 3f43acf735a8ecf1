"""Multi-layer perceptrons: ``MLP`` and its HAT-masked twin ``HATMaskMLP``.

Layer ``fc/k`` is the k-th linear layer; the last one outputs the ``output_dim`` feature.
"""

from __future__ import annotations

from itertools import pairwise

from torch import Tensor, nn

from hatinspect.backbones.base import CLBackbone, Gate, HATMaskBackbone


class MLP(CLBackbone):
    """Linear → (batch norm) → activation → (dropout), for every layer including the last."""

    def __init__(
        self,
        input_dim: int,
        hidden_dims: list[int],
        output_dim: int,
        activation_layer: type[nn.Module] = nn.ReLU,
        batch_normalisation: bool = False,
        bias: bool = True,
        dropout: float | None = None,
    ) -> None:
        CLBackbone.__init__(self, output_dim)
        self._build(
            input_dim, hidden_dims, output_dim, activation_layer, batch_normalisation, bias, dropout
        )
        self.config["batch_normalisation"] = batch_normalisation

    def _build(
        self,
        input_dim,
        hidden_dims,
        output_dim,
        activation_layer,
        batch_normalisation,
        bias,
        dropout,
    ) -> None:
        widths = [input_dim, *hidden_dims, output_dim]
        self.fc = nn.ModuleList(nn.Linear(i, o, bias=bias) for i, o in pairwise(widths))
        self.fc_bn = nn.ModuleList(
            nn.BatchNorm1d(o) if batch_normalisation else nn.Identity() for o in widths[1:]
        )
        self.fc_activation = nn.ModuleList(activation_layer() for _ in widths[1:])
        self.fc_dropout = nn.ModuleList(
            nn.Dropout(dropout) if dropout else nn.Identity() for _ in widths[1:]
        )
        for idx, units in enumerate(widths[1:]):
            self.register_weighted_layer(f"fc/{idx}", units, f"fc/{idx - 1}" if idx else None)
        self.config = {
            "input_dim": input_dim,
            "hidden_dims": list(hidden_dims),
            "output_dim": output_dim,
            "activation_layer": activation_layer.__name__,
            "bias": bias,
            "dropout": dropout,
        }

    def forward_gated(self, input: Tensor, gate: Gate) -> Tensor:
        x = input.flatten(1)
        layers = (self.fc, self.fc_bn, self.fc_activation, self.fc_dropout)
        for name, fc, bn, activation, dropout in zip(
            self.weighted_layer_names, *layers, strict=True
        ):
            x = dropout(gate(name, activation(bn(fc(x)))))
        return x


class HATMaskMLP(HATMaskBackbone, MLP):
    """``MLP`` without batch norm, each layer's output gated by its task mask."""

    def __init__(
        self,
        input_dim: int,
        hidden_dims: list[int],
        output_dim: int,
        gate: str,
        activation_layer: type[nn.Module] = nn.ReLU,
        bias: bool = True,
        dropout: float | None = None,
    ) -> None:
        HATMaskBackbone.__init__(self, output_dim, gate)
        self._build(input_dim, hidden_dims, output_dim, activation_layer, False, bias, dropout)
        self.config["gate"] = gate
