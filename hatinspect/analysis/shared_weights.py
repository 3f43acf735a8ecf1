"""The weights every pair of tasks both keep, layer by layer, counted on packed bits.

Each layer's packed masks are cut into pieces and laid side by side into blocks of at most
``PAIR_BYTES`` (every task's rows of a block together; small layers share a block, a big
one spans several). A worker thread reads a block straight into a buffer of its own and
counts it at once (``model.bits.SharedCounts``): the counts run as few, long numpy calls
(which release the GIL), so ``packed.WORKERS`` threads share them evenly whatever the
layers' sizes. Memory is a block a worker.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from hatinspect.analysis import packed
from hatinspect.model.bits import WORD, SharedCounts, packed_size
from hatinspect.model.checkpoint import Checkpoint, LayerInfo
from hatinspect.model.progress import task

PAIR_BYTES = 4 * 2**20  # packed bytes of every task's rows of one block


class Piece(NamedTuple):
    """Packed bytes ``start .. stop`` of layer ``layer``'s masks, at byte ``at`` of a
    block's rows (a whole number of words)."""

    layer: int
    start: int
    stop: int
    at: int

    @property
    def end(self) -> int:
        """The first byte of the block after this piece and its padding to a word."""
        return self.at + _words(self.stop - self.start)


def plan_blocks(sizes: Sequence[int], width: int) -> list[list[Piece]]:
    """The layers' packed bytes (``sizes``, in order) cut into pieces of at most
    ``width`` bytes (a whole number of words) and laid, in order, into blocks whose rows
    hold ``width`` bytes; each piece starts on a word."""
    blocks: list[list[Piece]] = []
    block: list[Piece] = []
    for layer, size in enumerate(sizes):
        for start in range(0, size, width):
            stop = min(size, start + width)
            at = block[-1].end if block else 0
            if at + _words(stop - start) > width:
                blocks.append(block)
                block, at = [], 0
            block.append(Piece(layer, start, stop, at))
    if block:
        blocks.append(block)
    return blocks


def shared_weights(
    checkpoint: Checkpoint, layers: Sequence[LayerInfo], tasks: Sequence[int]
) -> list[np.ndarray]:
    """Per layer, (tasks, tasks) int64: the weights both tasks' masks keep (a popcount of
    the packed masks ANDed); the diagonal is each mask's size. Reported as progress of
    "overlap", in bytes of masks counted."""
    sizes = [packed_size(packed.entries(layer)) for layer in layers]
    if not tasks or not layers:
        return [np.zeros((len(tasks),) * 2, dtype=np.int64) for _ in layers]
    most = max(WORD, PAIR_BYTES // len(tasks) // WORD * WORD)
    width = min(most, sum(map(_words, sizes)))
    blocks = plan_blocks(sizes, width)
    workers: list[_Worker] = []
    mine = threading.local()
    joined = threading.Lock()

    def count(block: list[Piece]) -> int:
        worker = getattr(mine, "worker", None)
        if worker is None:
            worker = mine.worker = _Worker(len(tasks), width, len(layers))
            with joined:
                workers.append(worker)
        worker.count(checkpoint, layers, tasks, block)
        return len(tasks) * sum(piece.stop - piece.start for piece in block)

    with task("overlap", len(tasks) * sum(sizes)) as advance:
        for done in packed.in_threads(count, blocks):
            advance(done)
    return [sum(worker.pairs.total(index) for worker in workers) for index in range(len(layers))]


class _Worker:
    """One thread's block buffer and pair counts."""

    def __init__(self, rows: int, width: int, layers: int) -> None:
        self._buffer = np.zeros(rows * width, dtype=np.uint8)
        self.pairs = SharedCounts(rows, width, layers)

    def count(self, checkpoint, layers, tasks, block: list[Piece]) -> None:
        used = block[-1].end
        rows = self._buffer[: len(tasks) * used].reshape(len(tasks), used)
        for piece in block:
            stop = piece.at + piece.stop - piece.start
            name = layers[piece.layer].name
            checkpoint.packed_rows(tasks, name, piece.start, piece.stop, rows[:, piece.at : stop])
            rows[:, stop : piece.end] = 0  # the piece's last word, past its bytes
        self.pairs.add(rows, [(piece.at, piece.layer) for piece in block])


def _words(size: int) -> int:
    """``size`` bytes rounded up to whole words."""
    return -(-size // WORD) * WORD
