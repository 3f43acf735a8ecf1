"""Native checkpoints of any size that take almost no disk: the weights are holes.

The header and the masks are written; the weights and biases (all zero) are left to a
sparse file's holes, so a 50 GB checkpoint costs a few kilobytes of disk and seconds to
make. Also used by the benchmarks.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from hatinspect.model.checkpoint import LayerInfo
from hatinspect.native import format as fmt
from support.checkpoint_factories import linear_layers


def write_sparse(
    path: str | os.PathLike,
    layers: tuple[LayerInfo, ...],
    masks: dict[int, dict[str, np.ndarray]],
    metadata: dict | None = None,
    dtype: str = "F32",
) -> Path:
    """A native file of `layers` (weights zero, in holes) storing `masks`."""
    header = fmt.Header(
        backbone="HATMaskMLP",
        config=None,
        layers=layers,
        task_ids=tuple(sorted(masks)),
        user=fmt.encode_user(metadata),
    )
    itemsize = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    entries, chunks, offset = {}, [], 0
    for task in sorted(masks):
        for layer in layers:
            data = np.asarray(masks[task][layer.name], dtype=np.uint8).tobytes()
            entries[fmt.mask_key(task, layer.name)] = ("U8", [layer.units], offset, len(data))
            chunks.append(data)
            offset += len(data)
    for layer in layers:
        tensors = [(layer.weight_key, list(layer.weight_shape))]
        if layer.bias_key:
            tensors.append((layer.bias_key, [layer.units]))
        for key, shape in tensors:
            size = math.prod(shape) * itemsize
            entries[key] = (dtype, shape, offset, size)
            offset += size
    table = {
        key: {"dtype": kind, "shape": shape, "data_offsets": [start, start + size]}
        for key, (kind, shape, start, size) in entries.items()
    }
    table["__metadata__"] = fmt.encode_header(header)
    text = json.dumps(table).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for chunk in chunks:
            f.write(chunk)
        f.truncate(8 + len(text) + offset)  # the rest is a hole: zeros, no disk
    return Path(path)


def wide_layers(units: int, count: int = 2) -> tuple[LayerInfo, ...]:
    """`count` square linear layers of `units` units, each fed by the one before."""
    return linear_layers((units,) * (count + 1))


def leading_masks(layers, tasks: int, share: float) -> dict[int, dict[str, np.ndarray]]:
    """Task t keeps a slice of units near the start of each layer: `share` of them in all."""
    masks = {}
    for task in range(1, tasks + 1):
        masks[task] = {}
        for layer in layers:
            kept = max(1, int(layer.units * share / tasks))
            mask = np.zeros(layer.units, dtype=np.uint8)
            mask[(task - 1) * kept : task * kept] = 1
            masks[task][layer.name] = mask
    return masks
