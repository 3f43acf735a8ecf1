"""Writing the native format: atomically, and verified by reading the file back."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from hatinspect.backbones.layers import describe_layers
from hatinspect.model.bits import pack
from hatinspect.model.checkpoint import Covers
from hatinspect.model.errors import CheckpointError
from hatinspect.model.paths import output_path
from hatinspect.model.progress import track, writing
from hatinspect.native import format as fmt
from hatinspect.native.atomic import write_atomically
from hatinspect.native.reader import read_native


def save_checkpoint(
    path: str | os.PathLike,
    backbone: nn.Module,
    *,
    heads: nn.Module | Mapping[str, Tensor] | None = None,
    metadata: Mapping | None = None,
) -> Path:
    """Write ``backbone`` (weights, task embeddings, every stored task's binary mask and
    how to rebuild it), optional ``heads`` and user ``metadata`` to one safetensors file.

    Any backbone with hatinspect's layer API will do (a CLArena one too: its string task
    keys are read as integers); without a ``config`` the file is inspectable but not
    rebuildable by ``load_backbone``."""
    masks = {int(task): mask for task, mask in getattr(backbone, "masks", {}).items()}
    config = getattr(backbone, "config", None)
    metadata = {fmt.RUN_ID_KEY: run_id(backbone), **(metadata or {})}
    header = fmt.Header(
        backbone=type(backbone).__name__,
        config=None if config is None else json.loads(json.dumps(config)),  # lists, not tuples
        layers=describe_layers(backbone),
        task_ids=tuple(sorted(masks)),
        task_id=getattr(backbone, "task_id", None),
        user=fmt.encode_user(metadata),
    )
    return write_checkpoint(path, checkpoint_tensors(backbone, heads), header)


def checkpoint_tensors(
    backbone: nn.Module, heads: nn.Module | Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """The tensors ``save_checkpoint`` writes: weights, heads and stored masks, by key."""
    masks = {int(task): mask for task, mask in getattr(backbone, "masks", {}).items()}
    return {
        **prefixed(fmt.BACKBONE_PREFIX, backbone.state_dict()),
        **prefixed(fmt.HEADS_PREFIX, _heads_state(heads)),
        **mask_tensors(masks),
    }


def run_id(backbone: nn.Module) -> str:
    """The id of the training run ``backbone`` belongs to, made the first time it is asked
    for: every checkpoint saved of the same backbone object carries it (a backbone loaded
    from a file keeps the file's), so that ``audit`` can tell two runs apart."""
    if _RUN_ID_ATTR not in backbone.__dict__:
        backbone.__dict__[_RUN_ID_ATTR] = uuid.uuid4().hex
    return backbone.__dict__[_RUN_ID_ATTR]


def set_run_id(backbone: nn.Module, value: str) -> None:
    backbone.__dict__[_RUN_ID_ATTR] = value


_RUN_ID_ATTR = "_hatinspect_run_id"


def mask_tensors(masks: Mapping[int, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Stored masks as ``mask.<task>.<layer>`` uint8 tensors; a non-binary mask is refused."""
    tensors = {}
    for task, mask in masks.items():
        for layer, values in mask.items():
            values = torch.as_tensor(values).detach().cpu().reshape(-1)  # (1, units) too
            if not ((values == 0) | (values == 1)).all():
                raise CheckpointError(f"task {task}'s mask of {layer!r} is not binary (0/1)")
            tensors[fmt.mask_key(int(task), layer)] = values.to(torch.uint8)
    return tensors


def prefixed(prefix: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {prefix + key: value for key, value in state.items()}


def write_checkpoint(path: str | os.PathLike, tensors: Mapping[str, Tensor], header) -> Path:
    """Write a native file atomically (``native.atomic``), checked by reading it back."""
    path = output_path(path)
    tensors = _plain(tensors, f"copying {path.name}'s tensors")
    metadata = fmt.encode_header(header)
    bounds = check_header_fits(path, tensors, metadata)  # before a file is made
    write_atomically(
        path,
        lambda tmp: _save_file(path, tmp, tensors, metadata, bounds),
        verify=lambda tmp: _verify(Path(tmp), tensors, header),
        error=CheckpointError,
    )
    return path


def check_header_fits(
    path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]
) -> tuple[int, int]:
    """The least and most bytes the file's header can take (``header_bytes``); refused,
    before anything is written, when even the least is over safetensors' limit, which
    safetensors would refuse to write (and to read back)."""
    least, most = header_bytes(tensors, metadata)
    if least > fmt.MAX_HEADER_BYTES:
        raise CheckpointError(_header_over_limit(path, len(tensors)))
    return least, most


def header_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> tuple[int, int]:
    """The least and most bytes of the header safetensors writes for ``tensors`` and
    ``metadata``: exact but for each dtype's name (2 to 7 letters) and data offsets (1 digit
    to as many as the data's size has), which depend on the order safetensors picks."""
    # safetensors writes compact JSON without ASCII escapes, as this encoder does
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    entry = len('{"dtype":"U8","shape":,"data_offsets":[0,0]}')
    table = sum(
        len(dumps(key).encode()) + len(dumps(list(tensor.shape))) + entry + 2  # ":" and ","
        for key, tensor in tensors.items()
    )
    least = len('{"__metadata__":}') + len(dumps(dict(metadata)).encode()) + table
    data = sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
    longest = len("F8_E4M3") - 2 + 2 * (len(str(data)) - 1)  # a tensor's most over its least
    return least, least + longest * len(tensors) + 7  # and spaces up to a multiple of 8


def _header_over_limit(path: Path, tensors: int) -> str:
    return (
        f"cannot write {path}: its {tensors:,} tensors and metadata need a header over"
        f" safetensors' limit of {fmt.MAX_HEADER_BYTES:,} bytes (store fewer tasks or"
        " layers in one file)"
    )


def _save_file(path: Path, tmp: str, tensors: dict, metadata: dict, bounds) -> None:
    """``save_file`` to ``tmp``; a refusal is said of ``path``: the header limit where the
    header's (least, most) ``bounds`` straddle it (the offsets' digits decided)."""
    try:
        with writing(tmp, f"writing {path.name}"):
            save_file(tensors, tmp, metadata=metadata)
    except SafetensorError as exc:
        if bounds[1] > fmt.MAX_HEADER_BYTES:
            raise CheckpointError(_header_over_limit(path, len(tensors))) from None
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"cannot write {path}: safetensors refused it ({reason})") from None


def _heads_state(heads) -> Mapping[str, Tensor]:
    if heads is None:
        return {}
    return heads.state_dict() if isinstance(heads, nn.Module) else heads


def _plain(tensors: Mapping[str, Tensor], description: str) -> dict[str, Tensor]:
    """Contiguous CPU tensors with no shared memory (safetensors refuses aliases)."""
    seen: set[int] = set()
    plain = {}
    for key, tensor in track(tensors.items(), description, unit="tensors", total=len(tensors)):
        tensor = tensor.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        plain[key] = tensor.clone() if pointer in seen and tensor.numel() else tensor
        seen.add(pointer)
    return plain


def _verify(tmp: Path, tensors: Mapping[str, Tensor], header) -> None:
    written, masks = read_native(tmp)
    if written != header:
        raise CheckpointError(f"{tmp}: metadata read back differs from what was written")
    with safe_open(tmp, framework="numpy") as f:
        table = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    if table != {key: tuple(tensor.shape) for key, tensor in tensors.items()}:
        raise CheckpointError(f"{tmp}: tensor table read back differs from what was written")
    for task, mask in masks.items():
        for layer, values in mask.items():
            if header.covers == Covers.PARAMETERS:  # compared as stored: packed bits
                values = pack(values)
                key = fmt.packed_key(task, layer)
            else:
                key = fmt.mask_key(task, layer)
            if not (values == tensors[key].numpy()).all():
                raise CheckpointError(f"{tmp}: mask of task {task}, {layer!r} reads back changed")
