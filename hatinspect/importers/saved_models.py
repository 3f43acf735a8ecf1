"""CLArena's saved models: ``torch.save`` of a whole HAT-family Lightning module (HAT,
AdaHAT, FG-AdaHAT, AmnesiacHAT; ``clarena_family`` says which) or of a bare backbone,
read from the placeholders of ``safety.unpickler``.

CLArena keeps each task's binary mask only in Python attributes, so these files are the
ones that hold every task's mask: ``backbone.masks`` (task id, int or its string -> layer
-> (units,) tensor), the algorithm's ``cumulative_mask_for_previous_tasks`` and AdaHAT's
``summative_mask_for_previous_tasks`` (layer -> (units,) tensor). The layers, in network
order, are the backbone's ``weighted_layer_names``; the weights are the modules'
``_parameters``. Nothing of the file's classes is run or needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import Tensor

from hatinspect.importers.clarena_family import family_metadata, nested_mask_notes
from hatinspect.importers.pickled_modules import (
    attributes,
    class_name,
    infer_heads,
    layer_names,
    modules_or_empty,
    saved_model_state,
    submodules,
    task_key,
    with_metadata,
)
from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.names import UNLEARNED_KEY
from hatinspect.native import format as fmt

STATE_HINT = "save the weights with torch.save(model.state_dict(), ...) and inspect that file"


def import_saved_model(path: Path, obj: Placeholder, source: str | None, task_id: int | None):
    """The ``Imported`` view of a CLArena saved model (every stored task's mask)."""
    from hatinspect.importers.common import imported_checkpoint, layers_of, stored_task_id

    backbone, algorithm = _parts(path, obj, source)
    if task_id is not None:
        raise CheckpointError(f"{path}: a saved model stores its tasks' masks; no task id applies")
    attrs = attributes(path, backbone)
    names = layer_names(path, attrs)
    masks = _task_masks(path, attrs.get("masks"), names)
    state = saved_model_state(path, obj)
    prefix = "backbone." if algorithm is not None else ""
    layers = layers_of(path, state, {n: prefix + n.replace("/", ".") for n in names})
    family, notes = ({}, []) if algorithm is None else family_metadata(
        path, attributes(path, algorithm), names, masks)  # fmt: skip
    retained = {t: m for t, m in masks.items() if t not in json.loads(
        family.get(UNLEARNED_KEY, "[]"))}  # fmt: skip
    if algorithm is not None:
        notes += _cross_check(path, algorithm, retained)
    notes += nested_mask_notes(path, backbone, masks, submodules)
    if not masks:
        notes.append("the saved model stores no task's mask yet (backbone.masks is empty)")
    native = {
        key: key if key.startswith((fmt.BACKBONE_PREFIX, fmt.HEADS_PREFIX)) else
        (fmt.BACKBONE_PREFIX + key if algorithm is None else fmt.OTHER_PREFIX + key)
        for key in state
    }  # fmt: skip
    imported = imported_checkpoint(
        path, "clarena", class_name(backbone), layers, masks, notes, state, native,
        task_id=stored_task_id(path, "'task_id'", (
            attributes(path, algorithm) if algorithm else attrs).get("task_id")),
    )  # fmt: skip
    metadata = _metadata(path, obj, algorithm) | family
    return with_metadata(imported, metadata)


def _parts(path: Path, obj: Placeholder, source: str | None):
    """(backbone, algorithm or None) of a CLArena saved model, recognised by its layout
    (a backbone with ``masks``, ``weighted_layer_names`` and ``task_embedding_t``, alone or
    as an algorithm's ``backbone``); anything else is refused."""
    if _is_hat_backbone(obj):
        backbone, algorithm = obj, None
    else:
        backbone, algorithm = modules_or_empty(obj).get("backbone"), obj
        if not _is_hat_backbone(backbone):
            raise CheckpointError(
                f"{path}: holds a whole pickled {obj.global_name} object, not a state_dict or"
                f" a CLArena HAT saved model; {STATE_HINT}"
            )
    if source not in (None, "clarena"):
        raise CheckpointError(
            f"{path}: a CLArena saved model; source={shown(source)} does not apply"
        )
    return backbone, algorithm


def _is_hat_backbone(obj) -> bool:
    if not isinstance(obj, Placeholder) or not isinstance(obj.__dict__.get("state"), Mapping):
        return False
    state = obj.__dict__["state"]
    return {"masks", "weighted_layer_names"} <= set(state) and "task_embedding_t" in (
        modules_or_empty(obj)
    )


def _task_masks(path: Path, masks, names: list[str]) -> dict[int, dict[str, np.ndarray]]:
    from hatinspect.importers.common import binary_mask

    if not isinstance(masks, Mapping):
        raise CheckpointError(f"{path}: backbone.masks is not a mapping of task masks")
    out: dict[int, dict[str, np.ndarray]] = {}
    for key, mask in masks.items():
        task = task_key(path, key)
        if task in out:
            raise CheckpointError(f"{path}: backbone.masks holds task {task} twice")
        if not isinstance(mask, Mapping) or set(mask) != set(names):
            raise CheckpointError(
                f"{path}: backbone.masks[{shown(key)}] does not map exactly the weighted layers"
            )
        for name in names:
            if not isinstance(mask[name], Tensor):
                raise CheckpointError(
                    f"{path}: backbone.masks[{shown(key)}][{shown(name)}] is not a tensor"
                )
        out[task] = {
            n: binary_mask(path, f"backbone.masks[{shown(key)}][{shown(n)}]", mask[n])
            for n in names
        }
    return out


def _cross_check(path: Path, algorithm: Placeholder, masks) -> list[str]:
    """Notes where the algorithm's cumulative / summative masks disagree with the tasks'."""
    attrs = attributes(path, algorithm)
    notes = []
    checks = (
        ("cumulative_mask_for_previous_tasks", np.maximum, "cumulative"),
        ("summative_mask_for_previous_tasks", np.add, "summative"),
    )
    for attribute, op, what in checks:
        stored = attrs.get(attribute)
        if not isinstance(stored, Mapping) or not stored or not masks:
            continue
        differ = sorted(_name(n) for n in stored if not _agrees(stored[n], masks, n, op))
        if differ:
            notes.append(
                f"the algorithm's {attribute} differs from the {what} of the stored masks of"
                f" the tasks still learned in {', '.join(differ)}; those masks are used"
            )
    return notes


def _name(name) -> str:
    return name if isinstance(name, str) else shown(name)


def _agrees(stored, masks, name, op) -> bool:
    if not isinstance(stored, Tensor) or any(name not in m for m in masks.values()):
        return False
    expected = np.zeros(next(iter(masks.values()))[name].shape, dtype=np.int64)
    if any(m[name].shape != expected.shape for m in masks.values()):
        return False  # the tasks' masks disagree on the layer's size: refused later
    for mask in masks.values():
        expected = op(expected, mask[name].astype(np.int64))
    values = stored.detach().float().flatten().numpy()
    return values.shape == expected.shape and bool((values == expected).all())


def _metadata(path: Path, obj: Placeholder, algorithm: Placeholder | None) -> dict[str, str]:
    metadata = {"clarena.saved": obj.global_name}
    if algorithm is not None:
        metadata["clarena.algorithm"] = class_name(algorithm)
        heads = infer_heads(path, algorithm)
        if heads:
            metadata["clarena.heads"] = json.dumps(heads)
    return metadata
