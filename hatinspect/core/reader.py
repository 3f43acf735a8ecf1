"""Reading native safetensors checkpoints, without torch.

A native file is read through its header and its mask tensors only; the weights stay on
disk. Every problem with a file becomes a one-line ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

import numpy as np
from safetensors import SafetensorError, safe_open

from hatinspect.core import format as fmt
from hatinspect.core.errors import CheckpointError
from hatinspect.core.types import Checkpoint, LayerInfo

MAX_HEADER_BYTES = 32 * 2**20  # a ResNet-152 header is ~60 kB; more is not a checkpoint
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container
PICKLE_PROTO = b"\x80"  # torch.save's legacy format and plain pickles start with PROTO


def open_native(path: str | os.PathLike, source: str | None = None) -> Checkpoint:
    """Read a native file's layers and binary masks, without torch.

    Raises ``CheckpointError`` for anything unreadable or inconsistent; a PyTorch file is
    opened by ``hatinspect.open_checkpoint``, which knows both kinds.
    """
    path = existing_file(path)
    if sniff(path) == "torch":
        raise CheckpointError(f"{path}: a PyTorch file, not a native hatinspect file")
    header, masks = read_native(path)
    if source not in (None, "hatinspect", header.source):
        raise CheckpointError(f"{path}: a native hatinspect file; source={source!r} does not apply")
    return Checkpoint(
        path=str(path),
        backbone=header.backbone,
        source=header.source,
        layers=header.layers,
        task_ids=header.task_ids,
        masks=MappingProxyType({t: MappingProxyType(m) for t, m in masks.items()}),
        metadata=MappingProxyType(dict(header.user)),
        notes=header.notes,
        task_norms=MappingProxyType(_task_norm_keys(path)),
    )


def read_native_tensors(path: str | os.PathLike, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """A native file's named tensors as numpy arrays (e.g. each layer's ``weight_key``)."""
    path = existing_file(path)
    keys = list(keys)
    with _safetensors(path) as f:
        missing = sorted(set(keys) - set(f.keys()))
        if missing:
            raise CheckpointError(f"{path}: no tensor {missing[0]!r}")
        return {key: f.get_tensor(key) for key in keys}


def _task_norm_keys(path: Path) -> dict[int, tuple[str, ...]]:
    with _safetensors(path) as f:
        return fmt.task_norm_keys(f.keys())


def read_native(path: Path) -> tuple[fmt.Header, dict[int, dict[str, np.ndarray]]]:
    """Header and masks of a native file: header, mask tensors, never the weights."""
    with _safetensors(path) as f:
        header = _header(path, f)
        return header, _masks(path, f, header)


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` when it is a regular, non-empty file; else ``CheckpointError``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    return path


def sniff(path: Path) -> str:
    """``"safetensors"`` or ``"torch"`` from the first bytes; ``CheckpointError`` otherwise."""
    with open(path, "rb") as f:
        start = f.read(64)
    # the JSON header's "{" first: a header length may well start with byte 0x80
    if start[8:9] == b"{":
        return "safetensors"
    if start.startswith(ZIP_MAGIC) or start.startswith(PICKLE_PROTO):
        return "torch"
    if _is_text(start):
        raise CheckpointError(f"{path}: not a checkpoint (it starts with text)")
    if path.suffix == fmt.SUFFIX:
        return "safetensors"
    raise CheckpointError(f"{path}: neither a safetensors file nor a PyTorch checkpoint")


def _is_text(start: bytes) -> bool:
    """Printable UTF-8 (a character cut at the end aside): a text file, not a checkpoint."""
    text = start.decode("utf-8", errors="ignore")
    printable = all(c.isprintable() or c in "\t\n\r" for c in text)
    return printable and len(text.encode()) >= len(start) - 3


@contextmanager
def _safetensors(path: Path):
    _check_header_length(path)
    try:
        with safe_open(path, framework="numpy") as f:
            yield f
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({_one_line(exc)})") from None


def _check_header_length(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
    if len(prefix) < 8:
        raise CheckpointError(f"{path}: truncated ({size} bytes; a safetensors file has >= 8)")
    length = int.from_bytes(prefix, "little")
    if length > MAX_HEADER_BYTES:
        limit = MAX_HEADER_BYTES // 2**20
        raise CheckpointError(f"{path}: header length {length} is over the {limit} MiB limit")
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
        actual = _shape(path, f, key, f"layer {layer.name!r}")
        if actual != shape:
            raise CheckpointError(
                f"{path}: layer {layer.name!r}: tensor {key!r} has shape {actual}, expected {shape}"
            )


def _shape(path: Path, f, key: str, owner: str) -> tuple[int, ...]:
    try:
        return tuple(f.get_slice(key).get_shape())
    except SafetensorError:
        raise CheckpointError(f"{path}: {owner}: no tensor {key!r}") from None


def _masks(path: Path, f, header: fmt.Header) -> dict[int, dict[str, np.ndarray]]:
    _check_no_stray_masks(path, f, header)
    return {
        task: {
            layer.name: _mask(path, f, fmt.mask_key(task, layer.name), layer.units)
            for layer in header.layers
        }
        for task in header.task_ids
    }


def _mask(path: Path, f, key: str, units: int) -> np.ndarray:
    shape = _shape(path, f, key, "mask")
    dtype = f.get_slice(key).get_dtype()
    if dtype not in fmt.MASK_DTYPES:
        raise CheckpointError(f"{path}: mask {key!r} has dtype {dtype}, expected U8 (0 or 1)")
    if shape != (units,):
        raise CheckpointError(f"{path}: mask {key!r} has shape {shape}, layer has {units} units")
    mask = np.array(f.get_tensor(key), dtype=np.uint8)  # an owned copy, bool -> 0/1
    if mask.max(initial=0) > 1:
        raise CheckpointError(f"{path}: mask {key!r} is not binary (values other than 0 and 1)")
    mask.setflags(write=False)
    return mask


def _check_no_stray_masks(path: Path, f, header: fmt.Header) -> None:
    expected = {fmt.mask_key(t, layer.name) for t in header.task_ids for layer in header.layers}
    stray = sorted(k for k in f.keys() if k.startswith(fmt.MASK_PREFIX) and k not in expected)
    if stray:
        raise CheckpointError(
            f"{path}: mask {stray[0]!r} belongs to no stored task and layer in the metadata"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
