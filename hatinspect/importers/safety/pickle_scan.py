"""Checking a PyTorch file before ``torch.load`` sees it, and what it claims after.

Nothing from the file runs here. Pickles are read opcode by opcode (``pickletools.genops``)
and followed on a symbolic stack that knows, for every object, how deeply it nests and
how many objects it expands to, counting a memo entry again each time it is re-used: a
2 kB pickle can describe a tuple of 2^60 leaves that hashing never finishes, or a key
nested 10^6 deep that crashes the interpreter. A torch zip's records are read in full,
their CRCs and sizes checked against the directory: the pickles' before torch's own reader
sees them, the tensors' records in a thread while torch reads them and before anything
uses them.
After loading, every tensor must hold the elements it claims: a stride-0 view of one
number claiming 2^33 elements would otherwise be expanded by the first operation on it.
"""

from __future__ import annotations

import functools
import io
import pickletools
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hatinspect.model.errors import CheckpointError, shown

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


@dataclass(frozen=True)
class CheckedFile:
    """What ``check_torch_file`` found: the globals the file's pickles name, for the caller
    to judge, and the check of a zip's data records, which goes on in a thread."""

    globals: tuple[str, ...] = ()
    records: RecordCheck | None = None

    @property
    def zipped(self) -> bool:
        """Whether the file was checked as a torch zip (by its first bytes)."""
        return self.records is not None

    def wait(self) -> None:
        """Raise what the check of the data records found, once it is done."""
        if self.records is not None:
            self.records.wait()


def check_torch_file(path: Path) -> CheckedFile:
    """Refuse a file whose zip records or pickles no checkpoint has; ``CheckpointError``.
    A zip's pickles are checked before this returns; its data records' CRCs in a thread
    (``CheckedFile.wait``), while torch reads them: nothing in them runs."""
    size = path.stat().st_size
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        names = GlobalNames()
        pickles, stored = _zip_records(path, size)
        for name, data in pickles:
            scan_pickle(path, data, name, names)
        # started after the scan, which it would slow down (both want the interpreter at
        # every chunk), and beside torch.load, which waits on the same reads
        return CheckedFile(tuple(names.sorted()), RecordCheck(path, stored))
    with path.open("rb") as f:
        data = f.read()  # the file's whole size, which torch.load reads too
    stream, names = io.BytesIO(data), GlobalNames()
    for _ in range(LEGACY_PICKLES):
        if stream.tell() >= len(data):
            break
        _scan(path, stream, "pickle", names)
    return CheckedFile(tuple(names.sorted()))


def scan_pickle(
    path: Path, data: bytes, what: str = "pickle", names: GlobalNames | None = None
) -> None:
    """Refuse a pickle (bytes) nesting deeper than ``MAX_DEPTH``, expanding to more than
    ``MAX_OBJECTS`` objects, or holding absurd integers; nothing in it is executed. The
    globals it names are added to ``names``."""
    _scan(path, io.BytesIO(data), what, names)


class GlobalNames:
    """The globals a pickle names (``GLOBAL``/``STACK_GLOBAL``), followed opcode by opcode
    without running anything: a ``STACK_GLOBAL`` is named by the two strings pushed just
    before it (directly or from the memo), else it is ``"<unknown>"``."""

    __slots__ = ("found", "memo", "last")

    def __init__(self) -> None:
        self.found: set[str] = set()
        self.memo: dict = {}
        self.last: tuple = (None, None)  # what the two latest opcodes pushed

    def step(self, name: str, arg) -> None:
        kind = _NAME_KINDS.get(name)
        if kind is None:  # most opcodes: something that names nothing was pushed
            self.last = (self.last[1], None)
        elif kind == "global":
            self.found.add(arg.replace(" ", "."))
        elif kind == "stack_global":
            module, attr = self.last
            ok = isinstance(module, str) and isinstance(attr, str)
            self.found.add(f"{module}.{attr}" if ok else "<unknown>")
            self._push(None)
        elif kind == "string":
            self._push(arg)
        elif kind == "put":
            self.memo[int(arg)] = self.last[1]
        elif kind == "memoize":
            self.memo[len(self.memo)] = self.last[1]
        else:  # get
            self._push(self.memo.get(int(arg)))

    def _push(self, value) -> None:
        self.last = (self.last[1], value)

    def sorted(self) -> list[str]:
        return sorted(self.found)


STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8",
                        "SHORT_BINSTRING", "BINSTRING", "STRING"})  # fmt: skip
PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
LONGS = frozenset({"LONG1", "LONG4", "LONG"})
_NAME_KINDS = {
    "GLOBAL": "global",
    "STACK_GLOBAL": "stack_global",
    "MEMOIZE": "memoize",
    **dict.fromkeys(STRING_OPS, "string"),
    **dict.fromkeys(PUTS, "put"),
    **dict.fromkeys(GETS, "get"),
}


def _scan(path: Path, stream: io.BytesIO, what: str, names: GlobalNames | None = None) -> None:
    stack: list = []
    memo: dict = {}
    names = names or GlobalNames()
    steps = _STEPS
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            names.step(opcode.name, arg)
            steps.get(opcode.name, _generic)(opcode, arg, stack, memo)
    except _Refused as exc:
        raise CheckpointError(f"{path}: refused to load: {what} {exc}") from None
    except (ValueError, KeyError, IndexError, TypeError, EOFError, RecursionError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({what}: {_reason(exc)})"
        ) from None


class _Refused(Exception):
    pass


# What each opcode that is not a plain constructor does to the symbolic stack and memo;
# every other opcode is `_generic`. Each takes (opcode, arg, stack, memo).
def _mark(opcode, arg, stack: list, memo: dict) -> None:
    stack.append(_MARK)


def _put(opcode, arg, stack: list, memo: dict) -> None:
    memo[arg] = _top(stack)


def _memoize(opcode, arg, stack: list, memo: dict) -> None:
    memo[len(memo)] = _top(stack)


def _get(opcode, arg, stack: list, memo: dict) -> None:
    if arg not in memo:
        raise ValueError(f"memo entry {shown(arg)} read before it is written")
    stack.append(memo[arg])


def _dup(opcode, arg, stack: list, memo: dict) -> None:
    stack.append(_top(stack))


def _pop_one(opcode, arg, stack: list, memo: dict) -> None:  # POP, and STOP
    _pop(stack, 1)


def _pop_mark(opcode, arg, stack: list, memo: dict) -> None:
    _to_mark(stack)


def _long(opcode, arg, stack: list, memo: dict) -> None:
    if isinstance(arg, int) and arg.bit_length() > MAX_INT_BITS:
        raise _Refused(f"holds {shown(arg)}, more than any count in a checkpoint")
    _generic(opcode, arg, stack, memo)


_STEPS = {
    "MARK": _mark,
    "MEMOIZE": _memoize,
    "DUP": _dup,
    "POP": _pop_one,
    "STOP": _pop_one,
    "POP_MARK": _pop_mark,
    **dict.fromkeys(PUTS, _put),
    **dict.fromkeys(GETS, _get),
    **dict.fromkeys(LONGS, _long),
}


@functools.cache
def _effect(opcode) -> tuple[bool, int, int, bool]:
    """(pops to a mark, objects popped besides, objects pushed, grows its container) of
    an opcode, worked out once from ``pickletools``' description."""
    before = [item for item in opcode.stack_before if item.name not in ("mark", "stackslice")]
    marked = any(item.name == "mark" for item in opcode.stack_before)
    return marked, len(before), len(opcode.stack_after), opcode.name in MUTATORS


def _generic(opcode, arg, stack: list, memo: dict) -> None:
    """Pop what ``opcode`` consumes (to the mark first, when it takes a slice), push what it
    makes: a new object over its parts, or the same container grown by them."""
    marked, popped, pushed, mutates = _effect(opcode)
    parts = _to_mark(stack) if marked else []
    if popped:
        parts = _pop(stack, popped) + parts
    if mutates:
        container, added = parts[0], parts[1:]
        _grow(container, added)
        stack.append(container)
        return
    node = _Node()
    if parts:
        _grow(node, parts)
    stack.extend([node] * pushed)


def _grow(node: _Node, parts: list) -> None:
    depth, size = node.depth, node.size
    for part in parts:  # a plain loop: this runs for most opcodes of a pickle
        depth = max(depth, part.depth + 1)
        size += part.size
    node.depth, node.size = depth, min(size, MAX_OBJECTS + 1)
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
    parts = stack[-count:]
    if len(parts) < count or _MARK in parts:  # objects compare by identity
        raise ValueError("stack underflow")
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


# what reading a damaged zip directory or record raises
_DAMAGED_ZIP = (
    zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError, OSError,
    zlib.error,
)  # fmt: skip


def _zip_records(path: Path, size: int) -> tuple[list, list]:
    """The directory and local headers checked, the pickles read and CRC-checked, other
    compressed records too: ``([(pickle name, bytes)], [(stored record, its start)])``."""
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            infos = archive.infolist()
            _check_directory(path, infos, size)
            starts = [_check_local_header(path, raw, info) for info in infos]
            pickles, stored = [], []
            for info, start in zip(infos, starts, strict=True):
                is_pickle = info.filename.endswith(".pkl")
                if info.compress_type != zipfile.ZIP_STORED:
                    data = _read_deflated(path, archive, info)
                elif is_pickle:
                    raw.seek(start)
                    data = raw.read(info.file_size)
                    _check_stored(path, info, data)
                else:
                    stored.append((info, start))
                    continue
                if is_pickle:
                    pickles.append((info.filename.rpartition("/")[2], data))
            return pickles, stored
    except CheckpointError:
        raise
    except _DAMAGED_ZIP as exc:
        if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in str(exc):
            # no end-of-archive record: the end is missing
            raise CheckpointError(
                f"{path}: truncated: a zip archive (torch.save's format) whose directory at"
                f" the end is missing ({size} bytes); the file was probably cut short"
            ) from None
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


def _check_local_header(path: Path, raw, info: zipfile.ZipInfo) -> int:
    """The local header repeats the directory's method, CRC and sizes (unless a data
    descriptor follows): a reader that trusts one and a reader that trusts the other
    must see the same record. Returns where the record's data starts."""
    raw.seek(info.header_offset)
    fields = LOCAL_HEADER.unpack(raw.read(LOCAL_HEADER.size).ljust(LOCAL_HEADER.size, b"\0"))
    signature, _, flags, method, _, _, crc, csize, usize, name_length, extra_length = fields
    if signature != b"PK\x03\x04" or method != info.compress_type:
        raise CheckpointError(
            f"{path}: zip record {shown(info.filename)}: local header disagrees with directory"
        )
    sizes_known = not flags & 0x8 and csize != 0xFFFFFFFF and usize != 0xFFFFFFFF
    named = raw.read(name_length).decode("utf-8" if flags & 0x800 else "cp437", "replace")
    if named != info.orig_filename or (
        sizes_known and (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size)
    ):
        raise CheckpointError(
            f"{path}: zip record {shown(info.filename)}: local header disagrees with directory"
        )
    return info.header_offset + LOCAL_HEADER.size + name_length + extra_length


def _check_stored(path: Path, info: zipfile.ZipInfo, data: bytes) -> None:
    if len(data) != info.file_size:
        _wrong_size(path, info, len(data))
    if zlib.crc32(data) != info.CRC:
        _bad_crc(path, info)


def _bad_crc(path: Path, info: zipfile.ZipInfo):
    raise CheckpointError(
        f"{path}: not a readable PyTorch checkpoint (bad CRC-32 of zip record"
        f" {shown(info.filename)})"
    )


class RecordCheck:
    """The sizes and CRCs of a zip's stored records, checked by a thread of its own
    through one reused buffer (memory stays flat): reading and zlib let go of the
    interpreter, so the check costs no time beside ``torch.load``."""

    def __init__(self, path: Path, records: list[tuple[zipfile.ZipInfo, int]]) -> None:
        self._error: CheckpointError | None = None
        self._thread = threading.Thread(target=self._run, args=(path, records), daemon=True)
        self._thread.start()

    def _run(self, path: Path, records) -> None:
        try:
            buffer = memoryview(bytearray(CHUNK))
            with path.open("rb", buffering=0) as raw:
                for info, start in records:
                    _check_in_chunks(path, raw, buffer, info, start)
        except CheckpointError as exc:
            self._error = exc
        except (OSError, ValueError) as exc:  # the file changed or went since it was opened
            self._error = CheckpointError(
                f"{path}: not a readable PyTorch checkpoint ({_reason(exc)})"
            )

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _check_in_chunks(path: Path, raw, buffer: memoryview, info: zipfile.ZipInfo, start: int):
    raw.seek(start)
    crc, left = 0, info.file_size
    while left:
        count = raw.readinto(buffer[: min(left, len(buffer))])
        if not count:
            _wrong_size(path, info, info.file_size - left)
        crc, left = zlib.crc32(buffer[:count], crc), left - count
    if crc != info.CRC:
        _bad_crc(path, info)


def _read_deflated(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A compressed record read through ``zipfile``, which checks its CRC at the end."""
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
        _wrong_size(path, info, count)
    return b"".join(chunks)


def _wrong_size(path: Path, info: zipfile.ZipInfo, count: int):
    raise CheckpointError(
        f"{path}: zip record {shown(info.filename)} holds {count} bytes,"
        f" its directory says {info.file_size}"
    )


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
