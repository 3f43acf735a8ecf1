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
    """Adds up ``shared_counts`` of blocks of packed rows (n rows, at most ``width``
    bytes a block) with the buffers made once: the AND of row a with itself and the rows
    after it and its popcounts (uint8 a word), summed in uint32 (where a block's row holds
    fewer than 2**32 bits) and added to an int64 upper triangle once a block."""

    def __init__(self, rows: int, width: int) -> None:
        self._upper = np.zeros((rows, rows), dtype=np.int64)
        words = -(-width // WORD)
        self._padded: np.ndarray | None = None  # made once a block needs it
        self._shape = (rows, words * WORD)
        self._both = np.empty((rows, words), dtype=np.uint64)
        self._counts = np.empty((rows, words), dtype=np.uint8)
        # one block's counts, the upper triangle written row by row (the rest stays 0)
        self._block = np.zeros((rows, rows), np.uint64 if 8 * words * WORD >= 2**32 else np.uint32)

    def add(self, rows: np.ndarray) -> None:
        """Counts one (n, bytes) block of the n packed rows (bytes <= the width)."""
        n, upper = len(rows), self._upper
        if n != len(upper):
            raise ValueError(f"{n} rows, counted in pairs of {len(upper)}")
        if not _HAS_BITWISE_COUNT:
            for a in range(n):
                upper[a, a:] += _TABLE[rows[a] & rows[a:]].sum(axis=-1, dtype=np.int64)
            return
        words = self._into_words(rows)
        used = words.shape[1]
        both, counts, block = self._both[:, :used], self._counts[:, :used], self._block
        for a in range(n):  # row a ANDed with itself and the rows after it
            rest = slice(a, n)
            np.bitwise_and(words[a], words[rest], out=both[rest])
            np.bitwise_count(both[rest], out=counts[rest])
            np.add.reduce(counts[rest], axis=-1, dtype=block.dtype, out=block[a, rest])
        upper += block

    def total(self) -> np.ndarray:
        """(n, n) int64: the counts so far, mirrored below the diagonal."""
        return self._upper + np.triu(self._upper, 1).T

    def _into_words(self, rows: np.ndarray) -> np.ndarray:
        """(n, words) uint64 view of the rows: the rows themselves where they fill whole
        words and lie contiguous, else copied into the padded buffer (zeros after)."""
        if rows.shape[-1] % WORD == 0 and rows.flags.c_contiguous:
            return rows.view(np.uint64)
        used = -(-rows.shape[-1] // WORD) * WORD
        if self._padded is None:
            self._padded = np.zeros(self._shape, dtype=np.uint8)
        padded = self._padded[:, :used]
        padded[:, rows.shape[-1] :] = 0
        padded[:, : rows.shape[-1]] = rows
        return padded.view(np.uint64)


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
        read: Callable[[Sequence[int], str, int, int], np.ndarray],
    ) -> None:
        self._tasks = tuple(task_ids)
        self._shapes = dict(shapes)
        self._read = read  # (tasks, layer, first byte, end byte) -> (tasks, bytes) uint8

    def rows(self, tasks: Sequence[int], layer: str, start: int, stop: int) -> np.ndarray:
        """(tasks, stop - start) uint8: bytes ``start .. stop`` of each task's packed mask."""
        return self._read(tasks, layer, start, stop)

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
