"""ResNet-18 to -152 (He et al., as torchvision builds them) and their HAT-masked twins.

Layer names: the stem ``conv1``; then ``conv{2..5}x/<block>/conv<k>`` for the k-th conv
of a block's main path and ``conv{2..5}x/<block>/shortcut`` for a projection shortcut.
Under HAT every one of them is masked; the block's last conv's mask gates the block
output, i.e. the sum of main path and (masked) shortcut.

Batch norms sit after their conv: the stem's ``bn1``, a block's ``bn<k>`` and
``shortcut_bn``. With one batch norm per task, task t's is ``<that path>.per_task.<t>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from hatinspect.backbones.base import CLBackbone, Gate, HATMaskBackbone
from hatinspect.backbones.task_norm import TaskBatchNorm2d


@dataclass(frozen=True)
class BlockKind:
    kernel_sizes: tuple[int, ...]  # one per conv of the main path
    expansion: int  # the last conv outputs planes * expansion channels

    @property
    def stride_index(self) -> int:
        """The conv that downsamples: the first 3×3 (torchvision's ResNet v1.5)."""
        return self.kernel_sizes.index(3)


BASIC = BlockKind(kernel_sizes=(3, 3), expansion=1)
BOTTLENECK = BlockKind(kernel_sizes=(1, 3, 1), expansion=4)

# depth -> (block kind, blocks per stage)
RESNET_SPECS: dict[int, tuple[BlockKind, tuple[int, int, int, int]]] = {
    18: (BASIC, (2, 2, 2, 2)),
    34: (BASIC, (3, 4, 6, 3)),
    50: (BOTTLENECK, (3, 4, 6, 3)),
    101: (BOTTLENECK, (3, 4, 23, 3)),
    152: (BOTTLENECK, (3, 8, 36, 3)),
}
# stage name, planes, stride of its first block
STAGES = (("conv2x", 64, 1), ("conv3x", 128, 2), ("conv4x", 256, 2), ("conv5x", 512, 2))
STEM_CHANNELS = 64


# batch_normalisation -> the module after every conv: none, one shared, or one per task
NORMS: dict[bool | str, type[nn.Module]] = {
    False: nn.Identity,
    True: nn.BatchNorm2d,
    "task": TaskBatchNorm2d,
}
HAT_NORMS = (False, "task")  # a norm shared by all tasks would change what earlier tasks compute


def _norm(channels: int, batch_normalisation: bool | str) -> nn.Module:
    return NORMS[batch_normalisation](channels)


class ResidualBlock(nn.Module):
    """A basic or bottleneck block: convs ``conv1..convK`` with ``bn1..bnK`` and an
    optional 1×1 projection ``shortcut`` with ``shortcut_bn``."""

    def __init__(
        self,
        kind: BlockKind,
        in_channels: int,
        planes: int,
        stride: int,
        activation_layer: type[nn.Module],
        batch_normalisation: bool | str,
        bias: bool,
    ):
        super().__init__()
        widths = [in_channels] + [planes] * (len(kind.kernel_sizes) - 1)
        widths.append(planes * kind.expansion)
        self.conv_names = [f"conv{k}" for k in range(1, len(kind.kernel_sizes) + 1)]
        for idx, (name, kernel) in enumerate(zip(self.conv_names, kind.kernel_sizes, strict=True)):
            conv_stride = stride if idx == kind.stride_index else 1
            setattr(
                self,
                name,
                nn.Conv2d(
                    widths[idx],
                    widths[idx + 1],
                    kernel,
                    conv_stride,
                    padding=kernel // 2,
                    bias=bias,
                ),
            )
            setattr(self, f"bn{idx + 1}", _norm(widths[idx + 1], batch_normalisation))
        self.activations = nn.ModuleList(activation_layer() for _ in self.conv_names)
        self.out_channels = widths[-1]
        self.shortcut = self.shortcut_bn = None
        if stride != 1 or in_channels != self.out_channels:
            self.shortcut = nn.Conv2d(in_channels, self.out_channels, 1, stride, bias=bias)
            self.shortcut_bn = _norm(self.out_channels, batch_normalisation)

    def weighted_layers(self) -> Iterator[tuple[str, int, str | None]]:
        """(local name, units, local name of the preceding layer or None for the block
        input), in network order."""
        preceding = None
        for name in self.conv_names:
            yield name, getattr(self, name).out_channels, preceding
            preceding = name
        if self.shortcut is not None:
            yield "shortcut", self.out_channels, None

    def forward(self, x: Tensor, gate: Gate) -> Tensor:
        h = x
        *inner, last = range(len(self.conv_names))
        for idx in inner:
            h = gate(self.conv_names[idx], self.activations[idx](self._conv_bn(idx, h)))
        h = self._conv_bn(last, h)
        if self.shortcut is not None:
            x = gate("shortcut", self.shortcut_bn(self.shortcut(x)))
        return gate(self.conv_names[last], self.activations[last](h + x))

    def _conv_bn(self, idx: int, x: Tensor) -> Tensor:
        return getattr(self, f"bn{idx + 1}")(getattr(self, self.conv_names[idx])(x))


def _check_feature_dim(network: str, output_dim: int, feature_dim: int) -> None:
    if output_dim != feature_dim:
        raise ValueError(
            f"{network} outputs {feature_dim} features: "
            f"output_dim must be {feature_dim}, got {output_dim}"
        )


def _prefixed(gate: Gate, prefix: str) -> Gate:
    return lambda name, x: gate(f"{prefix}/{name}", x)


class ResNet(CLBackbone):
    """A ResNet returning its pooled feature (512 for basic blocks, 2048 for bottlenecks)."""

    depth: ClassVar[int]

    def __init__(
        self,
        input_channels: int,
        output_dim: int,
        activation_layer: type[nn.Module] = nn.ReLU,
        batch_normalisation: bool = True,
        bias: bool = False,
    ) -> None:
        CLBackbone.__init__(self, output_dim)
        self._build(input_channels, output_dim, activation_layer, batch_normalisation, bias)
        self.config["batch_normalisation"] = batch_normalisation

    def _build(
        self, input_channels, output_dim, activation_layer, batch_normalisation, bias
    ) -> None:
        kind, blocks_per_stage = RESNET_SPECS[self.depth]
        _check_feature_dim(type(self).__name__, output_dim, STAGES[-1][1] * kind.expansion)
        self.conv1 = nn.Conv2d(input_channels, STEM_CHANNELS, 7, 2, padding=3, bias=bias)
        self.bn1 = _norm(STEM_CHANNELS, batch_normalisation)
        self.activation = activation_layer()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.register_weighted_layer("conv1", STEM_CHANNELS, None)
        channels, block_input = STEM_CHANNELS, "conv1"
        for (stage, planes, stride), count in zip(STAGES, blocks_per_stage, strict=True):
            blocks = nn.ModuleList()
            for idx in range(count):
                block = ResidualBlock(kind, channels, planes, stride if idx == 0 else 1,
                                      activation_layer, batch_normalisation, bias)  # fmt: skip
                block_input = self._register_block(f"{stage}/{idx}", block, block_input)
                channels = block.out_channels
                blocks.append(block)
            setattr(self, stage, blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.config = {
            "input_channels": input_channels,
            "output_dim": output_dim,
            "activation_layer": activation_layer.__name__,
            "bias": bias,
        }

    def _register_block(self, prefix: str, block: ResidualBlock, block_input: str) -> str:
        """Register the block's weighted layers; return the layer whose mask gates its output."""
        for name, units, preceding in block.weighted_layers():
            outer = block_input if preceding is None else f"{prefix}/{preceding}"
            self.register_weighted_layer(f"{prefix}/{name}", units, outer)
        return f"{prefix}/{block.conv_names[-1]}"

    def forward_gated(self, input: Tensor, gate: Gate) -> Tensor:
        x = self.maxpool(gate("conv1", self.activation(self.bn1(self.conv1(input)))))
        for stage, _, _ in STAGES:
            for idx, block in enumerate(getattr(self, stage)):
                x = block(x, _prefixed(gate, f"{stage}/{idx}"))
        return torch.flatten(self.avgpool(x), 1)


class HATMaskResNet(HATMaskBackbone, ResNet):
    """A ResNet whose every conv, shortcuts included, is masked; without batch norm, or
    with one per task (``batch_normalisation="task"``) after every conv."""

    def __init__(
        self,
        input_channels: int,
        output_dim: int,
        gate: str,
        activation_layer: type[nn.Module] = nn.ReLU,
        bias: bool = False,
        batch_normalisation: bool | str = False,
    ) -> None:
        if batch_normalisation not in HAT_NORMS:
            raise ValueError(
                f"batch_normalisation must be False or 'task' (one batch norm per task), got "
                f"{batch_normalisation!r}: a batch norm shared by all tasks is not protected"
            )
        HATMaskBackbone.__init__(self, output_dim, gate)
        self._build(input_channels, output_dim, activation_layer, batch_normalisation, bias)
        self.config["gate"] = gate
        if batch_normalisation:
            self.config["batch_normalisation"] = batch_normalisation


def _variant(base: type[ResNet], depth: int) -> type[ResNet]:
    kind = "basic" if RESNET_SPECS[depth][0] is BASIC else "bottleneck"
    doc = f"{base.__name__}-{depth}: {kind} blocks {list(RESNET_SPECS[depth][1])} per stage."
    name = f"{base.__name__}{depth}"
    return type(
        name,
        (base,),
        {"depth": depth, "__doc__": doc, "__module__": __name__, "__qualname__": name},
    )


ResNet18, ResNet34, ResNet50, ResNet101, ResNet152 = (
    _variant(ResNet, depth) for depth in RESNET_SPECS
)
HATMaskResNet18, HATMaskResNet34, HATMaskResNet50, HATMaskResNet101, HATMaskResNet152 = (
    _variant(HATMaskResNet, depth) for depth in RESNET_SPECS
)
RESNETS = (ResNet18, ResNet34, ResNet50, ResNet101, ResNet152)
HAT_RESNETS = (
    HATMaskResNet18,
    HATMaskResNet34,
    HATMaskResNet50,
    HATMaskResNet101,
    HATMaskResNet152,
)
