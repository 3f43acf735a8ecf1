"""``np.save`` files read without running anything.

A plain array (numbers, booleans) is its header's shape of bytes, checked against the
file's size before it is read. An object array is a pickle: its opcodes are scanned
(``pickle_opcodes``), it may name only numpy's array rebuilding, torch's tensor rebuilding,
``OrderedDict`` and ``torch.storage._load_from_bytes``, and it is unpickled with those
alone. Each storage ``_load_from_bytes`` is given is itself a torch file (a legacy
``torch.save`` of one storage, as ``TypedStorage.__reduce__`` writes it): its pickles are
scanned as a file's are, its storage record must claim exactly the bytes it holds, and
the storage is rebuilt from those bytes as the inert unpickler rebuilds one.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
from pathlib import Path
from tokenize import TokenError

import numpy as np
import torch

from hatinspect.importers.safety.limits import INFLATION, SLACK
from hatinspect.importers.safety.pickle_opcodes import GlobalNames, scan_pickle, scan_stream
from hatinspect.importers.safety.tensor_claims import check_tensors
from hatinspect.importers.safety.unpickler import STORAGE_DTYPES, rebuild_tensor_v2, refuse_globals
from hatinspect.model.errors import CheckpointError, reason, shown

MAGIC = b"\x93NUMPY"
MAX_HEADER = 2**16  # numpy writes headers of < 4 kB
PLAIN_KINDS = "fiub"  # float, int, unsigned, bool: read as bytes
SIMPLE_DTYPE = re.compile(r"[fiubO][0-9]{1,2}")  # the dtypes an array's pickle may name
RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's _reconstruct, wherever numpy keeps it
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy format, its first pickle
LEGACY_PROTOCOL = 1001


def read_npy(path: Path):
    """The array an ``np.save`` file holds; an object array's one object (``.item()``) for
    a 0-d array, as ``np.load(...).item()`` gives it. ``CheckpointError`` otherwise."""
    size = path.stat().st_size
    with path.open("rb") as f:
        shape, fortran, dtype = _header(path, f)
        if dtype.kind in PLAIN_KINDS and not dtype.fields:
            return _plain(path, f, size - f.tell(), shape, fortran, dtype)
        if dtype != np.dtype(object) or shape != ():
            raise CheckpointError(f"{path}: an array of {dtype} {shape}, not one read here")
        data = f.read()
    value = _unpickle(path, data, size)
    check_tensors(path, value, size)
    return value


def _header(path: Path, f):
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}[version]  # fmt: skip
        return read(f, max_header_size=MAX_HEADER)
    except (ValueError, KeyError, OSError, SyntaxError, TokenError, RecursionError) as exc:
        # numpy retries a header literal_eval refuses through tokenize: its TokenError
        raise CheckpointError(f"{path}: not a readable .npy file ({reason(exc, 120)})") from None


def _plain(path: Path, f, left: int, shape, fortran: bool, dtype) -> np.ndarray:
    need = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on a crafted shape
    if need != left:
        raise CheckpointError(
            f"{path}: its header claims {need:,} bytes of {dtype} {shape}; it holds {left:,}"
        )
    values = np.frombuffer(f.read(left), dtype=dtype)
    return values.reshape(shape, order="F" if fortran else "C").copy()


# the globals an np.save of WSN's masks, capacities and sparsities names
ARRAY_GLOBALS = frozenset({
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
    "numpy.ndarray", "numpy.dtype", "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2", "torch.storage._load_from_bytes",
})  # fmt: skip


def _unpickle(path: Path, data: bytes, size: int):
    names = GlobalNames()
    scan_pickle(path, data, "the array's pickle", names)
    _only(path, names.sorted(), ARRAY_GLOBALS, "the array's pickle")
    try:
        array = _ArrayUnpickler(io.BytesIO(data), path, budget=INFLATION * size + SLACK).load()
    except CheckpointError:
        raise
    except Exception as exc:  # damaged data: one line, never a traceback
        raise CheckpointError(f"{path}: unreadable .npy pickle ({reason(exc, 200)})") from None
    if type(array) is not np.ndarray or array.dtype != object or array.shape != ():
        raise CheckpointError(f"{path}: its pickle holds {shown(array)}, not a 0-d object array")
    return array.item()


def _only(path: Path, names: list[str], allowed: frozenset, what: str) -> None:
    refuse_globals(path, names)  # code-running globals named as such first
    other = [name for name in names if name not in allowed]
    if other:
        raise CheckpointError(
            f"{path}: refused: {what} names {', '.join(other[:3])}, which np.save of masks"
            " never holds (nothing from the file was executed)"
        )


def _reconstruct(subtype, shape, dtype):
    # numpy's __reduce__ always writes _reconstruct(ndarray, (0,), b'b'); the state set
    # next (BUILD) holds the real shape and is checked by numpy against its data
    if subtype is not np.ndarray or shape != (0,) or dtype not in (b"b", "b"):
        raise pickle.UnpicklingError("an array rebuilt otherwise than numpy pickles one")
    return RECONSTRUCT(subtype, shape, dtype)


def _dtype(name, align=False, copy=True):
    if type(name) is not str or not SIMPLE_DTYPE.fullmatch(name):
        raise pickle.UnpicklingError("an array of a dtype not read here")
    return np.dtype(name)


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, budget: int):
        super().__init__(file)
        self._path, self._budget = path, budget

    def find_class(self, module: str, name: str):
        found = {
            "_reconstruct": _reconstruct,
            "ndarray": np.ndarray,
            "dtype": _dtype,
            "OrderedDict": collections.OrderedDict,
            "_rebuild_tensor_v2": rebuild_tensor_v2,
            "_load_from_bytes": self._storage,
        }.get(name)
        if found is None or f"{module}.{name}" not in ARRAY_GLOBALS:  # the scan's second lock
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return found

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("an np.save pickle has no persistent ids")

    def _storage(self, blob):
        """``torch.storage._load_from_bytes``: a storage from a nested torch file."""
        if type(blob) is not bytes:
            raise pickle.UnpicklingError("a nested storage that is not bytes")
        self._budget -= len(blob)  # each call copies its bytes: memo re-use would multiply them
        if self._budget < 0:
            raise CheckpointError(
                f"{self._path}: refused to load: its nested storages hold more than"
                f" {INFLATION} times the file's size"
            )
        return nested_storage(self._path, blob)


def nested_storage(path: Path, blob: bytes) -> torch.storage.TypedStorage:
    """One storage from a legacy ``torch.save`` of it: five pickles (magic number, protocol,
    system info, the storage's record, its key), then its element count and bytes."""
    what = "a nested torch file"
    if blob.startswith(b"PK\x03\x04"):
        raise CheckpointError(f"{path}: {what} is a zip archive, not a saved storage")
    stream, names = io.BytesIO(blob), GlobalNames()
    starts = []
    for _ in range(5):
        starts.append(stream.tell())
        scan_stream(path, stream, what, names)
    _only(path, names.sorted(), STORAGE_GLOBALS, what)
    magic, protocol, info, record, keys = (_load_one(blob, start) for start in starts)
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: {what} is not a torch.save file (magic, protocol)")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise CheckpointError(f"{path}: {what} is not little-endian, not read")
    dtype, key, numel = _record(path, record)
    if keys != [key]:
        raise CheckpointError(f"{path}: {what} lists other storages than its record's")
    body = memoryview(blob)[stream.tell() :]  # a view: the bytes are copied once, below
    count = int.from_bytes(body[:8], "little")
    held = max(len(body) - 8, 0)
    if len(body) < 8 or count != numel or held != numel * dtype.itemsize:
        raise CheckpointError(
            f"{path}: {what} claims {numel:,} elements of {dtype}; it holds {held:,} bytes"
        )
    untyped = torch.UntypedStorage.from_buffer(body[8:], dtype=torch.uint8) if numel else (
        torch.UntypedStorage(0))  # fmt: skip
    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


STORAGE_GLOBALS = frozenset(f"torch.{name}" for name in STORAGE_DTYPES)


def _load_one(blob: bytes, start: int):
    stream = io.BytesIO(blob)
    stream.seek(start)
    try:
        return _RecordUnpickler(stream).load()
    except Exception as exc:
        raise pickle.UnpicklingError(f"a nested torch file ({reason(exc, 100)})") from None


def _record(path: Path, record):
    """(dtype, key, numel) of ``('storage', <X>Storage, key, location, numel[, view])``."""
    fits = (
        isinstance(record, tuple) and len(record) in (5, 6) and record[0] == "storage"
        and isinstance(record[1], torch.dtype) and type(record[2]) is str
        and type(record[4]) is int and record[4] >= 0 and record[5:] in ((), (None,))
    )  # fmt: skip
    if not fits:
        raise CheckpointError(f"{path}: a nested torch file is not one saved storage")
    return record[1], record[2], record[4]


class _RecordUnpickler(pickle.Unpickler):
    """The five pickles of a saved storage: only storage types are named, and the record
    (a persistent id) is returned as it is, never loaded by torch."""

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):
        return pid
