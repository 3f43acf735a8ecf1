"""Reading whole pickled objects (``torch.save(module, ...)``) without running anything.

Every global a pickle names becomes an inert placeholder class: calling it, ``NEWOBJ``
and ``BUILD`` only record the arguments, state and items it is given. No constructor,
``__setstate__`` or ``__reduce__`` of the file's classes runs, and the classes need not be
installed. Only torch's tensor and storage rebuilding and plain containers are real.

Before anything is unpickled the opcodes are scanned for the globals they name; a global
able to run code or touch the system (``REFUSED``) refuses the whole file by name, even
though as a placeholder it could not run. ``refused_globals`` is that one check.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import pickletools
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch

from hatinspect.importers.safety.pickle_opcodes import GlobalNames, quiet_escapes
from hatinspect.model.errors import CheckpointError, reason

# builtins that run code, reach attributes by name or touch files and the terminal
CODE_BUILTINS = frozenset(
    {"eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "open",
     "globals", "locals", "vars", "breakpoint", "input"}
)  # fmt: skip

# module -> names refused in it ("*": every name in the module and its submodules)
REFUSED: dict[str, frozenset[str] | str] = {
    "__builtin__": CODE_BUILTINS | {"execfile", "reload", "file"},  # Python 2 spellings
    "builtins": CODE_BUILTINS,
    "_io": "*",
    "_pickle": "*",
    "code": "*",
    "codeop": "*",
    "commands": "*",
    "ctypes": "*",
    "dill": "*",
    "importlib": "*",
    "io": "*",
    "marshal": "*",
    "multiprocessing": "*",
    "nt": "*",
    "operator": frozenset({"attrgetter", "methodcaller"}),
    "os": "*",
    "pickle": "*",
    "platform": "*",
    "posix": "*",
    "pty": "*",
    "runpy": "*",
    "shutil": "*",
    "socket": "*",
    "subprocess": "*",
    "sys": "*",
    "torch": frozenset({"load", "jit", "hub", "compile"}),
    "torch._C": "*",
    "torch.hub": "*",
    "torch.jit": "*",
    "torch.serialization": "*",
    "types": "*",
    "webbrowser": "*",
}


# the real objects a file may use: plain containers and torch's tensor rebuilding
def rebuild_tensor_v2(storage, storage_offset, size, stride, *args):
    """torch's own rebuild, once the view is known to lie inside the storage: ``set_``
    would otherwise grow a storage read from the file to whatever the pickle claims."""
    fits = (
        isinstance(storage, torch.storage.TypedStorage)
        and type(storage_offset) is int
        and isinstance(size, tuple | torch.Size)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(type(n) is int and n >= 0 for n in (*size, *stride, storage_offset))
    )
    if fits and all(size):
        last = storage_offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
        fits = last < storage._untyped_storage.nbytes() // storage.dtype.itemsize
    if not fits:
        raise pickle.UnpicklingError("a tensor reaches outside its storage")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, *args)


def _rebuild_tensor(*args):
    """torch < 0.4's pickled tensors (``_TensorBase.__reduce__``), checked the same way; a
    call with other arguments stays the inert record any unknown global makes."""
    if len(args) != 4:
        return _OldRebuild(*args)
    return rebuild_tensor_v2(*args, False, collections.OrderedDict())


REAL = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}
STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


class Placeholder:
    """An object of a class the file names; it records what unpickling gives it."""

    global_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, listitems=[])
        return obj

    def __init__(self, *args, **kwargs):  # arguments are recorded by __new__
        pass

    def __setstate__(self, state):
        self.__dict__["state"] = state

    def __setitem__(self, key, value):
        self.__dict__["items"][key] = value

    def append(self, value):
        self.__dict__["listitems"].append(value)

    def extend(self, values):
        self.__dict__["listitems"].extend(values)

    def __repr__(self) -> str:
        return f"<placeholder {self.global_name}>"


class _OldRebuild(Placeholder):
    global_name = "torch._utils._rebuild_tensor"


def refused_globals(names: Iterable[str]) -> list[str]:
    """The names among ``module.name`` globals that could run code or touch the system,
    sorted, under their Python 3 names (a protocol 2 pickle may say ``commands.call``
    or ``__builtin__.eval``, which unpickling maps to ``subprocess.call``, ``builtins.eval``)."""
    found = {_python3_name(name) for name in names}
    return sorted({name for name in found if _refused(name)})


def _python3_name(name: str) -> str:
    module, _, attr = name.rpartition(".")
    if (module, attr) in _compat_pickle.NAME_MAPPING:
        module, attr = _compat_pickle.NAME_MAPPING[(module, attr)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{attr}"


def _refused(name: str) -> bool:
    for module, names in REFUSED.items():
        if name.startswith(module + "."):
            rest = name[len(module) + 1 :]
            if names == "*" or rest.split(".")[0] in names:
                return True
    return False


def pickle_globals(data) -> list[str]:
    """Every global the pickle's opcodes name (``GLOBAL``/``STACK_GLOBAL``), sorted;
    a ``STACK_GLOBAL`` whose names cannot be told without running is ``"<unknown>"``."""
    names = GlobalNames()
    with quiet_escapes():
        for opcode, arg, _ in pickletools.genops(data):
            names.step(opcode.name, arg)
    return names.sorted()


def check_globals(path: Path, data) -> None:
    """Refuse, naming them, the globals in ``REFUSED``; done before anything is unpickled.
    A pickle too damaged to scan is an error."""
    try:
        names = pickle_globals(data)
    except Exception as exc:  # a damaged pickle: nothing of it is used
        raise CheckpointError(f"{path}: not a readable pickle ({reason(exc, 200)})") from None
    refuse_globals(path, names)


def refuse_globals(path: Path, names: list[str]) -> None:
    """``CheckpointError`` naming the globals among ``names`` that could run code."""
    refused = refused_globals(names)
    if "<unknown>" in names:
        refused.append("a global whose name is computed")
    if refused:
        raise CheckpointError(
            f"{path}: refused: it names {', '.join(refused)}, which could run code"
            " (nothing from the file was executed)"
        )


def load_saved_object(path: Path):
    """The object a ``torch.save`` zip file holds, tensors real and every class a
    ``Placeholder``."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a torch.save zip file ({reason(exc, 200)})") from None
    with archive:
        records = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(records) != 1:
            raise CheckpointError(f"{path}: not a torch.save zip file (no single data.pkl)")
        prefix = records[0][: -len("data.pkl")]
        data = archive.read(records[0])
        check_globals(path, data)
        try:
            return _Unpickler(io.BytesIO(data), archive, prefix).load()
        except CheckpointError:
            raise
        except Exception as exc:  # damaged data: one line, never a traceback
            raise CheckpointError(
                f"{path}: unreadable pickled object ({reason(exc, 200)})"
            ) from None


# a legacy torch.save file (torch < 1.6, or _use_new_zipfile_serialization=False): pickles of
# this magic number, this version and the system's sizes, then the object, then its storage keys,
# then each storage's data: its element count (int64, little-endian) and its bytes
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_VERSION = 1001


def load_legacy_object(path: Path):
    """The object a legacy ``torch.save`` file holds, tensors real and every class a
    ``Placeholder``; each storage must hold exactly the elements its record claims."""
    data = path.read_bytes()
    stream = io.BytesIO(data)
    try:
        shared = _LegacyStorages(len(data))
        header = [_LegacyUnpickler(stream, shared).load() for _ in range(3)]
        if header[:2] != [LEGACY_MAGIC, LEGACY_VERSION] or not _little_endian(header[2]):
            raise CheckpointError(f"{path}: not a legacy torch.save file (its header differs)")
        obj = _LegacyUnpickler(stream, shared).load()
        shared.fill(_LegacyUnpickler(stream, shared).load(), stream)
        return obj
    except CheckpointError:
        raise
    except Exception as exc:  # damaged data: one line, never a traceback
        raise CheckpointError(f"{path}: unreadable pickled object ({reason(exc, 200)})") from None


def _little_endian(info) -> bool:
    return isinstance(info, dict) and info.get("little_endian") is True


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive, self._prefix = archive, prefix
        self._classes: dict[str, type] = {}
        self._storages: dict[str, torch.UntypedStorage] = {}

    def find_class(self, module: str, name: str):
        full = f"{module}.{name}"
        # the opcode scan refused these first; this is a second lock
        if _refused(full) or _refused(_python3_name(full)):
            raise pickle.UnpicklingError(f"refused global {full}")
        if (module, name) in REAL:
            return REAL[(module, name)]
        if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:  # old: torch.cuda
            return STORAGE_DTYPES[name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if full not in self._classes:
            self._classes[full] = type(name, (Placeholder,), {"global_name": full})
        return self._classes[full]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.60}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(key, str):
            raise pickle.UnpicklingError("malformed storage record")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            if type(numel) is not int or len(raw) != numel * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key:.20} holds other than it claims")
            self._storages[key] = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8)
        untyped = self._storages[key]
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


class _LegacyStorages:
    """The storages a legacy file's object names: made zeroed as it names them (all of them
    together no larger than the file), filled from the data after the pickles, as torch's
    ``_legacy_load`` fills them."""

    def __init__(self, size: int):
        self.size = size
        self.classes: dict[str, type] = {}
        self.claims: dict[str, tuple[torch.dtype, int]] = {}
        self.storages: dict[str, torch.UntypedStorage] = {}

    def storage(self, dtype, key: str, numel: int) -> torch.UntypedStorage:
        if key not in self.storages:
            claimed = sum(n * d.itemsize for d, n in self.claims.values())
            if numel < 0 or claimed + numel * dtype.itemsize > self.size:
                raise pickle.UnpicklingError(f"storage {key:.20} claims more than the file holds")
            self.claims[key] = (dtype, numel)
            self.storages[key] = torch.UntypedStorage(numel * dtype.itemsize).fill_(0)
        elif self.claims[key] != (dtype, numel):
            raise pickle.UnpicklingError(f"storage {key:.20} is named with two sizes")
        return self.storages[key]

    def fill(self, keys, stream: io.BytesIO) -> None:
        """Copy each storage's bytes, in the order of ``keys``, from what follows them."""
        if not (isinstance(keys, list) and sorted(keys) == sorted(self.claims)):
            raise pickle.UnpicklingError("the storage keys do not match the storages named")
        for key in keys:
            dtype, numel = self.claims[key]
            stored = int.from_bytes(stream.read(8), "little", signed=True)
            raw = stream.read(numel * dtype.itemsize)
            if stored != numel or len(raw) != numel * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key:.20} holds other than it claims")
            if raw:
                source = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
                self.storages[key].copy_(source.untyped_storage())


class _LegacyUnpickler(_Unpickler):
    """One of a legacy file's pickles, its classes placeholders and its storages shared."""

    def __init__(self, stream: io.BytesIO, shared: _LegacyStorages):
        pickle.Unpickler.__init__(self, stream, encoding="utf-8")  # Python 2's str, as torch
        self._shared, self._classes = shared, shared.classes

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            return pid[1]  # a module's class, beside its source text (never compiled)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.60}")
        _, dtype, key, _location, numel, view = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(key, str) or type(numel) is not int:
            raise pickle.UnpicklingError("malformed storage record")
        untyped = self._shared.storage(dtype, key, numel)
        if view is not None:  # torch < 1.0 saved views of a storage this way
            untyped = _view(untyped, dtype, view)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _view(untyped: torch.UntypedStorage, dtype: torch.dtype, view) -> torch.UntypedStorage:
    if not (isinstance(view, tuple) and len(view) == 3 and all(type(n) is int for n in view[1:])):
        raise pickle.UnpicklingError("malformed storage view")
    first, count = view[1] * dtype.itemsize, view[2] * dtype.itemsize
    if first < 0 or count < 0 or first + count > untyped.nbytes():
        raise pickle.UnpicklingError("a storage view reaches outside its storage")
    return untyped[first : first + count]
