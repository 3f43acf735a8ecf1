"""A backbone's weighted layers as the checkpoint model describes them (`LayerInfo`)."""

from __future__ import annotations

from torch import nn

from hatinspect.model.checkpoint import LayerInfo
from hatinspect.native import format as fmt


def describe_layers(
    backbone: nn.Module, prefix: str = fmt.BACKBONE_PREFIX
) -> tuple[LayerInfo, ...]:
    """The backbone's weighted layers in network order, tensor keys as ``prefix`` + path."""
    paths = {id(module): path for path, module in backbone.named_modules()}
    layers = []
    for name in backbone.weighted_layer_names:
        module = backbone.get_layer_by_name(name)
        key = prefix + paths[id(module)]
        layers.append(
            LayerInfo(
                name=name,
                units=module.weight.shape[0],
                weight_shape=tuple(module.weight.shape),
                weight_key=f"{key}.weight",
                bias_key=f"{key}.bias" if module.bias is not None else None,
                preceding=backbone.preceding_layer_name(name),
            )
        )
    return tuple(layers)
