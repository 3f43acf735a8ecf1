"""Continual-learning backbones with stable layer names, plain and HAT-masked."""

from hatinspect.backbones.base import CLBackbone, HATMaskBackbone, annealed_scale
from hatinspect.backbones.mlp import MLP, HATMaskMLP
from hatinspect.backbones.registry import BACKBONES, build_backbone
from hatinspect.backbones.resnet import (
    HATMaskResNet18,
    HATMaskResNet34,
    HATMaskResNet50,
    HATMaskResNet101,
    HATMaskResNet152,
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
)

__all__ = [
    "BACKBONES",
    "CLBackbone",
    "HATMaskBackbone",
    "HATMaskMLP",
    "HATMaskResNet18",
    "HATMaskResNet34",
    "HATMaskResNet50",
    "HATMaskResNet101",
    "HATMaskResNet152",
    "MLP",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "ResNet101",
    "ResNet152",
    "annealed_scale",
    "build_backbone",
]
