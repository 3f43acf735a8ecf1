"""Gzipped pickles of plain data and numpy arrays (the original HAT code's ``.pkz`` logs),
read inertly and without torch.

The file is decompressed in chunks up to a byte cap (no gzip bomb), then unpickled by an
unpickler whose only globals are numpy's array, dtype and scalar reconstruction names
(numpy 1's ``numpy.core`` and numpy 2's ``numpy._core``), each mapped to a function of this
module that rebuilds the value from its bytes: nothing named in the file is ever called.
Dtypes are plain booleans, integers and floats; every array's bytes must match its shape.
Any other global is refused by name, in one line.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import pickletools
import re
import zlib
from pathlib import Path

import numpy as np

from hatinspect.model.errors import CheckpointError, reason, shown

MAX_COMPRESSED = 256 * 2**20  # bytes of a .pkz file
# bytes once decompressed, arrays included (stored in-band): the masks of 200 epochs of 20
# tasks of the original AlexNet (4,544 gated units) are about 75 MB
MAX_PICKLE = 256 * 2**20
MAX_DIMS = 8  # a logged mask is (1, units); losses and accuracies are 1-D
MAX_OBJECTS = 10_000_000  # containers and values walked after unpickling
CHUNK = 2**20
DTYPE_SPEC = re.compile(r"[biuf][1248]")  # numpy's pickled dtype names: 'f4', 'i8', 'b1'...
BYTE_ORDERS = {"<", ">", "|", "="}


class PickleRefused(CheckpointError):
    """A file that is not a gzipped pickle of plain data and numpy arrays (opened as a
    checkpoint, the logs' refusals are the reader's)."""


def read_gzip(path: Path, limit: int | None = None) -> bytes:
    """The decompressed bytes of a gzip file, read a chunk at a time, at most `limit`
    (`MAX_PICKLE` by default)."""
    limit = MAX_PICKLE if limit is None else limit
    try:
        if path.stat().st_size > MAX_COMPRESSED:
            raise PickleRefused(f"{path}: over {MAX_COMPRESSED // 2**20} MiB, not a log file")
        out = io.BytesIO()
        with gzip.open(path, "rb") as file:
            while chunk := file.read(CHUNK):
                if out.tell() + len(chunk) > limit:
                    raise PickleRefused(
                        f"{path}: decompresses to over {limit // 2**20} MiB; refused"
                    )
                out.write(chunk)
    except OSError as exc:  # gzip.BadGzipFile is one
        raise PickleRefused(f"{path}: not a readable gzip file ({reason(exc, 120)})") from None
    except (EOFError, zlib.error) as exc:
        raise PickleRefused(f"{path}: truncated or damaged gzip ({reason(exc, 120)})") from None
    return out.getvalue()


def load_numpy_pickle(data: bytes, where: str) -> object:
    """The object a pickle of dicts, lists, tuples, strings, numbers and numpy arrays
    holds, rebuilt inertly; PickleRefused (one line, naming `where`) otherwise."""
    try:
        _check_opcodes(data)
        loaded = _Unpickler(io.BytesIO(data)).load()
    except PickleRefused as exc:
        raise PickleRefused(f"{where}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, RecursionError, MemoryError) as exc:  # fmt: skip
        raise PickleRefused(f"{where}: not a pickle of plain data ({reason(exc, 120)})") from None
    try:
        return _Resolved(where).value(loaded)
    except TypeError as exc:  # an array as a dict's key: unhashable once rebuilt
        raise PickleRefused(f"{where}: not a pickle of plain data ({reason(exc, 120)})") from None


def _check_opcodes(data: bytes) -> None:
    """Every opcode's argument lies within `data`: a length claimed past its end (which the
    C unpickler would try to allocate, printing a SystemError as it fails) is refused here."""
    try:
        for _ in pickletools.genops(data):
            pass
    except ValueError as exc:
        raise PickleRefused(f"a damaged pickle ({reason(exc, 120)})") from None


def load_gzip_pickle(path: Path) -> object:
    return load_numpy_pickle(read_gzip(path), str(path))


# the stand-ins: what find_class hands the unpickler instead of numpy's callables


class _Dtype:
    """``numpy.dtype(spec, align, copy)``, its state set by BUILD."""

    dtype: np.dtype | None = None  # None: made without its arguments (NEWOBJ)

    def __init__(self, spec, align=False, copy=False) -> None:
        if not isinstance(spec, str) or not DTYPE_SPEC.fullmatch(spec):
            raise PickleRefused(f"dtype {shown(spec)} refused: only booleans, integers, floats")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state) -> None:
        if self.dtype is None or not isinstance(state, tuple) or len(state) < 5:
            raise PickleRefused("a dtype's state is not that of a plain numpy dtype")
        if not isinstance(state[1], str) or state[1] not in BYTE_ORDERS:
            raise PickleRefused("a dtype's state is not that of a plain numpy dtype")
        if any(part is not None for part in state[2:5]):  # subarray, names, fields
            raise PickleRefused("structured or sub-array dtypes are refused")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _Marker:
    """``numpy.ndarray``: only ever the first argument of ``_reconstruct``; takes no state."""

    __slots__ = ()

    def __setstate__(self, state) -> None:
        raise PickleRefused("numpy.ndarray given a state: refused")


NDARRAY = _Marker()


class _PendingArray:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: an array whose shape,
    dtype and bytes the BUILD that follows gives."""

    array: np.ndarray | None = None

    def __init__(self, cls=None, shape=None, typecode=None) -> None:
        if cls is not NDARRAY:
            raise PickleRefused(f"_reconstruct of {shown(cls)} refused: only numpy.ndarray")

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise PickleRefused("an array's state is not that of a numpy array")
        _, shape, dtype, fortran, raw = state
        order = "F" if fortran is True else "C"
        self.array = _array(raw, dtype, shape, order)


def _frombuffer(buffer, dtype, shape, order) -> np.ndarray:
    """``numpy.core.numeric._frombuffer``: protocol 5's arrays."""
    return _array(buffer, dtype, shape, order)


def _scalar(dtype, raw) -> np.generic:
    """``numpy.core.multiarray.scalar``: one value of a plain dtype."""
    return _array(raw, dtype, (), "C")[()]


def _array(raw, dtype, shape, order) -> np.ndarray:
    if not isinstance(dtype, _Dtype) or dtype.dtype is None:
        raise PickleRefused(f"an array's dtype is {shown(dtype)}, not a numpy dtype")
    if not isinstance(raw, bytes | bytearray):
        raise PickleRefused(f"an array's data is {shown(raw)}, not bytes")
    dims = _shape(shape)
    if order not in ("C", "F"):
        raise PickleRefused(f"array order {shown(order)} refused")
    expected = math.prod(dims) * dtype.dtype.itemsize
    if expected != len(raw):
        raise PickleRefused(
            f"an array of shape {dims} and dtype {dtype.dtype} claims {expected} bytes "
            f"but holds {len(raw)}"
        )
    flat = np.frombuffer(bytes(raw), dtype=dtype.dtype)
    if dtype.dtype == np.bool_ and flat.size and int(flat.view(np.uint8).max()) > 1:
        raise PickleRefused("a boolean array holds bytes other than 0 and 1")
    return flat.reshape(dims, order=order).copy()


def _shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMS:
        raise PickleRefused(f"array shape {shown(shape)} refused")
    if not all(type(d) is int and 0 <= d < 2**40 for d in shape):
        raise PickleRefused("an array's shape holds something other than sizes")
    return shape


SAFE = {
    ("numpy", "dtype"): _Dtype,
    **{
        (f"numpy.{core}.multiarray", name): function
        for core in ("core", "_core")
        for name, function in (("_reconstruct", _PendingArray), ("scalar", _scalar))
    },
    **{(f"numpy.{core}.numeric", "_frombuffer"): _frombuffer for core in ("core", "_core")},
}


class _StandIn:
    """What the unpickler gets for an allowed global: a fresh callable of one of this
    module's rebuilders, which no BUILD can change (it has no attributes to set)."""

    __slots__ = ("_build",)

    def __init__(self, build) -> None:
        self._build = build

    def __call__(self, *args):
        return self._build(*args)

    def __setstate__(self, state) -> None:
        raise PickleRefused("a numpy global given a state: refused")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "ndarray"):
            return NDARRAY
        found = SAFE.get((module, name))
        if found is None:
            raise PickleRefused(
                f"refused global {shown(f'{module}.{name}', 80)}: a log file holds plain data "
                "and numpy arrays only"
            )
        return _StandIn(found)

    def persistent_load(self, pid):
        raise PickleRefused("refused a persistent id: a log file holds plain data only")


class _Resolved:
    """The unpickled object with each pending array replaced by its array, checked to hold
    nothing but plain data; shared values are walked once."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.done: dict[int, object] = {}
        self.count = 0

    def value(self, item, depth: int = 0):
        self.count += 1
        if self.count > MAX_OBJECTS or depth > 64:
            raise PickleRefused(f"{self.where}: nested too deep or too many values to be a log")
        if item is None or type(item) in (bool, int, float, str, bytes):
            return item
        if isinstance(item, np.ndarray | np.generic):
            return item
        if id(item) in self.done:
            return self.done[id(item)]
        resolved = self._container(item, depth)
        self.done[id(item)] = resolved
        return resolved

    def _container(self, item, depth: int):
        if isinstance(item, _PendingArray):
            if item.array is None:
                raise PickleRefused(f"{self.where}: an array without its data")
            return item.array
        if type(item) is dict:
            return {self.value(k, depth + 1): self.value(v, depth + 1) for k, v in item.items()}
        if type(item) in (list, tuple):
            return type(item)(self.value(v, depth + 1) for v in item)
        raise PickleRefused(f"{self.where}: holds {shown(item)}, not plain data")
