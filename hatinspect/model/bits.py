"""Masks of weights as packed bits: one bit a weight, in the weight's row-major order.

Bit order is little-endian: bit ``i`` (value ``1 << i``) of byte ``k`` is entry ``8k + i``,
as ``np.packbits(..., bitorder="little")`` writes it; the bits past the last entry are 0.
Counting is a popcount over the packed bytes (``np.bitwise_count`` on 64-bit words where
numpy has it, a table of the 256 bytes' counts otherwise), never a dense array.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

BIT_ORDER = "little"
WORD = 8  # bytes of the words popcounts run on


def packed_size(entries: int) -> int:
    """Bytes that ``entries`` packed bits take."""
    return (entries + 7) // 8


def pack(mask: np.ndarray) -> np.ndarray:
    """A 0/1 mask (any shape) as packed bits, (packed_size(mask.size),) uint8."""
    return np.packbits(np.asarray(mask).reshape(-1) != 0, bitorder=BIT_ORDER)


def pack_slice(mask: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Bytes ``start .. stop`` of ``pack(mask)``, packing only the entries they hold."""
    flat = np.asarray(mask).reshape(-1)
    return np.packbits(flat[8 * start : 8 * stop] != 0, bitorder=BIT_ORDER)


def unpack(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Packed bits as a read-only uint8 0/1 array of ``shape``."""
    count = int(np.prod(shape, dtype=np.int64))
    dense = np.unpackbits(packed, count=count, bitorder=BIT_ORDER).reshape(shape)
    dense.flags.writeable = False
    return dense


def padding_mask(entries: int) -> int:
    """The bits of the last byte that hold entries (0xFF when every bit does)."""
    used = entries % 8
    return (1 << used) - 1 if used else 0xFF


_TABLE = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0


def popcounts(rows: np.ndarray) -> np.ndarray:
    """(n,) int64: the set bits of each row of an (n, bytes) uint8 array."""
    rows = np.ascontiguousarray(rows)
    if not _HAS_BITWISE_COUNT:
        return _TABLE[rows].sum(axis=-1, dtype=np.int64)
    whole = rows.shape[-1] - rows.shape[-1] % WORD
    counts = np.bitwise_count(rows[..., :whole].view(np.uint64)).sum(axis=-1, dtype=np.int64)
    if whole < rows.shape[-1]:
        counts += np.bitwise_count(rows[..., whole:]).sum(axis=-1, dtype=np.int64)
    return counts


def shared_counts(rows: np.ndarray) -> np.ndarray:
    """(n, n) int64: entry (a, b) the bits set in both row a and row b of an (n, bytes)
    uint8 array of packed bits (a popcount of each pair's AND, the upper triangle
    counted and mirrored; the diagonal is each row's popcount)."""
    pairs = SharedCounts(len(rows), rows.shape[-1])
    pairs.add(rows)
    return pairs.total()


class SharedCounts:
    """Adds up ``shared_counts`` of blocks of packed rows (n rows, at most ``width`` bytes
    a block), each block's bytes the parts of one or more *scopes* (the layers a block
    holds side by side, each part starting on a word), with the buffers made once.

    A block is counted a diagonal at a time: rows ``0 .. n-d`` ANDed with rows ``d .. n``
    in one call on two contiguous slices, popcounted (uint8 a word) and summed per part
    in uint32 (where a block's row holds fewer than 2**32 bits); the diagonals are added
    to each scope's int64 upper triangle once a block."""

    def __init__(self, rows: int, width: int, scopes: int = 1) -> None:
        self._upper = np.zeros((scopes, rows, rows), dtype=np.int64)
        words = -(-width // WORD)
        self._padded: np.ndarray | None = None  # made once a block needs it
        self._shape = (rows, words * WORD)
        # flat, so that a block of any width gets contiguous (kept, used) buffers
        self._both = np.empty(rows * words, dtype=np.uint64)
        self._counts = np.empty(rows * words, dtype=np.uint8)
        self._sum_type = np.uint64 if 8 * words * WORD >= 2**32 else np.uint32
        # (d, a) of every pair (a, a + d), the order a block's diagonals are kept in
        self._step, self._first = _diagonal_pairs(rows)

    def add(self, rows: np.ndarray, parts: Sequence[tuple[int, int]] = ((0, 0),)) -> None:
        """Counts one (n, bytes) block of the n packed rows (bytes <= the width); ``parts``
        are the (first byte, scope) of each scope's bytes in the block, in order, every
        first byte a whole number of words (the first 0)."""
        n, upper = len(rows), self._upper
        if n != upper.shape[1]:
            raise ValueError(f"{n} rows, counted in pairs of {upper.shape[1]}")
        starts = [start for start, _ in parts]
        scopes = np.array([scope for _, scope in parts])
        if starts[0] != 0 or any(start % WORD for start in starts) or starts != sorted(set(starts)):
            raise ValueError(f"parts starting at bytes {starts}: not whole words in order")
        if not _HAS_BITWISE_COUNT:
            ends = [*starts[1:], rows.shape[-1]]
            for scope, start, end in zip(scopes, starts, ends, strict=True):
                part = rows[:, start:end]
                for a in range(n):
                    both = _TABLE[part[a] & part[a:]]
                    upper[scope, a, a:] += both.sum(axis=-1, dtype=np.int64)
            return
        words = self._into_words(rows)
        used = words.shape[1]
        word_starts = np.array(starts) // WORD
        diagonals = np.zeros((n, n, len(parts)), dtype=self._sum_type)  # [d, a, part]
        for d in range(n):  # row a with row a + d, for every a at once
            kept = n - d
            both = words if d == 0 else _rows_of(self._both, kept, used)
            if d:
                np.bitwise_and(words[:kept], words[d:], out=both)
            counts = _rows_of(self._counts, kept, used)
            np.bitwise_count(both, out=counts)
            if len(parts) == 1:
                np.add.reduce(counts, axis=-1, dtype=self._sum_type, out=diagonals[d, :kept, 0])
            else:
                np.add.reduceat(counts, word_starts, axis=-1, dtype=self._sum_type,
                                out=diagonals[d, :kept])  # fmt: skip
        step, first = self._step, self._first
        pairs = diagonals[step, first]  # (pairs, parts)
        np.add.at(upper, (scopes[None, :], first[:, None], (first + step)[:, None]), pairs)

    def total(self, scope: int = 0) -> np.ndarray:
        """(n, n) int64: a scope's counts so far, mirrored below the diagonal."""
        upper = self._upper[scope]
        return upper + np.triu(upper, 1).T

    def _into_words(self, rows: np.ndarray) -> np.ndarray:
        """(n, words) uint64 view of the rows: the rows themselves where they fill whole
        words and lie contiguous, else copied into the padded buffer (zeros after)."""
        if rows.shape[-1] % WORD == 0 and rows.flags.c_contiguous:
            return rows.view(np.uint64)
        used = -(-rows.shape[-1] // WORD) * WORD
        if self._padded is None:
            self._padded = np.zeros(self._shape[0] * self._shape[1], dtype=np.uint8)
        padded = _rows_of(self._padded, self._shape[0], used)
        padded[:, rows.shape[-1] :] = 0
        padded[:, : rows.shape[-1]] = rows
        return padded.view(np.uint64)


def _diagonal_pairs(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(d, a) of every pair of rows (a, a + d), d from 0."""
    step, first = np.nonzero(np.arange(rows)[None, :] < rows - np.arange(rows)[:, None])
    return step, first


def _rows_of(flat: np.ndarray, rows: int, width: int) -> np.ndarray:
    """The first ``rows * width`` entries of a flat buffer as contiguous (rows, width)."""
    return flat[: rows * width].reshape(rows, width)


def popcount(packed: np.ndarray) -> int:
    """Set bits of a packed mask (or part of one)."""
    return int(popcounts(packed.reshape(1, -1))[0])


class PackedMasks(Mapping):
    """task id -> layer name -> mask, over masks stored as packed bits (a native file's):
    ``masks[t][layer]`` unpacks one mask when asked (nothing is kept), while ``rows``
    hands the packed bytes to the counts that work on them."""

    def __init__(
        self,
        task_ids: Sequence[int],
        shapes: Mapping[str, tuple[int, ...]],
        read: Callable[..., np.ndarray],
    ) -> None:
        self._tasks = tuple(task_ids)
        self._shapes = dict(shapes)
        # (tasks, layer, first byte, end byte, out or None) -> (tasks, bytes) uint8
        self._read = read

    def rows(self, tasks: Sequence[int], layer: str, start: int, stop: int, out=None) -> np.ndarray:
        """(tasks, stop - start) uint8: bytes ``start .. stop`` of each task's packed mask
        (into ``out`` where given)."""
        return self._read(tasks, layer, start, stop, out)

    def __getitem__(self, task: int) -> Mapping[str, np.ndarray]:
        if task not in self._tasks:
            raise KeyError(task)
        return _TaskMasks(self, task)

    def __iter__(self) -> Iterator[int]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def dense(self, task: int, layer: str) -> np.ndarray:
        shape = self._shapes[layer]
        size = packed_size(int(np.prod(shape, dtype=np.int64)))
        return unpack(self.rows([task], layer, 0, size)[0], shape)


class _TaskMasks(Mapping):
    """One task's masks of a ``PackedMasks``, each unpacked when asked for."""

    def __init__(self, masks: PackedMasks, task: int) -> None:
        self._masks, self._task = masks, task

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer not in self._masks._shapes:
            raise KeyError(layer)
        return self._masks.dense(self._task, layer)

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks._shapes)

    def __len__(self) -> int:
        return len(self._masks._shapes)
