"""Masks of weights for tests: random 0/1 masks of odd-sized layers, packed by a plain loop
(entry 8k + i is bit i of byte k, as docs/checkpoint-format.md says), and native files of
them written with safetensors' numpy API (no torch, no hatinspect writer)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.native import format as fmt
from support.checkpoint_factories import random_weights

# sizes whose weights are no whole number of bytes or words: the padding matters
LAYERS = (
    LayerInfo("conv1", 5, (5, 3, 3, 3), "backbone.conv1.weight", None, None),  # 27 a row
    LayerInfo("conv2", 7, (7, 5, 1, 1), "backbone.conv2.weight", "backbone.conv2.bias", "conv1"),
    LayerInfo("fc", 3, (3, 7 * 8), "backbone.fc.weight", None, "conv2"),  # 7 bytes a row
    LayerInfo("out", 2, (2, 3), "backbone.out.weight", "backbone.out.bias", "fc"),
)


def random_masks(layers=LAYERS, tasks=(0, 1, 2, 3), seed=0, density=0.4) -> dict:
    """task -> layer -> uint8 0/1 mask of the weight's shape."""
    rng = np.random.default_rng(seed)
    return {
        task: {
            layer.name: (rng.random(layer.weight_shape) < density).astype(np.uint8)
            for layer in layers
        }
        for task in tasks
    }


def loop_packed(mask: np.ndarray) -> np.ndarray:
    """The mask's entries in row-major order, entry 8k + i as bit i of byte k."""
    flat = [int(v) for v in np.asarray(mask).reshape(-1)]
    out = bytearray(math.ceil(len(flat) / 8))
    for index, value in enumerate(flat):
        out[index // 8] |= value << (index % 8)
    return np.frombuffer(bytes(out), dtype=np.uint8)


def dense_checkpoint(masks: dict, layers=LAYERS) -> Checkpoint:
    """A checkpoint as an importer builds it: dense uint8 masks per task per layer."""
    return Checkpoint("net.pt", "Net", "hatinspect", layers, tuple(sorted(masks)), masks,
                      covers=Covers.PARAMETERS)  # fmt: skip


def packed_tensors(masks: dict, layers=LAYERS, seed=0) -> dict[str, np.ndarray]:
    """Weights, biases and every mask packed under its ``pmask.`` key."""
    tensors = random_weights(layers, seed)
    for task, by_layer in masks.items():
        for name, mask in by_layer.items():
            tensors[f"pmask.{task}.{name}"] = loop_packed(mask)
    return tensors


def packed_metadata(masks: dict, layers=LAYERS, **changes) -> dict[str, str]:
    header = fmt.Header(backbone="Net", config=None, layers=tuple(layers),
                        task_ids=tuple(sorted(masks)), covers=Covers.PARAMETERS)  # fmt: skip
    return {**fmt.encode_header(header), **changes}


def write_packed(path, masks: dict, layers=LAYERS, *, tensors=None, metadata=None) -> Path:
    """A native file of masks of weights; ``tensors``/``metadata`` replace the consistent
    defaults (to build broken files)."""
    tensors = packed_tensors(masks, layers) if tensors is None else tensors
    metadata = packed_metadata(masks, layers) if metadata is None else metadata
    save_file(tensors, str(path), metadata=metadata)
    return Path(path)
