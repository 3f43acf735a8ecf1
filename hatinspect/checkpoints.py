"""Opening any checkpoint: the one place that chooses between native and foreign files.

Native safetensors files, and the original HAT code's ``.pkz`` logs (masks, no weights), are
read by the torch-free core; PyTorch files (``.pt``, ``.pth``,
``.ckpt``) by the importers, which need torch and are imported only for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from hatinspect.analysis.hat_logs import is_hat_log
from hatinspect.model.checkpoint import Checkpoint
from hatinspect.native.reader import existing_file, open_native, read_native_tensors, reading, sniff


def open_checkpoint(
    path: str | os.PathLike,
    source: str | None = None,
    task_id: int | None = None,
    *,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
) -> Checkpoint:
    """Read a checkpoint's layers and binary masks.

    Native files are read without torch; PyTorch files go through the importers, which
    recognise the layout unless ``source`` names it. ``task_id`` names the task of a
    foreign file that holds one task's embedding and does not say whose. ``mask_rule``
    ("topk" or "sign") chooses how a SupSup file's scores become masks (by default its
    ``args.conv_type``); ``mask_threshold`` replaces a Piggyback file's threshold. Raises
    ``CheckpointError`` for anything unreadable or inconsistent (the system's errors too:
    a name too long, no permission, no memory).
    """
    with reading(path):
        return _open(existing_file(path), source, task_id, mask_rule, mask_threshold)


def _open(path, source: str | None, task_id: int | None, rule, threshold) -> Checkpoint:
    if is_hat_log(path):
        return _open_logs(path, source, task_id, rule, threshold)
    if sniff(path) == "torch":
        from hatinspect.importers import import_checkpoint

        return import_checkpoint(
            path, source, task_id, mask_rule=rule, mask_threshold=threshold
        ).checkpoint
    from hatinspect.model.errors import CheckpointError

    if task_id is not None:
        raise CheckpointError(f"{path}: a native file records its task ids; task_id does not apply")
    if rule is not None or threshold is not None:
        raise CheckpointError(
            f"{path}: a native file stores binary masks; --mask-rule and --mask-threshold"
            " (mask_rule=, mask_threshold=) do not apply"
        )
    return open_native(path, source)


def _open_logs(path, source: str | None, task_id: int | None, rule, threshold) -> Checkpoint:
    """The original HAT code's ``.pkz`` logs: each task's units at its kept epoch, no weights."""
    from hatinspect.analysis.logged_run import SOURCE, open_logs
    from hatinspect.model.errors import CheckpointError

    if source not in (None, SOURCE):
        raise CheckpointError(f"{path}: the original HAT code's .pkz logs, not a {source} file")
    if task_id is not None or rule is not None or threshold is not None:
        raise CheckpointError(
            f"{path}: the logs record their tasks and binary masks; task_id, --mask-rule and"
            " --mask-threshold do not apply"
        )
    return open_logs(path)


def read_tensors(path: str | os.PathLike, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """The named tensors as numpy arrays (e.g. ``LayerInfo.weight_key`` of each layer);
    bfloat16 and float8 weights are widened to float32."""
    with reading(path):
        path = existing_file(path)
        if sniff(path) == "torch":
            from hatinspect.importers import read_torch_tensors

            return read_torch_tensors(path, list(keys))
        return read_native_tensors(path, keys)
