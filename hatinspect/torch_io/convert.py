"""Converting the PyTorch checkpoints the importers understand into the native format."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hatinspect.analysis.logged_run import refuse_logs
from hatinspect.importers import Imported, import_checkpoint
from hatinspect.model.checkpoint import Covers
from hatinspect.model.errors import CheckpointError
from hatinspect.model.names import MASKS_ONLY_KEY
from hatinspect.model.paths import output_path
from hatinspect.native import format as fmt
from hatinspect.native.reader import existing_file, sniff
from hatinspect.torch_io.save import prefixed, write_checkpoint


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    source: str | None = None,
    task_id: int | None = None,
    *,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
) -> Path:
    """Write ``src`` (original HAT, HAT-CL, CLArena or a hatinspect state_dict; ``source``
    forces the layout, ``task_id`` names a one-task file's task; ``mask_rule`` and
    ``mask_threshold`` as ``open_checkpoint`` takes them) as a native file at ``dst``,
    which remembers its source and which preceding layers were inferred; masks of
    weights (WSN, PackNet, Piggyback, SupSup) are stored as packed bits."""
    src, dst = existing_file(src), output_path(dst)
    if dst.resolve() == src.resolve():
        raise CheckpointError(f"{src}: converting it onto itself would overwrite the source")
    refuse_logs(src, "nothing to convert")
    if sniff(src) != "torch":
        raise CheckpointError(f"{src}: already a native hatinspect file")
    imported = import_checkpoint(
        src, source, task_id, mask_rule=mask_rule, mask_threshold=mask_threshold
    )
    if imported.checkpoint.metadata.get(MASKS_ONLY_KEY) == "true":
        raise CheckpointError(f"{src}: cannot be converted: it holds masks only, no weights")
    header = _header(imported)
    try:  # the header as a reader will see it: refused here, naming the source
        fmt.decode_header(fmt.encode_header(header))
    except ValueError as exc:
        raise CheckpointError(f"{src}: cannot be converted: {exc}") from None
    return write_checkpoint(dst, _tensors(imported), header)


def _header(imported: Imported) -> fmt.Header:
    checkpoint, native = imported.checkpoint, imported.native_keys
    layers = tuple(
        replace(
            layer,
            weight_key=native[layer.weight_key],
            bias_key=native[layer.bias_key] if layer.bias_key else None,
        )
        for layer in checkpoint.layers
    )
    return fmt.Header(
        backbone=checkpoint.backbone,
        config=imported.config,
        layers=layers,
        task_ids=checkpoint.task_ids,
        source=checkpoint.source,
        task_id=imported.task_id,
        notes=checkpoint.notes,
        user=dict(checkpoint.metadata),
        covers=checkpoint.covers,
    )


def _tensors(imported: Imported) -> dict[str, torch.Tensor]:
    return {
        **{imported.native_keys[key]: value for key, value in imported.state.items()},
        **prefixed(fmt.HEADS_PREFIX, imported.heads),
        **_mask_tensors(imported.checkpoint),
    }


def _mask_tensors(checkpoint) -> dict[str, torch.Tensor]:
    """The importer's masks, uint8 arrays of 0 and 1 (the write reads them back), as
    writable tensors of their own: masks of weights packed a bit a weight."""
    if checkpoint.covers == Covers.PARAMETERS:
        return {
            fmt.packed_key(task, layer.name): torch.from_numpy(
                checkpoint.packed_mask(task, layer.name)
            )
            for task in checkpoint.task_ids
            for layer in checkpoint.layers
        }
    return {
        fmt.mask_key(task, name): torch.from_numpy(mask.astype(np.uint8))
        for task, layers in checkpoint.masks.items()
        for name, mask in layers.items()
    }
