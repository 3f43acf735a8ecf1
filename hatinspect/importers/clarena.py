"""CLArena's state dicts and Lightning checkpoints: one task's ``task_embedding_t`` per layer,
with or without its algorithm's ``backbone.`` prefix."""

from __future__ import annotations

import re
from pathlib import Path

from hatinspect.importers.common import (
    THRESHOLD_NOTE,
    UNKNOWN_BACKBONE,
    Imported,
    embedded_layers,
    imported_checkpoint,
    last_task_note,
    layers_of,
    newest_head,
    threshold,
)
from hatinspect.native import format as fmt

# CLArena's algorithm (``backbone.``) or its bare backbone's state_dict
CLARENA_EMBEDDING = re.compile(r"^(?:backbone\.)?(?:.+\.)?task_embedding_t\.[^.]+\.weight$")


def read(path: Path, state, extra, task_id=None) -> Imported:
    prefix = fmt.BACKBONE_PREFIX if any(k.startswith(fmt.BACKBONE_PREFIX) for k in state) else ""
    names = embedded_layers(path, state, prefix)
    newest = newest_head(path, state)  # CLArena counts tasks from 1; its heads are keyed by them
    task = task_id if task_id is not None else newest if newest is not None else 1
    masks = {task: {n: threshold(path, key, state[key][0]) for n, key in names.items()}}
    notes = [THRESHOLD_NOTE, last_task_note(task)]
    if task_id is None and newest is None:
        notes.append(unknown_task_note(task))
    layers = layers_of(path, state, {n: prefix + n.replace("/", ".") for n in names})
    native = {
        k: k if k.startswith((fmt.BACKBONE_PREFIX, fmt.HEADS_PREFIX)) else fmt.OTHER_PREFIX + k
        for k in state
    }
    if not prefix:  # a bare backbone's state_dict: its tensors are the backbone's
        native = {k: fmt.BACKBONE_PREFIX + k for k in state}
    return imported_checkpoint(
        path, "clarena", UNKNOWN_BACKBONE, layers, masks, notes, state, native, task_id=task
    )


def unknown_task_note(task: int) -> str:
    return (
        f"the file does not say which task its embedding belongs to: reported as task {task}"
        " (CLArena counts tasks from 1); pass --task-id N to name it"
    )


NAME = "clarena"


def detects(state, extra) -> bool:
    return any(CLARENA_EMBEDDING.match(key) for key in state)
