"""Counts over masks of weights, a block of packed bits at a time (``model.bits``).

Every count here reads each task's packed mask of a layer in blocks of bytes (a native
file's straight from disk, an import's packed a block at a time), counts with popcounts,
and keeps only the block and the per-layer totals: memory does not grow with the network.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

import numpy as np

from hatinspect.model.bits import BIT_ORDER, WORD, packed_size, popcounts
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.progress import track

# packed bytes of every task's masks held at once (the counts make a few temporaries of it)
BLOCK_BYTES = 4 * 2**20
# layers counted side by side, each in a thread of its own (numpy's loops and the reads
# release the GIL); each holds one block
WORKERS = min(4, os.cpu_count() or 1)

T = TypeVar("T")
R = TypeVar("R")


def per_layer(
    count: Callable,
    checkpoint: Checkpoint,
    layers,
    tasks: Sequence[int],
    description: str | None = None,
) -> list:
    """``count(checkpoint, layer, tasks)`` of each of ``layers``, in their order; each
    layer done is reported as progress of ``description``, where one is given."""

    def tracked(results):
        if description is None:
            return list(results)
        return list(track(results, description, total=len(layers), unit="layers"))

    return tracked(in_threads(lambda layer: count(checkpoint, layer, tasks), layers))


def in_threads(work: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
    """``work(item)`` of each item, in order, done in up to ``WORKERS`` threads (in this
    one where one would do). Once the caller stops early (an error, Ctrl-C), items not yet
    begun are dropped rather than waited for."""
    threads = min(WORKERS, len(items))
    if threads <= 1:
        yield from map(work, items)
        return
    pool = ThreadPoolExecutor(threads)
    try:
        yield from pool.map(work, items)
    finally:
        pool.shutdown(cancel_futures=True)


def entries(layer: LayerInfo) -> int:
    return layer.mask_size(Covers.PARAMETERS)


def byte_spans(size: int, tasks: int, block: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, stop) spans of ``size`` packed bytes, each a whole number of words but the
    last, small enough that ``tasks`` rows of one fit in ``block`` bytes."""
    step = max(WORD, (block or BLOCK_BYTES) // max(tasks, 1) // WORD * WORD)
    for start in range(0, size, step):
        yield start, min(size, start + step)


class RowSpan(NamedTuple):
    """Rows ``first .. last`` of a weight, lying in packed bytes ``start .. stop``."""

    first: int
    last: int
    start: int
    stop: int


def row_spans(layer: LayerInfo, tasks: int, block: int | None = None) -> Iterator[RowSpan]:
    """Blocks of whole rows (output units) of ``layer``'s weight, each starting on a word
    boundary of the packed bits (so that no byte holds two blocks' bits)."""
    per_row = entries(layer) // layer.units  # weights per output unit: in * kh * kw
    aligned = 8 * WORD // math.gcd(per_row, 8 * WORD)  # rows whose bits fill whole words
    budget = 8 * max(WORD, (block or BLOCK_BYTES) // max(tasks, 1))  # bits of one task's rows
    step = max(aligned, budget // per_row // aligned * aligned)
    for first in range(0, layer.units, step):
        last = min(layer.units, first + step)
        yield RowSpan(first, last, first * per_row // 8, packed_size(last * per_row))


def rows_kept(block: np.ndarray, rows: int, per_row: int) -> np.ndarray:
    """(tasks, rows) bool: whether each task keeps any weight of each row, from the
    (tasks, bytes) packed bits of those whole rows."""
    tasks = block.shape[0]
    if per_row % 8 == 0:  # each row a whole number of bytes
        return block.reshape(tasks, rows, per_row // 8).any(axis=2)
    bits = np.unpackbits(block, axis=1, count=rows * per_row, bitorder=BIT_ORDER)
    return bits.reshape(tasks, rows, per_row).any(axis=2)


class LayerGrowth(NamedTuple):
    """What each of the tasks, in order, adds to one layer (each (tasks,) int64)."""

    new: np.ndarray  # weights no earlier task kept
    kept: np.ndarray  # weights the task keeps
    new_units: np.ndarray  # units (rows) with a weight kept for the first time
    kept_units: np.ndarray  # units with a weight the task keeps


def layer_growth(checkpoint: Checkpoint, layer: LayerInfo, tasks: Sequence[int]) -> LayerGrowth:
    """Per task (in the order given), the weights and units of ``layer`` it keeps, and
    those no earlier task in the order kept."""
    zeros = [np.zeros(len(tasks), dtype=np.int64) for _ in range(4)]
    growth = LayerGrowth(*zeros)
    if not tasks:
        return growth
    per_row = entries(layer) // layer.units
    for span in row_spans(layer, len(tasks)):
        block = checkpoint.packed_rows(tasks, layer.name, span.start, span.stop)
        fresh = _earlier(block)  # then, in place: what no earlier task kept
        np.bitwise_and(np.bitwise_not(fresh, out=fresh), block, out=fresh)
        growth.new[:] += popcounts(fresh)
        growth.kept[:] += popcounts(block)
        kept = rows_kept(block, span.last - span.first, per_row)
        growth.new_units[:] += (kept & ~_earlier(kept)).sum(axis=1)
        growth.kept_units[:] += kept.sum(axis=1)
    return growth


def _earlier(rows: np.ndarray) -> np.ndarray:
    """Row t: the union (bitwise or) of the rows before t of ``rows`` (row 0: empty). A
    loop over the rows: numpy's ``accumulate`` down the first axis is many times slower."""
    before = np.empty_like(rows)
    before[0] = 0
    for t in range(1, len(rows)):
        np.bitwise_or(before[t - 1], rows[t - 1], out=before[t])
    return before


class LayerTally(NamedTuple):
    """One layer's masks over the chosen tasks, counted without unpacking."""

    active: np.ndarray  # (tasks,) int64: weights each task keeps
    histogram: np.ndarray  # (tasks + 1,) int64: weights kept by exactly k of the tasks


def layer_tally(checkpoint: Checkpoint, layer: LayerInfo, tasks: Sequence[int]) -> LayerTally:
    """Weights each task keeps and how many tasks keep each weight (as a histogram), from
    bit-sliced counters: plane i holds bit i of each weight's count of tasks."""
    size, count = entries(layer), len(tasks)
    active = np.zeros(count, dtype=np.int64)
    histogram = np.zeros(count + 1, dtype=np.int64)
    for start, stop in byte_spans(packed_size(size), count):
        block = checkpoint.packed_rows(tasks, layer.name, start, stop)
        active += popcounts(block)
        planes = _counted(block)
        for k in range(1, count + 1):
            histogram[k] += _equal_to(planes, k)
    histogram[0] = size - histogram[1:].sum()  # the padding bits count for no k >= 1
    return LayerTally(active, histogram)


def _counted(block: np.ndarray) -> np.ndarray:
    """(bits of the largest count, bytes) uint8: the rows of ``block`` added bit by bit,
    each weight's count written in binary down the planes (a ripple-carry adder)."""
    planes = np.zeros((max(1, len(block).bit_length()), block.shape[1]), dtype=np.uint8)
    carry, spare = np.empty(block.shape[1], np.uint8), np.empty(block.shape[1], np.uint8)
    for row in block:
        carry[:] = row
        for plane in planes:
            np.bitwise_and(plane, carry, out=spare)
            plane ^= carry
            carry, spare = spare, carry
    return planes


def _equal_to(planes: np.ndarray, k: int) -> int:
    """How many weights the planes count exactly ``k`` (>= 1) tasks for."""
    match = np.full(planes.shape[1], 0xFF, dtype=np.uint8)
    for bit, plane in enumerate(planes):
        match &= plane if k >> bit & 1 else ~plane
    return int(popcounts(match[None])[0])


def owned_spans(
    checkpoint: Checkpoint, layer: LayerInfo, tasks: Sequence[int], itemsize: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(first weight, weights, packed union) blocks of the weights any of ``tasks`` keeps,
    a block small enough that its weights (``itemsize`` bytes each) and the tasks' packed
    bits stay within a block's bytes."""
    size = entries(layer)
    most = max(WORD, min(BLOCK_BYTES // itemsize // 8, BLOCK_BYTES // max(len(tasks), 1)))
    for start, stop in byte_spans(packed_size(size), 1, most):
        union = np.bitwise_or.reduce(checkpoint.packed_rows(tasks, layer.name, start, stop))
        yield 8 * start, min(size, 8 * stop) - 8 * start, union


def same_masks(one: Checkpoint, other: Checkpoint, task: int, layer: LayerInfo) -> bool:
    """Whether two checkpoints hold the same mask of ``task`` on ``layer`` (masks of
    weights compared as packed bits, a block at a time)."""
    if one.covers != Covers.PARAMETERS:
        return np.array_equal(one.masks[task][layer.name], other.masks[task][layer.name])
    for start, stop in byte_spans(packed_size(entries(layer)), 2):
        mine = one.packed_rows([task], layer.name, start, stop)
        if not np.array_equal(mine, other.packed_rows([task], layer.name, start, stop)):
            return False
    return True
