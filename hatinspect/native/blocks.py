"""Safetensors tensors in bounded memory: read in blocks with ``pread``, write as a stream.

``safe_open`` maps the whole file and copies a tensor at a time, so a comparison of two
files keeps every page it touched resident. Here a tensor is read a block of whole rows
(or part of one row) at a time into a fresh buffer, which is freed before the next: the
memory used does not grow with the file. The file layout is safetensors' own: an 8-byte
little-endian header length, a JSON header, then the data.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hatinspect.model.errors import CheckpointError

BLOCK_BYTES = 8 * 2**20  # one block of one tensor; a comparison holds a few of them

# safetensors dtype -> numpy dtype of the same size whose bits can be compared
_STORED = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "F8_E4M3": np.uint8,
    "F8_E5M2": np.uint8,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
DTYPE_BYTES = {name: np.dtype(stored).itemsize for name, stored in _STORED.items()}
NARROW_FLOATS = ("BF16", "F8_E4M3", "F8_E5M2")  # floats numpy has no type for
_NAMES = {np.dtype(v).str: k for k, v in _STORED.items() if k not in NARROW_FLOATS}


class Entry(NamedTuple):
    """Where one tensor lies in a file (a tuple: a header may list 100,000 of them)."""

    dtype: str  # safetensors' name, e.g. "F32"
    shape: tuple[int, ...]
    start: int  # absolute file offset of its first byte
    nbytes: int

    @property
    def itemsize(self) -> int:
        return DTYPE_BYTES[self.dtype]


class TensorFile:
    """A safetensors file opened for block reads; use as a context manager."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self.entries = _entries(self.path, self._fd)
        except BaseException:
            os.close(self._fd)
            raise

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *_exc) -> None:
        os.close(self._fd)

    def entry(self, key: str) -> Entry:
        try:
            return self.entries[key]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor {key!r}") from None

    def read(self, key: str, first: int = 0, count: int | None = None) -> np.ndarray:
        """Flat elements ``first .. first + count`` of tensor ``key``, in its stored dtype
        (BF16 and F8 as unsigned integers of their size)."""
        entry = self.entry(key)
        dtype = np.dtype(_STORED[entry.dtype])
        if count is None:
            count = math.prod(entry.shape) - first
        data = self.read_bytes(entry.start + first * dtype.itemsize, count * dtype.itemsize)
        return np.frombuffer(data, dtype=dtype)

    def read_bytes(self, offset: int, size: int) -> bytes:
        """``size`` bytes from absolute file offset ``offset``."""
        parts = []
        while size > 0:
            got = os.pread(self._fd, size, offset)
            if not got:
                raise CheckpointError(f"{self.path}: truncated at byte {offset}")
            parts.append(got)
            offset, size = offset + len(got), size - len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)


def row_blocks(shape: tuple[int, ...], itemsize: int, limit: int | None = None):
    """(row_start, row_stop, column_start, column_stop) blocks of a ``(rows, columns, *k)``
    tensor, each at most ``limit`` bytes where a row's column allows: whole rows while a
    row fits, otherwise parts of one row. Each block is contiguous in row-major order."""
    limit = BLOCK_BYTES if limit is None else limit
    rows, columns = shape[0], (shape[1] if len(shape) > 1 else 1)
    per_column = math.prod(shape[2:]) * itemsize
    per_row = columns * per_column
    if per_row <= limit:
        step = max(1, limit // per_row)
        for start in range(0, rows, step):
            yield start, min(rows, start + step), 0, columns
        return
    step = max(1, limit // per_column)
    for row in range(rows):
        for start in range(0, columns, step):
            yield row, row + 1, start, min(columns, start + step)


def stored_name(dtype) -> str:
    """safetensors' name for a numpy dtype (float32 -> "F32")."""
    return _NAMES[np.dtype(dtype).str]


def dtype_name(dtype: str) -> str:
    """numpy's name for a safetensors dtype ("F32" -> "float32"; "BF16" -> "bf16")."""
    if dtype in NARROW_FLOATS:
        return dtype.lower()
    return np.dtype(_STORED[dtype]).name if dtype in _STORED else dtype


def as_float64(values: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values (as `TensorFile.read` returns them) as float64 numbers; `dtype` is
    the safetensors name (BF16 and F8 are decoded from their bits) or numpy's."""
    if dtype in NARROW_FLOATS:
        with np.errstate(invalid="ignore"):  # signalling NaN payloads stay NaN
            return as_float32(values, dtype).astype(np.float64)
    return values.astype(np.float64)


def as_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    """A narrow float's stored bits (BF16 as uint16, F8 as uint8) decoded to float32,
    which holds each of their values exactly."""
    if dtype == "BF16":
        return (values.astype(np.uint32) << 16).view(np.float32)  # NaN payloads stay NaN
    return _fp8_values(dtype)[values]


def as_bits(values: np.ndarray) -> np.ndarray:
    """The same bytes as unsigned integers, so that equality means bit-identity."""
    return values.view(f"u{values.dtype.itemsize}")


def write_stream(
    path: str | os.PathLike,
    tensors: Mapping[str, tuple[np.dtype, tuple[int, ...], Iterable[np.ndarray]]],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a safetensors file whose tensors come as iterables of blocks in row-major
    order: ``name -> (dtype, shape, blocks)``; only one block is in memory at a time."""
    header, offset = {}, 0
    for name, (dtype, shape, _) in tensors.items():
        size = math.prod(shape) * np.dtype(dtype).itemsize
        header[name] = {
            "dtype": stored_name(dtype),
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    if metadata:
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for name, (dtype, shape, blocks) in tensors.items():
            written = 0
            for block in blocks:
                data = np.ascontiguousarray(block, dtype=dtype)
                f.write(data.data)
                written += data.nbytes
            if written != header[name]["data_offsets"][1] - header[name]["data_offsets"][0]:
                raise ValueError(f"tensor {name!r}: the blocks do not fill its shape {shape}")


def _entries(path: Path, fd: int) -> dict[str, Entry]:
    prefix = os.pread(fd, 8, 0)
    length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
    size = os.fstat(fd).st_size
    if not 0 < length <= size - 8:
        raise CheckpointError(f"{path}: not a valid safetensors file (header length)")
    try:
        header = json.loads(os.pread(fd, length, 8))
    except ValueError:
        raise CheckpointError(f"{path}: not a valid safetensors file (header JSON)") from None
    data = 8 + length
    entries = {}
    for key, record in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = record["dtype"], record["shape"], record["data_offsets"]
            nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
            ok = end - begin == nbytes and 0 <= begin and data + end <= size
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{path}: not a valid safetensors file (tensor {key!r})")
        entries[key] = Entry(dtype, tuple(shape), data + begin, nbytes)
    return entries


def _fp8_table(exponent_bits: int, bias: int, finite_max_code: bool) -> np.ndarray:
    """float64 value of each of the 256 codes of an 8-bit float."""
    mantissa_bits = 7 - exponent_bits
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = codes & ((1 << mantissa_bits) - 1)
    scale = 2.0**mantissa_bits
    normal = (1 + mantissa / scale) * 2.0 ** (exponent - bias)
    subnormal = (mantissa / scale) * 2.0 ** (1 - bias)
    values = sign * np.where(exponent == 0, subnormal, normal)
    top = exponent == (1 << exponent_bits) - 1
    if finite_max_code:  # E4M3FN: only S.1111.111 is NaN, no infinities
        values[(codes & 0x7F) == 0x7F] = np.nan
    else:  # E5M2: IEEE-like
        values[top & (mantissa == 0)] = sign[top & (mantissa == 0)] * np.inf
        values[top & (mantissa != 0)] = np.nan
    return values


@functools.cache
def _fp8_values(dtype: str) -> np.ndarray:
    """float32 value of each of the 256 codes of an F8 dtype."""
    return _fp8_table(*_FP8_LAYOUTS[dtype]).astype(np.float32)


# exponent bits, exponent bias, whether the top code is finite (E4M3FN) or IEEE-like
_FP8_LAYOUTS = {"F8_E4M3": (4, 7, True), "F8_E5M2": (5, 15, False)}
