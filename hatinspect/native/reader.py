"""Reading native safetensors checkpoints, without torch.

A native file is read through its header and its mask tensors only; the weights stay on
disk. Every problem with a file becomes a one-line ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import stat
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

import numpy as np
from safetensors import SafetensorError, safe_open

from hatinspect.model.bits import PackedMasks
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, reason, shown
from hatinspect.model.paths import checkpoint_path
from hatinspect.native import format as fmt
from hatinspect.native.blocks import DTYPE_BYTES, NARROW_FLOATS, TensorFile, as_float32
from hatinspect.native.packed import packed_masks

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container
PICKLE_PROTO = b"\x80"  # torch.save's legacy format and plain pickles start with PROTO
NUMPY_MAGIC = b"\x93NUMPY"  # np.save: the WSN authors' runs keep their masks so


def open_native(path: str | os.PathLike, source: str | None = None) -> Checkpoint:
    """Read a native file's layers and binary masks, without torch.

    Raises ``CheckpointError`` for anything unreadable or inconsistent; a PyTorch file is
    opened by ``hatinspect.open_checkpoint``, which knows both kinds.
    """
    with reading(path):
        return _open_native(existing_file(path), source)


def _open_native(path: Path, source: str | None) -> Checkpoint:
    header, masks, task_norms = _read_native(_native_file(path))
    if source not in (None, "hatinspect", header.source):
        raise CheckpointError(
            f"{path}: a native hatinspect file; source={shown(source)} does not apply"
        )
    return Checkpoint(
        path=str(path),
        backbone=header.backbone,
        source=header.source,
        layers=header.layers,
        task_ids=header.task_ids,
        masks=masks if isinstance(masks, PackedMasks) else _read_only(masks),
        metadata=MappingProxyType(dict(header.user)),
        notes=header.notes,
        task_norms=MappingProxyType(task_norms),
        covers=header.covers,
    )


def _read_only(masks: dict) -> MappingProxyType:
    return MappingProxyType({t: MappingProxyType(m) for t, m in masks.items()})


def _native_file(path: str | os.PathLike) -> Path:
    path = existing_file(path)
    if sniff(path) == "torch":
        raise CheckpointError(f"{path}: a PyTorch file, not a native hatinspect file")
    return path


def read_native_tensors(path: str | os.PathLike, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """A native file's named tensors as numpy arrays (e.g. each layer's ``weight_key``).

    Weights numpy has no type for (bfloat16, float8) are widened to float32.
    """
    with reading(path):
        path = _native_file(path)
        keys = list(keys)
        with open_safetensors(path) as f:
            missing = sorted(set(keys) - set(f.keys()))
            if missing:
                raise CheckpointError(f"{path}: no tensor {shown(missing[0])}")
            dtypes = {key: f.get_slice(key).get_dtype() for key in keys}
            numpy = {key: f.get_tensor(key) for key in keys if dtypes[key] not in NARROW_FLOATS}
        narrow = [key for key in keys if dtypes[key] in NARROW_FLOATS]
        return {**numpy, **_widened(path, narrow)} if narrow else numpy


def _widened(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Tensors of floats numpy lacks (bfloat16, float8), read as bits, as float32."""
    with TensorFile(path) as tensors:
        return {
            key: as_float32(tensors.read(key), entry.dtype).reshape(entry.shape)
            for key, entry in ((key, tensors.entry(key)) for key in keys)
        }


@contextmanager
def reading(path: str | os.PathLike):
    """Turn what the system says about a file it cannot read (a name too long, no
    permission, no memory under an address-space limit) into one ``CheckpointError``."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0) or type(exc).__name__
        raise CheckpointError(f"{os.fsdecode(path)}: cannot read it ({reason})") from None
    except MemoryError:
        raise CheckpointError(f"{os.fsdecode(path)}: not enough memory to read it") from None
    except RecursionError:
        raise CheckpointError(f"{os.fsdecode(path)}: nested too deeply to read") from None


def read_native(path: Path) -> tuple[fmt.Header, dict[int, dict[str, np.ndarray]]]:
    """Header and masks of a native file: header, mask tensors, never the weights (masks
    of weights as a ``PackedMasks``, which reads them when asked)."""
    header, masks, _ = _read_native(path)
    return header, masks


def _read_native(path: Path) -> tuple[fmt.Header, dict, dict[int, tuple[str, ...]]]:
    """Header, masks and task id -> its batch norms' keys, from one opening of the file."""
    with reading(path), open_safetensors(path) as f:
        header = _header(path, f)
        keys = _keys_by_offset(f)
        masks = _masks(path, f, header, keys)
        return header, masks, _task_norms(path, keys)


def _task_norms(path: Path, keys: list[str]) -> dict[int, tuple[str, ...]]:
    try:
        return fmt.task_norm_keys(keys)
    except ValueError as exc:  # a per-task key whose number is no task id
        raise CheckpointError(f"{path}: {exc}") from None


def read_native_header(path: str | os.PathLike) -> fmt.Header:
    """A native file's header alone, checked as ``read_native`` checks it; no mask is read."""
    with reading(path), open_safetensors(Path(path)) as f:
        return _header(Path(path), f)


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` when it is a regular, non-empty file; else ``CheckpointError``."""
    path = checkpoint_path(path)
    with reading(path):
        try:
            mode, size = (info := path.stat()).st_mode, info.st_size
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such file") from None
        if stat.S_ISDIR(mode):
            raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
        if not stat.S_ISREG(mode):
            raise CheckpointError(f"{path}: not a regular file")
        if size == 0:
            raise CheckpointError(f"{path}: empty file")
        with open(path, "rb"):  # readable: a permission problem is reported here
            pass
    return path


GZIP_MAGIC = b"\x1f\x8b"


def sniff(path: Path) -> str:
    """``"safetensors"`` or ``"torch"`` (read by the importers: PyTorch files and the
    ``.npy`` files of a WSN run) from the first bytes; ``CheckpointError`` otherwise."""
    with open(path, "rb") as f:
        start = f.read(64)
    # the JSON header's "{" first: a header length may well start with byte 0x80
    if start[8:9] == b"{":
        return "safetensors"
    if start.startswith((ZIP_MAGIC, PICKLE_PROTO, NUMPY_MAGIC)):
        return "torch"
    if _is_text(start):
        raise CheckpointError(f"{path}: not a checkpoint (it starts with text)")
    if start.startswith(GZIP_MAGIC):
        raise CheckpointError(
            f"{path}: gzip data (the original HAT code's .pkz logs?), not a checkpoint; "
            "`hatinspect trajectory` reads such logs, and a run folder shows the one it holds"
        )
    if path.suffix == fmt.SUFFIX:
        return "safetensors"
    raise CheckpointError(f"{path}: neither a safetensors file nor a PyTorch checkpoint")


def _is_text(start: bytes) -> bool:
    """Printable UTF-8 (a character cut at the end aside): a text file, not a checkpoint."""
    text = start.decode("utf-8", errors="ignore")
    printable = all(c.isprintable() or c in "\t\n\r" for c in text)
    return printable and len(text.encode()) >= len(start) - 3


@contextmanager
def open_safetensors(path: Path):
    """``safe_open(path, framework="numpy")`` once the header length is checked against
    the file and safetensors' limit; its errors as one ``CheckpointError``."""
    _check_header_length(path)
    try:
        with safe_open(path, framework="numpy") as f:
            yield f
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({reason(exc)})") from None


def _check_header_length(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
    if len(prefix) < 8:
        raise CheckpointError(f"{path}: truncated ({size} bytes; a safetensors file has >= 8)")
    length = int.from_bytes(prefix, "little")
    if length > fmt.MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path}: header length {length} is over safetensors' limit of"
            f" {fmt.MAX_HEADER_BYTES:,} bytes"
        )
    if length > size - 8:
        raise CheckpointError(f"{path}: header length {length} exceeds the file ({size} bytes)")


def _header(path: Path, f) -> fmt.Header:
    try:
        header = fmt.decode_header(f.metadata())
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    for layer in header.layers:
        _check_layer_tensors(path, f, layer)
    return header


def _check_layer_tensors(path: Path, f, layer: LayerInfo) -> None:
    expected = {layer.weight_key: layer.weight_shape}
    if layer.bias_key is not None:
        expected[layer.bias_key] = (layer.units,)
    for key, shape in expected.items():
        owner = f"layer {shown(layer.name)}"
        actual = _shape(path, f, key, owner)
        if actual != shape:
            raise CheckpointError(
                f"{path}: {owner}: tensor {shown(key)} has shape {actual}, expected {shape}"
            )
        dtype = f.get_slice(key).get_dtype()
        if dtype not in fmt.WEIGHT_DTYPES:
            raise CheckpointError(
                f"{path}: {owner}: tensor {shown(key)} has dtype {dtype},"
                f" expected one of {', '.join(fmt.WEIGHT_DTYPES)}"
            )


def _shape(path: Path, f, key: str, owner: str) -> tuple[int, ...]:
    try:
        return tuple(f.get_slice(key).get_shape())
    except SafetensorError:
        raise CheckpointError(f"{path}: {owner}: no tensor {shown(key)}") from None


def _keys_by_offset(f) -> list[str]:
    """The file's tensor names in the order of their data (name order on a safetensors
    without ``offset_keys``: the masks are then read one by one)."""
    return f.offset_keys() if hasattr(f, "offset_keys") else list(f.keys())


def _masks(path: Path, f, header: fmt.Header, keys: list[str]) -> dict[int, dict[str, np.ndarray]]:
    """Task id -> layer name -> (units,) read-only 0/1 uint8 mask. A file holds tasks x
    layers of them: they are read into one buffer and handed out as views of it."""
    layers = header.layers
    wanted = [  # task after task, layer after layer; as fmt.mask_key spells them
        f"{fmt.MASK_PREFIX}{task}.{layer.name}" for task in header.task_ids for layer in layers
    ]
    slices = zip(keys, map(f.get_slice, keys), strict=True)
    tensors = {key: (t.get_dtype(), tuple(t.get_shape())) for key, t in slices}
    if header.covers == Covers.PARAMETERS:
        return packed_masks(path, header, tensors, _starts(path, f, tensors))
    _check_no_stray_masks(path, wanted, tensors)
    _check_masks(path, wanted, layers, tensors)
    sizes = [layer.units for layer in layers]
    buffer, starts = _mask_bytes(path, f, tensors, wanted, sizes * len(header.task_ids))
    names, count = [layer.name for layer in layers], len(layers)
    return {
        task: {
            name: buffer[start : start + size]
            for name, start, size in zip(names, starts[at : at + count], sizes, strict=True)
        }
        for task, at in zip(header.task_ids, range(0, len(wanted), count), strict=True)
    }


def _check_no_stray_masks(path: Path, wanted: list[str], tensors: dict) -> None:
    if missing := set(wanted) - tensors.keys():
        first = next(key for key in wanted if key in missing)
        raise CheckpointError(f"{path}: mask: no tensor {shown(first)}")
    others = tensors.keys() - set(wanted)  # the weights and norms, a few per layer
    masks = (fmt.MASK_PREFIX, fmt.PACKED_PREFIX)
    if stray := sorted(key for key in others if key.startswith(masks)):
        raise CheckpointError(
            f"{path}: mask {shown(stray[0])} belongs to no stored task and layer in the metadata"
        )


def _check_masks(path: Path, wanted: list[str], layers: tuple[LayerInfo, ...], tensors) -> None:
    """Each of the `wanted` masks (task after task, layer after layer) one U8 (or BOOL)
    per unit of its layer; else an error about the first that is not."""
    found = list(map(tensors.__getitem__, wanted))
    written = [("U8", (layer.units,)) for layer in layers]  # as hatinspect writes them
    if found == written * (len(wanted) // max(len(layers), 1)):
        return
    for key, (dtype, shape), layer in zip(wanted, found, itertools.cycle(layers)):
        if dtype not in fmt.MASK_DTYPES:
            raise CheckpointError(
                f"{path}: mask {shown(key)} has dtype {dtype}, expected U8 (0 or 1)"
            )
        if shape != (layer.units,):
            raise CheckpointError(
                f"{path}: mask {shown(key)} has shape {shape}, layer has {layer.units} units"
            )


def _mask_bytes(
    path: Path, f, tensors: dict, masks: list[str], units: list[int]
) -> tuple[np.ndarray, list[int]]:
    """The (checked) masks' bytes in one read-only 0/1 buffer, and where each starts in it."""
    sizes = np.array(units, dtype=np.int64)
    offsets = _data_offsets(path, f, tensors)
    if offsets is None:
        starts = np.cumsum(sizes) - sizes
        buffer = np.empty(int(sizes.sum()), dtype=np.uint8)
        for key, start, size in zip(masks, starts.tolist(), units, strict=True):
            buffer[start : start + size] = f.get_tensor(key).view(np.uint8)
    else:
        where = np.fromiter(map(offsets.__getitem__, masks), np.int64, len(masks))
        buffer, starts = _read_spans(path, where, sizes)
    bools = [i for i, key in enumerate(masks) if tensors[key][0] == "BOOL"]
    _bools_as_bits(buffer, zip(starts[bools].tolist(), sizes[bools].tolist(), strict=True))
    _check_binary(path, buffer, masks, starts, sizes)
    buffer.flags.writeable = False
    return buffer, starts.tolist()


def _read_spans(
    path: Path, offsets: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The file's (offset, size) spans one after another in a buffer, in the order they lie
    in the file (one read for each run of adjacent spans), and where each starts in it."""
    order = np.argsort(offsets, kind="stable")
    starts = np.empty(len(offsets), dtype=np.int64)
    starts[order] = np.cumsum(sizes[order]) - sizes[order]
    buffer = np.empty(int(sizes.sum()), dtype=np.uint8)
    view, at = memoryview(buffer), 0
    with open(path, "rb") as file:
        for offset, end in _runs(offsets[order], sizes[order]):
            file.seek(offset)
            if file.readinto(view[at:end]) != end - at:
                raise CheckpointError(f"{path}: truncated (a mask ends past the end of the file)")
            at = end
    return buffer, starts


def _runs(offsets: np.ndarray, sizes: np.ndarray) -> list[tuple[int, int]]:
    """(file offset, end in the buffer) of each run of adjacent spans, sorted by offset."""
    if not len(offsets):
        return []
    apart = np.flatnonzero(offsets[1:] != offsets[:-1] + sizes[:-1])
    lasts = np.append(apart, len(offsets) - 1)  # the last span of each run
    firsts = np.append(0, lasts[:-1] + 1)
    return list(zip(offsets[firsts].tolist(), np.cumsum(sizes)[lasts].tolist(), strict=True))


def _bools_as_bits(buffer: np.ndarray, spans) -> None:
    """BOOL masks' (start, size) as numpy reads a bool: any non-zero byte is 1."""
    for start, size in spans:
        buffer[start : start + size] = buffer[start : start + size] != 0


def _check_binary(path: Path, buffer: np.ndarray, masks, starts, sizes) -> None:
    if buffer.max(initial=0) > 1:
        spans = zip(masks, starts, sizes, strict=True)
        bad = next(key for key, start, size in spans if buffer[start : start + size].max() > 1)
        raise CheckpointError(
            f"{path}: mask {shown(bad)} is not binary (values other than 0 and 1)"
        )


def _starts(path: Path, f, tensors: dict) -> dict[str, int]:
    """Where each tensor's data starts in the file: from the table where its order is
    known, else from the header read again."""
    offsets = _data_offsets(path, f, tensors)
    if offsets is None:
        with TensorFile(path) as table:
            offsets = {key: entry.start for key, entry in table.entries.items()}
    return offsets


def _data_offsets(path: Path, f, tensors: dict) -> dict[str, int] | None:
    """Where each tensor's data starts in the file, from `tensors` (key -> dtype, shape)
    in the order `_keys_by_offset` gives: safe_open has checked that the tensors tile the
    data without gaps, so their sizes added up in the order of their data are the
    offsets. None where that order is unknown or the sizes do not account for the file."""
    # a dtype with no known size (not a safetensors one): the masks are read one by one
    known = all(dtype in DTYPE_BYTES for dtype, _ in tensors.values())
    if not (known and hasattr(f, "offset_keys")):
        return None
    with open(path, "rb") as file:
        data = 8 + int.from_bytes(file.read(8), "little")
    sizes = [DTYPE_BYTES[dtype] * math.prod(shape) for dtype, shape in tensors.values()]
    if data + sum(sizes) != path.stat().st_size:
        return None
    return dict(zip(tensors, itertools.accumulate(sizes, initial=data), strict=False))
