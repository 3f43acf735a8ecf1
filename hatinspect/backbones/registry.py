"""Rebuilding a backbone from its class name and JSON-able constructor arguments."""

from __future__ import annotations

from torch import nn

from hatinspect.backbones.base import CLBackbone
from hatinspect.backbones.mlp import MLP, HATMaskMLP
from hatinspect.backbones.resnet import HAT_RESNETS, RESNETS

BACKBONES: dict[str, type[CLBackbone]] = {
    cls.__name__: cls for cls in (MLP, HATMaskMLP, *RESNETS, *HAT_RESNETS)
}


def activation_by_name(name: str) -> type[nn.Module]:
    """The ``torch.nn`` activation class called ``name`` (e.g. ``"ReLU"``)."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"unknown activation {name!r}: expected a torch.nn class name")
    return cls


def build_backbone(class_name: str, config: dict) -> CLBackbone:
    """Construct ``class_name`` from ``config`` as recorded in ``backbone.config``."""
    if class_name not in BACKBONES:
        raise ValueError(f"unknown backbone {class_name!r}; known: {', '.join(BACKBONES)}")
    arguments = dict(config)
    if "activation_layer" in arguments:
        arguments["activation_layer"] = activation_by_name(arguments["activation_layer"])
    return BACKBONES[class_name](**arguments)
