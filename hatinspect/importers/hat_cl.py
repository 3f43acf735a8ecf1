"""HAT-CL: ``<module>.masker.attention.<task>`` attention per task, with trained-task flags
and per-task batch norms."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hatinspect.importers.common import (
    UNKNOWN_BACKBONE,
    Imported,
    check_mask_count,
    imported_checkpoint,
    layers_of,
    task_id_in_key,
    threshold,
)
from hatinspect.model.errors import CheckpointError
from hatinspect.native import format as fmt

# a key's task number is any run of digits: one that is no task id refuses the file
# (task_id_in_key), never leaves the key unread
HATCL_ATTENTION = re.compile(r"^(?P<module>.+)\.masker\.attention\.(?P<task>[0-9]+)$")
# a TaskIndexedBatchNorm is a ModuleList of batch norms: task t's at index t, one more last
HATCL_NORM = re.compile(r"^(?P<module>.+)\.(?P<task>[0-9]+)\.(?P<field>running_mean)$")


def read(path: Path, state, extra, task_id=None) -> Imported:
    attention: dict[str, dict[int, Tensor]] = {}
    for key, value in state.items():
        if match := HATCL_ATTENTION.match(key):
            task = task_id_in_key(path, key, match["task"])
            attention.setdefault(match["module"], {})[task] = value
    if not attention:
        raise CheckpointError(f"{path}: no HAT-CL masker.attention tensors")
    task_ids = sorted(set().union(*(_trained_tasks(path, state, m) for m in attention)))
    check_mask_count(path, len(task_ids), len(attention))
    masks = {
        t: {
            module.replace(".", "/"): _attention_mask(path, module, attention[module], t)
            for module in attention
        }
        for t in task_ids
    }
    notes = ("masks recovered from HAT-CL attention as attention > 0, for trained tasks only",)
    layers = layers_of(path, state, {m.replace(".", "/"): m for m in attention})
    norms = _hat_cl_task_norms(path, state, max(len(rows) for rows in attention.values()))
    native = {key: fmt.BACKBONE_PREFIX + norms.native.get(key, key) for key in state}
    return imported_checkpoint(
        path, "hat-cl", UNKNOWN_BACKBONE, layers, masks, notes, state, native, norms.by_task
    )


@dataclass(frozen=True)
class _TaskNorms:
    by_task: dict[int, tuple[str, ...]]  # task id -> the file's keys of its batch norms
    native: dict[str, str]  # file key -> native key (module.per_task.<t>.field)


def _hat_cl_task_norms(path: Path, state, num_tasks: int) -> _TaskNorms:
    """HAT-CL's TaskIndexedBatchNorm modules: ``num_tasks + 1`` batch norms at indices
    ``0..num_tasks`` (the last serves task id None), each with running statistics."""
    indices: dict[str, set[int]] = {}
    for key in state:
        if match := HATCL_NORM.match(key):
            task = task_id_in_key(path, key, match["task"])
            indices.setdefault(match["module"], set()).add(task)
    modules = [m for m, found in indices.items() if found == set(range(num_tasks + 1))]
    by_task: dict[int, list[str]] = {}
    native = {}
    for module in modules:
        for key in state:
            index, _, field = key[len(module) + 1 :].partition(".")
            task = fmt.parse_task_id(index) if key.startswith(f"{module}.") else None
            if task is not None and task < num_tasks:
                by_task.setdefault(task, []).append(key)
                native[key] = f"{module}.per_task.{task}.{field}"
    return _TaskNorms({t: tuple(sorted(keys)) for t, keys in sorted(by_task.items())}, native)


def _trained_tasks(path: Path, state, module: str) -> set[int]:
    flags = state.get(f"{module}.masker._task_trained")
    if flags is None:
        raise CheckpointError(f"{path}: HAT-CL masker {module!r} has no _task_trained flags")
    return {int(t) for t in torch.nonzero(flags.flatten().float()).flatten().tolist()}


def _attention_mask(path: Path, module: str, rows: Mapping[int, Tensor], task: int) -> np.ndarray:
    key = f"{module}.masker.attention.{task}"
    if task not in rows:
        raise CheckpointError(f"{path}: task {task} is trained but {key!r} is missing")
    return threshold(path, key, rows[task])


NAME = "hat-cl"


def detects(state, extra) -> bool:
    return any(HATCL_ATTENTION.match(key) for key in state)
