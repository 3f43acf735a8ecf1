"""hatinspect's own ``.pt`` layout: a dict of ``state_dict`` and the entries that rebuild the
network and its masks (``masks``, ``backbone``, ``config``, ``heads``, ``task_id``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hatinspect.importers.common import (
    THRESHOLD_NOTE,
    UNKNOWN_BACKBONE,
    Imported,
    binary_mask,
    check_config,
    check_weight,
    embedded_layers,
    imported_checkpoint,
    last_task_note,
    layers_of,
    stored_task_id,
    threshold,
)
from hatinspect.importers.payload import named_tensors
from hatinspect.model.checkpoint import LayerInfo
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.native import format as fmt

HATINSPECT_EXTRAS = {"masks", "backbone", "config", "heads", "task_id"}  # entries beside state_dict


def read(path: Path, state, extra, given_task: int | None = None) -> Imported:
    names = embedded_layers(path, state, "")
    backbone, config = extra.get("backbone"), extra.get("config")
    _check_entry(path, "backbone", backbone, str, "a class name")
    _check_entry(path, "config", config, Mapping, "a mapping of constructor arguments")
    rebuildable = isinstance(backbone, str) and isinstance(config, Mapping)
    task_id = stored_task_id(path, "'task_id'", extra.get("task_id"))
    if "masks" in extra:
        if given_task is not None:
            raise CheckpointError(f"{path}: the file stores its tasks' masks; no task id applies")
        masks, notes = _stored_masks(path, extra["masks"]), ()
    else:
        task = given_task if given_task is not None else task_id if task_id is not None else 0
        masks = {task: {n: threshold(path, key, state[key][0]) for n, key in names.items()}}
        notes = (THRESHOLD_NOTE, last_task_note(task))
    layers = (
        _rebuilt_layers(path, backbone, dict(config), state)
        if rebuildable
        else layers_of(path, state, {n: n.replace("/", ".") for n in names})
    )
    native = {key: fmt.BACKBONE_PREFIX + key for key in state}
    return imported_checkpoint(
        path,
        "hatinspect",
        backbone if rebuildable else UNKNOWN_BACKBONE,
        layers,
        masks,
        notes,
        state,
        native,
        config=dict(config) if rebuildable else None,
        task_id=task_id,
        heads=named_tensors(path, "heads", {} if extra.get("heads") is None else extra["heads"]),
    )


def _check_entry(path: Path, name: str, value, kind: type, what: str) -> None:
    """An entry beside the state_dict is absent, None or of its kind: a tensor or list in
    its place refuses the file rather than leaving the entry unread."""
    if value is not None and not isinstance(value, kind):
        raise CheckpointError(f"{path}: {name!r} must be {what} or None, got {shown(value)}")


def _stored_masks(path: Path, masks) -> dict[int, dict[str, np.ndarray]]:
    if not isinstance(masks, Mapping):
        raise CheckpointError(f"{path}: 'masks' must map task ids to {{layer: mask}}")
    out = {}
    for task, mask in masks.items():
        if not (type(task) is int and isinstance(mask, Mapping)):
            raise CheckpointError(
                f"{path}: 'masks' entry {shown(task)} is not task id -> layer masks"
            )
        out[task] = {
            name: binary_mask(path, f"masks[{shown(task)}][{shown(name)}]", m)
            for name, m in mask.items()
        }
    return out


def _rebuilt_layers(path: Path, backbone: str, config: dict, state) -> tuple[LayerInfo, ...]:
    from hatinspect.backbones import build_backbone
    from hatinspect.backbones.layers import describe_layers
    from hatinspect.backbones.structure import structure_only

    check_config(path, config)
    try:
        with structure_only():  # meta tensors, initialisers skipped
            layers = describe_layers(build_backbone(backbone, config), prefix="")
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"{path}: cannot rebuild {shown(backbone)}: {reason}") from None
    for layer in layers:
        check_weight(path, state, layer)
    return layers


NAME = "hatinspect"


def detects(state, extra) -> bool:
    return bool(HATINSPECT_EXTRAS & set(extra))
