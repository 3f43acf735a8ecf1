"""Small checkpoints for the inspection tests, built from plain numpy (no torch).

`make_checkpoint` gives an in-memory `Checkpoint`; `write_native` writes the same thing as
a native safetensors file, so that the CLI tests go through the real reader.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import MappingProxyType

import numpy as np
from safetensors.numpy import save_file

from hatinspect.model.checkpoint import Checkpoint, LayerInfo
from hatinspect.native import format as fmt


def layer(name, shape, preceding=None, bias=True) -> LayerInfo:
    key = f"backbone.{name.replace('/', '.')}"
    return LayerInfo(
        name=name,
        units=shape[0],
        weight_shape=tuple(shape),
        weight_key=f"{key}.weight",
        bias_key=f"{key}.bias" if bias else None,
        preceding=preceding,
    )


# A three-layer MLP; the last layer has no bias.
MLP = (
    layer("fc/0", (5, 6)),
    layer("fc/1", (4, 5), "fc/0"),
    layer("fc/2", (3, 4), "fc/1", bias=False),
)

# A tiny conv net: a stem, a block whose conv and projection shortcut both read the stem,
# and a linear layer fed by the block's 6 channels flattened over a 2x2 map (24 inputs).
CONV = (
    layer("conv1", (4, 3, 3, 3), bias=False),
    layer("block/conv1", (6, 4, 3, 3), "conv1", bias=False),
    layer("block/shortcut", (6, 4, 1, 1), "conv1", bias=False),
    layer("head", (3, 24), "block/conv1"),
)

# Hand-picked masks of the MLP for golden outputs: task id -> layer -> 0/1 per unit.
MLP_MASKS = {
    1: {"fc/0": [1, 1, 0, 0, 0], "fc/1": [1, 0, 0, 0], "fc/2": [1, 0, 0]},
    2: {"fc/0": [0, 1, 1, 0, 0], "fc/1": [1, 1, 0, 0], "fc/2": [0, 1, 0]},
    4: {"fc/0": [0, 0, 0, 1, 0], "fc/1": [0, 0, 1, 1], "fc/2": [1, 1, 1]},
}


def make_checkpoint(layers=MLP, masks=None, path="net.safetensors", **fields) -> Checkpoint:
    masks = MLP_MASKS if masks is None else masks
    frozen = {
        task: MappingProxyType({name: _mask(values) for name, values in by_layer.items()})
        for task, by_layer in masks.items()
    }
    return Checkpoint(
        path=str(path),
        backbone=fields.pop("backbone", "HATMaskMLP"),
        source=fields.pop("source", "hatinspect"),
        layers=tuple(layers),
        task_ids=tuple(sorted(masks)),
        masks=MappingProxyType(frozen),
        **fields,
    )


def random_masks(layers, tasks, seed=0, density=0.4) -> dict:
    rng = np.random.default_rng(seed)
    return {
        task: {lay.name: (rng.random(lay.units) < density).astype(np.uint8) for lay in layers}
        for task in tasks
    }


def random_weights(checkpoint: Checkpoint, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {}
    for lay in checkpoint.layers:
        weights[lay.weight_key] = rng.standard_normal(lay.weight_shape).astype(np.float32)
        if lay.has_bias:
            weights[lay.bias_key] = rng.standard_normal(lay.units).astype(np.float32)
    return weights


def write_native(path, checkpoint: Checkpoint, weights=None, notes=(), metadata=None) -> Path:
    """`checkpoint` as a native file (weights random unless given); returns the path."""
    header = fmt.Header(
        backbone=checkpoint.backbone,
        config=None,
        layers=checkpoint.layers,
        task_ids=checkpoint.task_ids,
        notes=tuple(notes),
        user=fmt.encode_user(metadata),
    )
    tensors = dict(random_weights(checkpoint) if weights is None else weights)
    for task in checkpoint.task_ids:
        for name, mask in checkpoint.masks[task].items():
            tensors[fmt.mask_key(task, name)] = np.asarray(mask, dtype=np.uint8)
    save_file(tensors, str(path), metadata=fmt.encode_header(header))
    return Path(path)


def resnet152_layers() -> tuple[LayerInfo, ...]:
    """Weighted layers shaped like HATMaskResNet152 (bottlenecks [3, 8, 36, 3], projection
    shortcuts), for timing counts at full scale without building the network."""
    layers = [layer("conv1", (64, 3, 7, 7), bias=False)]
    channels, previous = 64, "conv1"
    for stage, (blocks, width) in enumerate(
        zip((3, 8, 36, 3), (64, 128, 256, 512), strict=True), start=2
    ):
        for block in range(blocks):
            prefix = f"conv{stage}x/{block}"
            out = 4 * width
            specs = [
                ("conv1", (width, channels, 1, 1), previous),
                ("conv2", (width, width, 3, 3), f"{prefix}/conv1"),
                ("conv3", (out, width, 1, 1), f"{prefix}/conv2"),
            ]
            if block == 0:
                specs.append(("shortcut", (out, channels, 1, 1), previous))
            layers += [
                layer(f"{prefix}/{name}", shape, pre, bias=False) for name, shape, pre in specs
            ]
            channels, previous = out, f"{prefix}/conv3"
    return tuple(layers)


def _mask(values) -> np.ndarray:
    mask = np.asarray(values, dtype=np.uint8)
    mask.flags.writeable = False
    return mask


def params(layers) -> int:
    return sum(math.prod(lay.weight_shape) + (lay.units if lay.has_bias else 0) for lay in layers)
