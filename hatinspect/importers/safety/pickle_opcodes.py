"""A pickle read opcode by opcode (``pickletools.genops``), nothing in it run: followed on
a symbolic stack that knows, for every object, how deeply it nests and how many objects it
expands to (a memo entry counted again each time it is re-used), and the globals it names."""

from __future__ import annotations

import contextlib
import functools
import io
import pickletools
import warnings
from pathlib import Path

from hatinspect.importers.safety.limits import MAX_DEPTH, MAX_INT_BITS, MAX_OBJECTS
from hatinspect.model.errors import CheckpointError, reason, shown

MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "BUILD", "ADDITEMS"}


class _Node:
    """One object on the symbolic stack: its nesting depth and expanded object count."""

    __slots__ = ("depth", "size")

    def __init__(self, depth: int = 0, size: int = 1) -> None:
        self.depth, self.size = depth, size


_MARK = object()


def scan_pickle(
    path: Path, data: bytes, what: str = "pickle", names: GlobalNames | None = None
) -> None:
    """Refuse a pickle (bytes) nesting deeper than ``MAX_DEPTH``, expanding to more than
    ``MAX_OBJECTS`` objects, or holding absurd integers; nothing in it is executed. The
    globals it names are added to ``names``."""
    scan_stream(path, io.BytesIO(data), what, names)


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


def scan_stream(
    path: Path, stream: io.BytesIO, what: str, names: GlobalNames | None = None
) -> None:
    stack: list = []
    memo: dict = {}
    names = names or GlobalNames()
    steps = _STEPS
    try:
        with quiet_escapes():
            for opcode, arg, _ in pickletools.genops(stream):
                names.step(opcode.name, arg)
                steps.get(opcode.name, _generic)(opcode, arg, stack, memo)
    except _Refused as exc:
        raise CheckpointError(f"{path}: refused to load: {what} {exc}") from None
    except (ValueError, KeyError, IndexError, TypeError, EOFError, RecursionError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({what}: {reason(exc, 120)})"
        ) from None


class _Refused(Exception):
    pass


@contextlib.contextmanager
def quiet_escapes():
    """Around a walk of ``pickletools.genops``: a protocol 0 string with an unknown escape
    (``\\E``) makes ``codecs.escape_decode`` warn, which says nothing worth showing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


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
