"""The backbone hierarchy: ``CLBackbone`` names its weighted layers, ``HATMaskBackbone``
adds one task embedding per weighted layer and the masks HAT derives from them.

Networks describe their data flow once, in ``forward_gated(input, gate)``: every weighted
layer's activated output passes through ``gate(name, tensor)``. A plain backbone's gate
only records hidden features; a HAT backbone's gate also multiplies in the layer's mask,
so both share one forward pass and a masked unit outputs exactly zero whatever the
activation function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hatinspect.backbones.task_norm import TaskBatchNorm2d

Gate = Callable[[str, Tensor], Tensor]
Mask = dict[str, Tensor]  # layer name -> (units,)

GATE_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {"sigmoid": torch.sigmoid}

EMBEDDING_INITIALISERS: dict[str, Callable[[Tensor], object]] = {
    "N01": lambda weight: nn.init.normal_(weight, 0.0, 1.0),
    "U-11": lambda weight: nn.init.uniform_(weight, -1.0, 1.0),
    "U01": lambda weight: nn.init.uniform_(weight, 0.0, 1.0),
    "U-10": lambda weight: nn.init.uniform_(weight, -1.0, 0.0),
    "last": lambda weight: None,  # keep the previous task's embedding
}

AGGREGATIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "min": torch.minimum,
    "max": torch.maximum,
}


def _choice(kind: str, value: str, options) -> None:
    if value not in options:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {', '.join(options)}")


class CLBackbone(nn.Module):
    """A continual-learning feature extractor whose weighted layers have stable names.

    Layer names use ``/`` where ``named_modules()`` uses ``.`` (``fc/0``,
    ``conv2x/0/conv1``); they are checkpoint keys and table rows, so they never change.
    """

    def __init__(self, output_dim: int | None) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.weighted_layer_names: list[str] = []
        self._preceding: dict[str, str | None] = {}
        self.task_id: int | None = None
        self.config: dict = {}  # JSON-able constructor arguments, for rebuilding

    def register_weighted_layer(self, name: str, units: int, preceding: str | None) -> None:
        """Declare a weighted layer, its output width and the layer whose units it reads."""
        self.weighted_layer_names.append(name)
        self._preceding[name] = preceding

    def setup_task_id(self, task_id: int) -> None:
        self.task_id = task_id

    def get_layer_by_name(self, name: str) -> nn.Module:
        try:
            return self.get_submodule(name.replace("/", "."))
        except AttributeError:
            raise ValueError(self._unknown_layer(name)) from None

    def preceding_layer_name(self, name: str) -> str | None:
        """The weighted layer whose output units are this layer's input units (data flow)."""
        if name not in self._preceding:
            raise ValueError(self._unknown_layer(name))
        return self._preceding[name]

    def _unknown_layer(self, name: str) -> str:
        known = ", ".join(self.weighted_layer_names[:8])
        more = ", ..." if len(self.weighted_layer_names) > 8 else ""
        return f"{type(self).__name__} has no layer {name!r}; weighted layers: {known}{more}"

    def forward_gated(self, input: Tensor, gate: Gate) -> Tensor:
        """The network's data flow; ``gate`` sees every weighted layer's activated output."""
        raise NotImplementedError

    def forward(
        self, input: Tensor, stage: str, task_id: int | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        hidden: dict[str, Tensor] = {}

        def record(name: str, x: Tensor) -> Tensor:
            hidden[name] = x
            return x

        return self.forward_gated(input, record), hidden


def annealed_scale(s_max: float, batch_idx: int, num_batches: int) -> float:
    """HAT's mask temperature for batch ``b`` of ``B`` (eq. 3), ``b`` counted from 1."""
    if s_max is None or batch_idx is None or num_batches is None:
        raise ValueError("stage 'train' needs s_max, batch_idx and num_batches")
    if num_batches < 1 or not 1 <= batch_idx <= num_batches:
        raise ValueError(f"batch_idx must be in 1..{num_batches}, got {batch_idx}")
    if num_batches == 1:
        return float(s_max)
    return 1 / s_max + (s_max - 1 / s_max) * (batch_idx - 1) / (num_batches - 1)


class HATMaskBackbone(CLBackbone):
    """A backbone with HAT masks: one ``nn.Embedding(1, units)`` per weighted layer."""

    def __init__(self, output_dim: int | None, gate: str) -> None:
        _choice("gate", gate, GATE_FUNCTIONS)
        CLBackbone.__init__(self, output_dim)
        self.gate = gate
        self.gate_fn = GATE_FUNCTIONS[gate]
        self.task_embedding_t = nn.ModuleDict()
        self.masks: dict[int, Mask] = {}  # task id -> stored binary mask

    def register_weighted_layer(self, name: str, units: int, preceding: str | None) -> None:
        super().register_weighted_layer(name, units, preceding)
        self.task_embedding_t[name] = nn.Embedding(1, units)

    def setup_task_id(self, task_id: int) -> None:
        """Make ``task_id`` the task that trains, its per-task batch norms included."""
        super().setup_task_id(task_id)
        for norm in self._per_task_norms:
            norm.setup_task(task_id)

    def task_norms(self) -> list[TaskBatchNorm2d]:
        """The per-task batch norms, in network order (none unless built with them)."""
        return [module for module in self.modules() if isinstance(module, TaskBatchNorm2d)]

    @functools.cached_property
    def _per_task_norms(self) -> list[TaskBatchNorm2d]:
        # a network's modules are fixed once built: found once, not at every forward
        return self.task_norms()

    def _select_task_norms(self, stage: str, task_id: int | None) -> None:
        norms = self._per_task_norms
        if not norms:
            return
        if task_id is None:
            if stage == "test":
                raise ValueError("stage 'test' needs task_id: the network has per-task batch norms")
            task_id = self.task_id
        for norm in norms:
            norm.select(task_id)

    def initialise_task_embedding(self, mode: str) -> None:
        _choice("embedding initialisation", mode, EMBEDDING_INITIALISERS)
        with torch.no_grad():
            for embedding in self.task_embedding_t.values():
                EMBEDDING_INITIALISERS[mode](embedding.weight)

    def get_mask(
        self,
        stage: str,
        s_max: float | None = None,
        batch_idx: int | None = None,
        num_batches: int | None = None,
        test_mask: Mask | None = None,
    ) -> Mask:
        """Per layer: ``gate(s·e)`` annealed (train), ``gate(s_max·e)`` (validation) or given."""
        if stage == "test":
            if test_mask is None:
                raise ValueError("stage 'test' needs test_mask")
            return test_mask
        if stage == "train":
            scale = annealed_scale(s_max, batch_idx, num_batches)
        elif stage == "validation":
            if s_max is None:
                raise ValueError("stage 'validation' needs s_max")
            scale = s_max
        else:
            raise ValueError(f"unknown stage {stage!r}; expected train, validation or test")
        return {
            name: self.gate_fn(scale * embedding.weight[0])
            for name, embedding in self.task_embedding_t.items()
        }

    def te_to_binary_mask(self) -> Mask:
        """The current embeddings as a binary mask: ``e > 0`` (= ``gate(s·e) > 0.5``)."""
        return {
            name: (embedding.weight[0] > 0).float().detach()
            for name, embedding in self.task_embedding_t.items()
        }

    def store_mask(self) -> None:
        """Store the current task's binary mask; cumulative and summative masks follow."""
        if self.task_id is None:
            raise ValueError("no current task: call setup_task_id(task_id) first")
        self.masks[self.task_id] = self.te_to_binary_mask()

    def restore_masks(self, masks: dict[int, Mask]) -> None:
        """Replace the stored masks, e.g. with those read from a checkpoint."""
        self.masks = {int(task): dict(mask) for task, mask in masks.items()}

    def _apply(self, fn, recurse=True):
        # .to(), .cuda(), .double() ... move the stored masks along with the parameters
        super()._apply(fn, recurse)
        self.masks = {
            task: {n: fn(m) for n, m in mask.items()} for task, mask in self.masks.items()
        }
        return self

    def get_cumulative_mask(self) -> Mask:
        """Element-wise max over the stored tasks' masks (zeros before any is stored)."""
        return self._aggregate_masks(torch.maximum)

    def get_summative_mask(self) -> Mask:
        """Element-wise sum over the stored tasks' masks (zeros before any is stored)."""
        return self._aggregate_masks(torch.add)

    @property
    def cumulative_mask_for_previous_tasks(self) -> Mask:
        return self.get_cumulative_mask()

    @property
    def summative_mask_for_previous_tasks(self) -> Mask:
        return self.get_summative_mask()

    def _aggregate_masks(self, op: Callable[[Tensor, Tensor], Tensor]) -> Mask:
        result = {}
        for name, embedding in self.task_embedding_t.items():
            total = torch.zeros(embedding.weight.shape[1], device=embedding.weight.device)
            for mask in self.masks.values():
                total = op(total, mask[name].to(total.device))
            result[name] = total
        return result

    def get_layer_measure_parameter_wise(
        self, unit_wise_measure: Mask, layer_name: str, aggregation: str
    ) -> tuple[Tensor, Tensor | None]:
        """Spread a unit-wise measure over a layer's parameters.

        ``weight_measure[i, j, ...] = agg(m[layer][i], m[preceding][j])``, broadcast over
        conv kernels; a first layer takes ``m[layer][i]`` alone. The bias measure is
        ``m[layer]``, or ``None`` for a layer without bias. The weight measure is a
        broadcast view: copy it before writing into it.
        """
        _choice("aggregation", aggregation, AGGREGATIONS)
        layer = self.get_layer_by_name(layer_name)
        preceding = self.preceding_layer_name(layer_name)
        weight = layer.weight
        rows = unit_wise_measure[layer_name].reshape(-1, 1)  # (out, 1)
        if preceding is None:
            pairs = rows.expand(weight.shape[0], weight.shape[1])
        else:
            columns = unit_wise_measure[preceding].reshape(1, -1)  # (1, in)
            pairs = AGGREGATIONS[aggregation](rows, columns)
        kernel_dims = (1,) * (weight.dim() - 2)
        weight_measure = pairs.reshape(*pairs.shape, *kernel_dims).expand_as(weight)
        bias_measure = unit_wise_measure[layer_name] if layer.bias is not None else None
        return weight_measure, bias_measure

    def forward(
        self,
        input: Tensor,
        stage: str,
        s_max: float | None = None,
        batch_idx: int | None = None,
        num_batches: int | None = None,
        test_mask: Mask | None = None,
        task_id: int | None = None,
    ) -> tuple[Tensor, Mask, dict[str, Tensor]]:
        """``task_id`` picks the per-task batch norms (the current task's by default;
        required in stage ``test`` when the network has them)."""
        mask = self.get_mask(stage, s_max, batch_idx, num_batches, test_mask)
        self._select_task_norms(stage, task_id)
        hidden: dict[str, Tensor] = {}

        def apply_mask(name: str, x: Tensor) -> Tensor:
            # (units,) broadcasts over (batch, units) as it is; conv maps need (units, 1, 1)
            unit_mask = mask[name]
            if unit_mask.dim() != 1 or x.dim() > 2:
                unit_mask = unit_mask.reshape(-1, *(1,) * (x.dim() - 2))
            x = x * unit_mask
            hidden[name] = x
            return x

        return self.forward_gated(input, apply_mask), mask, hidden
