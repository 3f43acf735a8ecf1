"""What the objects of a loaded PyTorch file claim, checked before anything uses them:
every tensor dense, of a dtype read, holding every element it claims (a stride-0 view of
one number claiming 2^33 elements would otherwise be expanded by the first operation on
it), and all of them together no more than the file can hold."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

from hatinspect.importers.safety.limits import INFLATION, SLACK
from hatinspect.model.errors import CheckpointError


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
