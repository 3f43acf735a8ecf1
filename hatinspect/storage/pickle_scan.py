"""Checking a PyTorch file before ``torch.load`` sees it, and what it claims after.

Nothing from the file runs here. Pickles are read opcode by opcode (``pickletools.genops``)
and followed on a symbolic stack that knows, for every object, how deeply it nests and
how many objects it expands to, counting a memo entry again each time it is re-used: a
2 kB pickle can describe a tuple of 2^60 leaves that hashing never finishes, or a key
nested 10^6 deep that crashes the interpreter. A torch zip's records are read in full,
their CRCs and sizes checked against the directory, before torch's own reader trusts them.
After loading, every tensor must hold the elements it claims: a stride-0 view of one
number claiming 2^33 elements would otherwise be expanded by the first operation on it.
"""

from __future__ import annotations

import functools
import io
import pickletools
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from hatinspect.core.errors import CheckpointError, shown

MAX_DEPTH = 200  # nesting of containers and calls; a Lightning checkpoint nests < 40
MAX_OBJECTS = 10**7  # objects one pickled object expands to, memo re-use counted each time
MAX_INT_BITS = 4096  # LONG1/LONG4 integers: sizes and counts, never thousands of digits
LEGACY_PICKLES = 5  # torch's legacy format: magic, protocol, sys info, object, storage keys
INFLATION = 4  # the records of a zip may hold at most this times the file's size ...
SLACK = 2**20  # ... plus this many bytes (and tensors claim no more than that either)
CHUNK = 2**20
LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature .. extra length, 30 bytes
MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "BUILD", "ADDITEMS"}


class _Node:
    """One object on the symbolic stack: its nesting depth and expanded object count."""

    __slots__ = ("depth", "size")

    def __init__(self, depth: int = 0, size: int = 1) -> None:
        self.depth, self.size = depth, size


_MARK = object()


def check_torch_file(path: Path) -> None:
    """Refuse a file whose zip records or pickles no checkpoint has; ``CheckpointError``."""
    size = path.stat().st_size
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        for name, data in _zip_pickles(path, size):
            scan_pickle(path, data, name)
    else:
        with path.open("rb") as f:
            data = f.read()  # the file's whole size, which torch.load reads too
        stream = io.BytesIO(data)
        for _ in range(LEGACY_PICKLES):
            if stream.tell() >= len(data):
                break
            _scan(path, stream, "pickle")


def scan_pickle(path: Path, data: bytes, what: str = "pickle") -> None:
    """Refuse a pickle (bytes) nesting deeper than ``MAX_DEPTH``, expanding to more than
    ``MAX_OBJECTS`` objects, or holding absurd integers; nothing in it is executed."""
    _scan(path, io.BytesIO(data), what)


def _scan(path: Path, stream: io.BytesIO, what: str) -> None:
    stack: list = []
    memo: dict = {}
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            _step(opcode, arg, stack, memo)
    except _Refused as exc:
        raise CheckpointError(f"{path}: refused to load: {what} {exc}") from None
    except (ValueError, KeyError, IndexError, TypeError, EOFError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({what}: {reason})"
        ) from None


class _Refused(Exception):
    pass


def _step(opcode, arg, stack: list, memo: dict) -> None:
    name = opcode.name
    if name in ("LONG1", "LONG4", "LONG") and isinstance(arg, int):
        if arg.bit_length() > MAX_INT_BITS:
            raise _Refused(f"holds {shown(arg)}, more than any count in a checkpoint")
    if name == "MARK":
        stack.append(_MARK)
    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = _top(stack)
    elif name == "MEMOIZE":
        memo[len(memo)] = _top(stack)
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        if arg not in memo:
            raise ValueError(f"memo entry {shown(arg)} read before it is written")
        stack.append(memo[arg])
    elif name == "DUP":
        stack.append(_top(stack))
    elif name == "POP":
        _pop(stack, 1)
    elif name == "POP_MARK":
        _to_mark(stack)
    elif name == "STOP":
        _pop(stack, 1)
    else:
        _generic(opcode, stack)


def _generic(opcode, stack: list) -> None:
    """Pop what ``opcode`` consumes (to the mark first, when it takes a slice), push what it
    makes: a new object over its parts, or the same container grown by them."""
    before = [item for item in opcode.stack_before if item.name not in ("mark", "stackslice")]
    parts = _to_mark(stack) if any(i.name == "mark" for i in opcode.stack_before) else []
    parts = _pop(stack, len(before)) + parts
    if opcode.name in MUTATORS:
        container, added = parts[0], parts[1:]
        _grow(container, added)
        stack.append(container)
        return
    node = _Node()
    _grow(node, parts)
    stack.extend(node for _ in opcode.stack_after)


def _grow(node: _Node, parts: list) -> None:
    if parts:
        node.depth = max(node.depth, 1 + max(part.depth for part in parts))
        node.size = min(node.size + sum(part.size for part in parts), MAX_OBJECTS + 1)
    if node.depth > MAX_DEPTH:
        raise _Refused(f"nests objects more than {MAX_DEPTH} deep")
    if node.size > MAX_OBJECTS:
        raise _Refused(f"builds an object of more than {MAX_OBJECTS:,} parts (shared re-use)")


def _top(stack: list) -> _Node:
    if not stack or stack[-1] is _MARK:
        raise ValueError("stack underflow")
    return stack[-1]


def _pop(stack: list, count: int) -> list:
    if count == 0:
        return []
    if len(stack) < count or any(item is _MARK for item in stack[-count:]):
        raise ValueError("stack underflow")
    parts = stack[-count:]
    del stack[-count:]
    return parts


def _to_mark(stack: list) -> list:
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is _MARK:
            parts = stack[index + 1 :]
            del stack[index:]
            return parts
    raise ValueError("no mark on the stack")


# --- zip records -------------------------------------------------------------------------


def _zip_pickles(path: Path, size: int) -> Iterator[tuple[str, bytes]]:
    """Every record read and checked; yields the pickles' names and bytes."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_directory(path, infos, size)
            with path.open("rb") as raw:
                for info in infos:
                    _check_local_header(path, raw, info)
            for info in infos:
                data = _read_record(path, archive, info)
                if info.filename.endswith(".pkl"):
                    yield info.filename.rpartition("/")[2], data
    except zipfile.BadZipFile as exc:
        if "not a zip file" in str(exc):  # no end-of-archive record: the end is missing
            raise CheckpointError(
                f"{path}: truncated: a zip archive (torch.save's format) whose directory at"
                f" the end is missing ({size} bytes); the file was probably cut short"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_reason(exc)})"
        ) from None
    except (zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_reason(exc)})"
        ) from None
    except (ValueError, OSError, zlib.error) as exc:  # damaged records
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_reason(exc)})"
        ) from None


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def _check_directory(path: Path, infos: list[zipfile.ZipInfo], size: int) -> None:
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise CheckpointError(f"{path}: refused to load: a zip record name appears twice")
    if any(info.flag_bits & 0x1 for info in infos):
        raise CheckpointError(f"{path}: refused to load: an encrypted zip record")
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{path}: refused to load: zip compression not stored/deflated")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CheckpointError(f"{path}: zip record {shown(info.filename)}: sizes disagree")
    inflated = sum(info.file_size for info in infos)
    if inflated > INFLATION * size + SLACK:
        raise CheckpointError(
            f"{path}: refused to load: its zip records inflate to {inflated:,} bytes,"
            f" more than {INFLATION} times the file's {size:,}"
        )


def _check_local_header(path: Path, raw, info: zipfile.ZipInfo) -> None:
    """The local header repeats the directory's method, CRC and sizes (unless a data
    descriptor follows): a reader that trusts one and a reader that trusts the other
    must see the same record."""
    raw.seek(info.header_offset)
    fields = LOCAL_HEADER.unpack(raw.read(LOCAL_HEADER.size).ljust(LOCAL_HEADER.size, b"\0"))
    signature, _, flags, method, _, _, crc, csize, usize, _, _ = fields
    if signature != b"PK\x03\x04" or method != info.compress_type:
        raise CheckpointError(
            f"{path}: zip record {shown(info.filename)}: local header disagrees with directory"
        )
    sizes_known = not flags & 0x8 and csize != 0xFFFFFFFF and usize != 0xFFFFFFFF
    if sizes_known and (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size):
        raise CheckpointError(
            f"{path}: zip record {shown(info.filename)}: local header disagrees with directory"
        )


def _read_record(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The record's bytes (kept only for pickles), CRC checked by ``zipfile`` at its end."""
    keep = info.filename.endswith(".pkl")
    chunks, count = [], 0
    with archive.open(info) as record:
        while chunk := record.read(CHUNK):
            count += len(chunk)
            if count > info.file_size:
                break
            if keep:
                chunks.append(chunk)
    if count != info.file_size:
        raise CheckpointError(
            f"{path}: zip record {shown(info.filename)} holds {count} bytes,"
            f" its directory says {info.file_size}"
        )
    return b"".join(chunks)


# --- what the loaded objects claim ---------------------------------------------------------


def check_tensors(path: Path, payload, size: int) -> None:
    """Every tensor in ``payload`` is a dense CPU tensor of a dtype hatinspect reads, holds
    every element it claims, and together they claim no more than the file can hold."""
    import torch

    claimed = 0
    for tensor in _tensors(payload):
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
            kind = "quantized" if tensor.is_quantized else f"{tensor.layout}, {tensor.device}"
            raise CheckpointError(f"{path}: holds a tensor that is not dense ({kind})")
        if tensor.dtype not in _readable_dtypes():
            raise CheckpointError(f"{path}: holds a tensor of dtype {tensor.dtype}, not read")
        held = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
        need = tensor.numel() * tensor.element_size()
        if need > held:
            raise CheckpointError(
                f"{path}: refused to load: a tensor of shape {tuple(tensor.shape)} claims"
                f" {need:,} bytes but holds {max(held, 0):,}"
            )
        claimed += need
    if claimed > INFLATION * size + SLACK:
        raise CheckpointError(
            f"{path}: refused to load: its tensors claim {claimed:,} bytes,"
            f" more than {INFLATION} times the file's {size:,}"
        )


@functools.cache
def _readable_dtypes() -> frozenset:
    import torch

    return frozenset({
        torch.float64, torch.float32, torch.float16, torch.bfloat16,
        torch.float8_e4m3fn, torch.float8_e5m2,
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
    })  # fmt: skip


def _tensors(payload) -> Iterator:
    """Tensors anywhere in dicts, lists, tuples and the attributes of other objects (a
    placeholder for a pickled class keeps its arguments and state there), walked without
    recursion, each object once."""
    import torch

    pending, seen = [payload], set()
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif id(item) in seen or isinstance(item, str | bytes | int | float | type):
            continue
        else:
            seen.add(id(item))
            if isinstance(item, dict):
                pending.extend(item.values())
                pending.extend(key for key in item if isinstance(key, torch.Tensor))
            elif isinstance(item, list | tuple | set | frozenset):
                pending.extend(item)
            elif isinstance(getattr(item, "__dict__", None), dict):
                pending.extend(vars(item).values())
