"""Masks of weights in a native file: ``pmask.<task>.<layer>`` tensors of packed bits.

Opening checks the tensor table (one U8 tensor of ``ceil(weights / 8)`` bytes for every
stored task and layer, no other ``pmask.`` or ``mask.`` tensor) and that every padding bit
is 0, reading one byte a mask; the bits themselves stay on disk until a count asks for a
block of them (``model.bits.PackedMasks``), so memory does not grow with the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hatinspect.model.bits import PackedMasks, packed_size, padding_mask
from hatinspect.model.checkpoint import Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.native import format as fmt


def packed_masks(
    path: Path,
    header: fmt.Header,
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    starts: Mapping[str, int],
) -> PackedMasks:
    """The checked masks of a file of masks of weights, read on demand; ``tensors`` is
    its table (key -> dtype, shape), ``starts`` each tensor's first byte in the file."""
    layers = header.layers
    wanted = {
        (task, layer.name): fmt.packed_key(task, layer.name)
        for task in header.task_ids
        for layer in layers
    }
    _check_table(path, wanted.values(), layers, tensors)
    offsets = {where: starts[key] for where, key in wanted.items()}
    reader = _Reader(path, offsets, {layer.name: _entries(layer) for layer in layers})
    reader.check_padding()
    shapes = {layer.name: layer.mask_shape(Covers.PARAMETERS) for layer in layers}
    return PackedMasks(header.task_ids, shapes, reader)


def _entries(layer: LayerInfo) -> int:
    return layer.mask_size(Covers.PARAMETERS)


def _check_table(path: Path, wanted, layers: Sequence[LayerInfo], tensors) -> None:
    wanted = list(wanted)
    if missing := set(wanted) - tensors.keys():
        first = next(key for key in wanted if key in missing)
        raise CheckpointError(f"{path}: mask: no tensor {shown(first)}")
    masks = (key for key in tensors if key.startswith((fmt.MASK_PREFIX, fmt.PACKED_PREFIX)))
    if stray := sorted(set(masks) - set(wanted)):
        raise CheckpointError(
            f"{path}: mask {shown(stray[0])} belongs to no stored task and layer of a file"
            " of masks of weights"
        )
    sizes = [packed_size(_entries(layer)) for layer in layers]
    for index, key in enumerate(wanted):
        size = sizes[index % len(layers)]
        if tensors[key] != ("U8", (size,)):
            dtype, shape = tensors[key]
            raise CheckpointError(
                f"{path}: mask {shown(key)} is {dtype} of shape {shape}, expected U8 of"
                f" shape ({size},): its layer's weights as packed bits"
            )


class _Reader:
    """Reads blocks of packed masks from the file: one open for each block of tasks."""

    def __init__(self, path: Path, offsets: dict, entries: dict[str, int]) -> None:
        self._path, self._offsets, self._entries = path, offsets, entries

    def __call__(
        self, tasks: Sequence[int], layer: str, start: int, stop: int, out=None
    ) -> np.ndarray:
        """(tasks, stop - start) uint8: bytes start..stop of each task's mask of ``layer``
        (into ``out`` where given: rows each contiguous)."""
        entries = self._entries[layer]
        size = packed_size(entries)
        if not 0 <= start <= stop <= size:
            raise ValueError(f"bytes {start}..{stop} of a mask of {size} bytes")
        if out is None:
            out = np.empty((len(tasks), stop - start), dtype=np.uint8)
        fd = self._open()
        try:
            for row, task in zip(out, tasks, strict=True):
                self._read_into(fd, row, self._offsets[task, layer] + start)
        finally:
            os.close(fd)
        if stop == size and stop > start:  # keep the padding 0 whatever the disk says now
            out[:, -1] &= padding_mask(entries)
        return out

    def check_padding(self) -> None:
        """Every mask's bits past its last weight are 0; else one line naming the mask."""
        fd = self._open()
        try:
            for (task, layer), offset in self._offsets.items():
                entries = self._entries[layer]
                if entries % 8 == 0:  # no padding bits
                    continue
                last = np.empty(1, dtype=np.uint8)
                self._read_into(fd, last, offset + packed_size(entries) - 1)
                if int(last[0]) & ~padding_mask(entries) & 0xFF:
                    raise CheckpointError(
                        f"{self._path}: mask {shown(fmt.packed_key(task, layer))} has padding"
                        f" bits set past its {entries:,} weights (they must be 0)"
                    )
        finally:
            os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self._path, os.O_RDONLY)
        except OSError as exc:
            raise CheckpointError(f"{self._path}: cannot read it ({exc.strerror})") from None

    def _read_into(self, fd: int, row: np.ndarray, offset: int) -> None:
        view, done = memoryview(row), 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise CheckpointError(f"{self._path}: truncated (a mask ends past the end)")
            done += got
