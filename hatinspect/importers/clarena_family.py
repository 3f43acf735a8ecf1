"""What a CLArena saved model says beyond its masks: which member of the HAT family trained
it, with which hyperparameters, which tasks it unlearned and what it kept of each task's
parameter updates. Read from the unpickler's placeholders; nothing of the file runs.

The algorithm is known by the attributes its class keeps, not by the class's name (a
subclass keeps its parent's): AmnesiacHAT stores ``parameters_task_update``, FG-AdaHAT
``summative_importance_for_previous_tasks``, AdaHAT ``summative_mask_for_previous_tasks``,
HAT only ``cumulative_mask_for_previous_tasks``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np
from torch import Tensor

from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.names import (
    HARD,
    HPARAMS_KEY,
    IMPORTANCES_KEY,
    PROTECTION_KEY,
    PROTECTIONS,
    SOFT,
    TITLES,
    UNLEARNED_KEY,
    UPDATE_NORMS_KEY,
)
from hatinspect.native.format import ALGORITHM_KEY

# (attribute the class keeps, algorithm), most derived first
SIGNATURES = (
    ("parameters_task_update", "amnesiac-hat"),
    ("summative_importance_for_previous_tasks", "fg-adahat"),
    ("summative_mask_for_previous_tasks", "adahat"),
    ("cumulative_mask_for_previous_tasks", "hat"),
)
# the attributes that are the family's hyperparameters (each class sets its own)
HPARAMS = (
    "s_max", "clamp_threshold", "mask_sparsity_reg_factor", "mask_sparsity_reg_mode",
    "task_embedding_init_mode", "adjustment_mode", "adjustment_intensity", "epsilon", "alpha",
    "importance_type", "importance_scheduler_type", "importance_summing_strategy",
    "neuron_to_weight_importance_aggregation_mode", "filter_by_cumulative_mask",
    "filter_unmasked_importance", "step_multiply_training_mask", "base_importance",
    "base_mask_sparsity_reg", "base_linear", "architecture", "if_replay", "backup_init_mode",
    "disable_unlearning", "distillation_reg_factor", "replay_ce_factor",
)  # fmt: skip
MAX_TASK_LIST = 100_000  # task ids in an unlearned set: bounded by the stored tasks anyway


def family_metadata(path, attrs: Mapping, names: list[str], tasks) -> tuple[dict, list[str]]:
    """The user metadata (algorithm, protection, hyperparameters, unlearned tasks, update
    norms) and the notes a CLArena algorithm's attributes give."""
    algorithm = next((name for attr, name in SIGNATURES if attr in attrs), None)
    if algorithm is None:
        return {}, []
    hparams = {k: attrs[k] for k in HPARAMS if _scalar(attrs.get(k, ...))}
    metadata = {ALGORITHM_KEY: algorithm, HPARAMS_KEY: json.dumps(hparams, sort_keys=True)}
    notes = []
    if algorithm == "amnesiac-hat":
        architecture = str(attrs.get("architecture", "AdaHAT"))
        metadata[PROTECTION_KEY] = HARD if architecture.lower() == "hat" else SOFT
        unlearned = unlearned_tasks(path, attrs, tasks)
        metadata[UNLEARNED_KEY] = json.dumps(unlearned)
        metadata[UPDATE_NORMS_KEY] = json.dumps(update_norms(path, attrs, names))
        if unlearned:
            whose = "its" if len(unlearned) == 1 else "their"
            notes.append(
                f"task {_listing(unlearned)} was unlearned: {whose} masks are shown, and"
                " counted in no cumulative mask, capacity or audit"
            )
    if algorithm == "fg-adahat":
        metadata[IMPORTANCES_KEY] = json.dumps(fg_importances(path, attrs, names))
    notes += replay_notes(attrs)
    protection = metadata.get(PROTECTION_KEY, PROTECTIONS[algorithm])
    if protection == SOFT:
        notes.append(
            f"{TITLES[algorithm]} protects earlier tasks softly: their parameters move by an"
            " adjustment rate (measure --of adjustment shows it)"
        )
    return metadata, notes


def unlearned_tasks(path, attrs: Mapping, tasks) -> list[int]:
    """The model's ``unlearned_task_ids``: kept current by the unlearning algorithm's
    ``setup_test_task_id`` (the pipeline keeps a set of its own that it never updates)."""
    if attrs.get("disable_unlearning") is True:
        return []
    value = attrs.get("unlearned_task_ids", set())
    if not isinstance(value, set | frozenset | list | tuple) or len(value) > MAX_TASK_LIST:
        raise CheckpointError(
            f"{path}: the algorithm's unlearned_task_ids is not a set of task ids"
        )
    ids = set()
    for task in value:
        if type(task) is not int or task < 0:
            raise CheckpointError(f"{path}: unlearned_task_ids holds {shown(task)}, not a task id")
        ids.add(task)
    return sorted(ids & set(tasks))


def update_norms(path, attrs: Mapping, names: list[str]) -> dict[str, dict[str, float]]:
    """Task -> layer -> the L2 norm of the update its training made to the layer's weight
    and bias, from ``parameters_task_update`` (the updates unlearning subtracts)."""
    updates = attrs.get("parameters_task_update")
    if not isinstance(updates, Mapping):
        raise CheckpointError(f"{path}: parameters_task_update is not a mapping of tasks")
    keys = {n: (f"{n.replace('/', '.')}.weight", f"{n.replace('/', '.')}.bias") for n in names}
    norms = {}
    for task, update in updates.items():
        if type(task) is not int or not isinstance(update, Mapping):
            raise CheckpointError(f"{path}: parameters_task_update[{shown(task)}] is malformed")
        norms[str(task)] = {
            name: _norm(path, [update.get(key) for key in pair]) for name, pair in keys.items()
        }
    return norms


def _norm(path, tensors) -> float:
    total = 0.0
    for tensor in tensors:
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor) or not tensor.dtype.is_floating_point:
            raise CheckpointError(f"{path}: parameters_task_update holds a non-float entry")
        total += float(tensor.detach().double().square().sum())
    return math.sqrt(total)


def fg_importances(path, attrs: Mapping, names: list[str]) -> dict:
    """FG-AdaHAT's ``importances[t][layer]`` and ``summative_importance_for_previous_tasks``
    (tensors that may require grad: their values are taken, nothing else)."""
    tasks = attrs.get("importances")
    if not isinstance(tasks, Mapping):
        raise CheckpointError(f"{path}: FG-AdaHAT's importances is not a mapping of tasks")
    out = {"type": attrs.get("importance_type"), "tasks": {}}
    for task, layers in tasks.items():
        if type(task) is not int:
            raise CheckpointError(f"{path}: importances has a task key {shown(task)}")
        out["tasks"][str(task)] = _vectors(path, f"importances[{task}]", layers, names)
    summative = attrs.get("summative_importance_for_previous_tasks")
    if isinstance(summative, Mapping) and summative:
        out["summative"] = _vectors(path, "summative_importance", summative, names)
    return out


def _vectors(path, where: str, layers, names: list[str]) -> dict[str, list[float]]:
    if not isinstance(layers, Mapping) or set(layers) != set(names):
        raise CheckpointError(f"{path}: {where} does not map exactly the weighted layers")
    out = {}
    for name in names:
        tensor = layers[name]
        if (
            not isinstance(tensor, Tensor)
            or tensor.dim() != 1
            or not tensor.dtype.is_floating_point
        ):
            raise CheckpointError(f"{path}: {where}[{shown(name)}] is not a vector of floats")
        values = tensor.detach().double()
        if not bool(values.isfinite().all()):
            raise CheckpointError(f"{path}: {where}[{shown(name)}] holds a non-finite value")
        out[name] = [float(v) for v in values.tolist()]
    return out


def replay_notes(attrs: Mapping) -> list[str]:
    """A note when the algorithm's replay buffer (DER++'s, in AmnesiacHAT) holds examples."""
    buffer = attrs.get("memory_buffer")
    state = buffer.__dict__.get("state") if isinstance(buffer, Placeholder) else None
    examples = state.get("examples") if isinstance(state, Mapping) else None
    if not isinstance(examples, Tensor) or examples.numel() == 0:
        return []
    count = examples.shape[0] if examples.dim() else 1
    return [f"the file holds {count:,} training examples (the algorithm's replay memory_buffer)"]


def nested_mask_notes(path, backbone: Placeholder, masks, modules_of) -> list[str]:
    """CLArena's ``store_mask`` writes each task's masks into every nested HAT block too:
    the copies are checked against the backbone's own (a disagreement is a note) and never
    counted again."""
    differ: set[str] = set()
    stack = [(name, child) for name, child in modules_of(path, backbone).items()]
    budget = 100_000
    while stack and budget:
        prefix, module = stack.pop()
        budget -= 1
        if not isinstance(module, Placeholder):
            continue
        state = module.__dict__.get("state")
        if isinstance(state, Mapping) and isinstance(state.get("masks"), Mapping):
            differ.update(_disagreements(prefix, state["masks"], masks))
        stack.extend((f"{prefix}.{n}", c) for n, c in modules_of(path, module).items())
    if not differ:
        return []
    return [
        f"the masks stored again in nested blocks differ from the backbone's in "
        f"{', '.join(sorted(differ))}; the backbone's are used"
    ]


def _disagreements(prefix: str, nested: Mapping, masks) -> set[str]:
    from hatinspect.native import format as fmt

    out = set()
    for key, layers in nested.items():
        task = key if fmt.is_task_id(key) else fmt.parse_task_id(key) if type(key) is str else None
        if task not in masks or not isinstance(layers, Mapping):
            out.add(prefix)
            continue
        for layer, tensor in layers.items():
            mine = masks[task].get(layer)
            if mine is None or not isinstance(tensor, Tensor) or not _same(tensor, mine):
                out.add(f"{prefix} (task {task}, {layer})")
    return out


def _same(tensor: Tensor, mask: np.ndarray) -> bool:
    values = tensor.detach().float().flatten().numpy()
    return values.shape == mask.shape and bool(((values > 0.5) == (mask > 0)).all())


def _scalar(value) -> bool:
    return (
        value is None
        or type(value) in (bool, int, str)
        or (type(value) is float and math.isfinite(value))
    )


def _listing(tasks) -> str:
    return ", ".join(map(str, tasks))
