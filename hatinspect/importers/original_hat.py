"""Original HAT (Serra et al.): a state dict of ``c<i>``/``fc<i>`` layers and ``ec``/``efc``
task embeddings, one row a task."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from hatinspect.importers.common import (
    THRESHOLD_NOTE,
    Imported,
    check_mask_count,
    imported_checkpoint,
    layers_of,
    threshold,
)
from hatinspect.model.errors import CheckpointError
from hatinspect.native import format as fmt


def read(path: Path, state, extra, task_id=None) -> Imported:
    names = _original_layers(state)
    if not names:
        raise CheckpointError(f"{path}: no e<layer>.weight beside a <layer>.weight (original HAT)")
    tasks = {state[f"e{name}.weight"].shape[0] for name in names}
    if len(tasks) != 1:
        raise CheckpointError(
            f"{path}: task embeddings disagree on the task count: {sorted(tasks)}"
        )
    task_ids = tuple(range(tasks.pop()))
    check_mask_count(path, len(task_ids), len(names))
    masks = {
        t: {n: threshold(path, f"e{n}.weight", state[f"e{n}.weight"][t]) for n in names}
        for t in task_ids
    }
    notes = (
        THRESHOLD_NOTE,
        f"every one of the {len(task_ids)} embedding rows is read as a task;"
        " rows of tasks not trained yet hold their initialisation",
    )
    layers = layers_of(path, state, {name: name for name in names})
    # the per-task output heads are the ModuleList `last`
    native = {
        k: (fmt.HEADS_PREFIX if k.startswith("last.") else fmt.BACKBONE_PREFIX) + k for k in state
    }
    return imported_checkpoint(path, "original-hat", "Net", layers, masks, notes, state, native)


def _original_layers(state: Mapping[str, Tensor]) -> list[str]:
    """Layers with an embedding: ``<name>.weight`` beside ``e<name>.weight`` (tasks, units)."""
    names = []
    for key, weight in state.items():
        name = key.removesuffix(".weight")
        embedding = state.get(f"e{name}.weight")
        if key != name and embedding is not None and embedding.dim() == 2 and weight.dim() >= 2:
            if embedding.shape[1] == weight.shape[0]:
                names.append(name)
    return names


NAME = "original-hat"


def detects(state, extra) -> bool:
    return bool(_original_layers(state))
