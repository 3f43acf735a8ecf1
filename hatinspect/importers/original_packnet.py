"""PackNet's own code (Mallya & Lazebnik, ``arunmallya/packnet``): the dict its ``main.py``
writes (``Manager.save_model``; ``init_dump`` for the first, ImageNet file) around the
whole pickled network, read from the unpickler's placeholders (zip or legacy files).

``previous_masks[i]`` (uint8, the weight's shape) belongs to the i-th module of
``model.shared.modules()`` (the container itself is module 0; a module registered twice
counts once), a Conv2d or Linear. Its values name the task that owns each weight: ``k``
for the dataset ``dataset2idx`` numbers k (ImageNet 1), 0 for a free (pruned) weight.
Task k uses the weights whose value is 1..k (``SparsePruner.apply_mask``) and owns those
of value k; those are its masks, tasks counted from 1 as PackNet counts them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hatinspect.importers.common import (
    Imported,
    check_mask_count,
    imported_checkpoint,
    numpy_of,
)
from hatinspect.importers.flow import infer_flow
from hatinspect.importers.pickled_modules import (
    class_name,
    modules_in_order,
    saved_model_state,
    submodules,
    with_metadata,
)
from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.model.checkpoint import Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.names import HPARAMS_KEY, PROTECTION_KEY
from hatinspect.native import format as fmt

NAME = "original-packnet"
KEYS = frozenset({"dataset2idx", "previous_masks", "model"})  # main.py:182, init_dump:300
MAX_TASK = 255  # a uint8 mask names tasks 1..255
INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
HPARAMS = ("arch", "prune_perc_per_layer", "train_biases", "train_bn", "weight_decay")


def holds(payload) -> bool:
    """A dict with PackNet's keys around a whole pickled network."""
    return (
        isinstance(payload, Mapping)
        and KEYS <= set(payload)
        and isinstance(payload["model"], Placeholder)
    )


def detects(state, extra) -> bool:  # a state_dict is never PackNet's own file
    return False


def read(path: Path, state, extra, task_id=None) -> Imported:
    raise CheckpointError(
        f"{path}: PackNet's files hold the whole pickled model beside previous_masks;"
        " this file holds a state_dict"
    )


def tensors(path: Path, payload) -> dict[str, Tensor]:
    """The network's parameters and buffers, under ``state_dict()`` names."""
    return saved_model_state(path, payload["model"])


def import_object(path: Path, payload, source: str | None, task_id: int | None) -> Imported:
    if source not in (None, NAME):
        raise CheckpointError(
            f"{path}: a PackNet checkpoint; source={shown(source)} does not apply"
        )
    if task_id is not None:
        raise CheckpointError(f"{path}: a PackNet file records its tasks; no task id applies")
    model = payload["model"]
    shared = submodules(path, model).get("shared")
    if not isinstance(shared, Placeholder):
        raise CheckpointError(f"{path}: PackNet's model has no shared module")
    datasets = _datasets(path, payload["dataset2idx"])
    count = max(datasets)
    state = saved_model_state(path, model)
    owners, indices, keys = _owners(
        path, payload["previous_masks"], modules_in_order(path, shared), state
    )
    check_mask_count(path, count, len(owners))
    layers, flow_note = _layers(path, state, keys)
    for name, index in owners.items():
        if int(index.max(initial=0)) > count:
            raise CheckpointError(
                f"{path}: previous_masks[{indices[name]}] names task {int(index.max())}, beyond"
                f" the {count} of dataset2idx"
            )
    masks = {
        task: {name: ((index > 0) & (index <= task)).astype(np.uint8)
               for name, index in owners.items()}
        for task in range(1, count + 1)
    }  # fmt: skip
    notes = [*_notes(payload, datasets), *filter(None, [flow_note])]
    native = {key: fmt.OTHER_PREFIX + key for key in state}
    imported = imported_checkpoint(
        path, NAME, class_name(model), layers, masks, notes, state, native,
        covers=Covers.PARAMETERS,
    )  # fmt: skip
    return with_metadata(imported, _metadata(payload, datasets, indices))


def _datasets(path: Path, stored) -> dict[int, str]:
    """Task -> dataset name, from ``dataset2idx`` (an int, or a 0-d tensor as newer torch
    returns from ``previous_masks[...].max()``)."""
    if not isinstance(stored, Mapping) or not stored:
        raise CheckpointError(f"{path}: dataset2idx is not a mapping of datasets to tasks")
    out: dict[int, str] = {}
    for name, value in stored.items():
        task = _task_number(value)
        if not fmt.text(name) or task is None or not 1 <= task <= MAX_TASK or task in out:
            raise CheckpointError(
                f"{path}: dataset2idx[{shown(name)}] is {shown(value)}, not a task in"
                f" 1..{MAX_TASK} of its own"
            )
        out[task] = name
    return dict(sorted(out.items()))


def _task_number(value) -> int | None:
    if isinstance(value, Tensor) and value.dim() == 0 and value.dtype in INTEGERS:
        return int(value.item())
    return value if type(value) is int else None


def _owners(path: Path, stored, modules, state) -> tuple[dict, dict, dict]:
    """Layer name -> its owner array (uint8, the weight's shape), -> its module index, and
    -> its module's name in the state dict."""
    if not isinstance(stored, Mapping) or not stored:
        raise CheckpointError(f"{path}: previous_masks is not a mapping of module indices")
    owners, indices, keys = {}, {}, {}
    for key in stored:
        if type(key) is not int or not 0 <= key < len(modules):
            raise CheckpointError(
                f"{path}: previous_masks has a key {shown(key)}, not the index of one of the"
                f" {len(modules)} modules of model.shared.modules()"
            )
    for key in sorted(stored):  # module order, the network's
        name = "shared." + modules[key][0] if modules[key][0] else "shared"
        weight, mask = state.get(name + ".weight"), stored[key]
        if weight is None or weight.dim() < 2:
            raise CheckpointError(
                f"{path}: previous_masks[{key}] is for module {key} of model.shared"
                f" ({class_name(modules[key][1])}), which has no weight to mask"
            )
        if (
            not isinstance(mask, Tensor)
            or mask.dtype != torch.uint8
            or (tuple(mask.shape) != tuple(weight.shape))
        ):
            raise CheckpointError(
                f"{path}: previous_masks[{key}] is not a uint8 tensor of its weight's shape"
                f" {tuple(weight.shape)}"
            )
        layer = name.replace(".", "/")
        if layer in keys:  # "a.b" and "a/b": one layer name
            raise CheckpointError(
                f"{path}: modules {shown(keys[layer].removeprefix('shared.'))} and"
                f" {shown(modules[key][0])} of model.shared"
                " have one layer name"
            )
        owners[layer], indices[layer], keys[layer] = numpy_of(mask), key, name
    return owners, indices, keys


def _layers(path: Path, state, keys) -> tuple[tuple[LayerInfo, ...], str | None]:
    """The masked layers (layer name -> module name, in module order), with the data flow
    where the architecture gives one (a DenseNet's concatenations give none: then no
    layer has a preceding one)."""
    layers = []
    for name, module in keys.items():
        weight, bias = module + ".weight", module + ".bias"
        shape = tuple(state[weight].shape)
        layers.append(LayerInfo(name, shape[0], shape, weight, bias if bias in state else None,
                                None))  # fmt: skip
    try:
        return infer_flow(path, layers), None
    except CheckpointError:
        return tuple(layers), (
            "no data flow fits these layers in order (their inputs are not the previous"
            " layer's units): none is recorded; masks of weights need none"
        )


def _notes(payload, datasets: dict[int, str]) -> list[str]:
    named = ", ".join(f"{task} {name}" for task, name in datasets.items())
    notes = [
        "PackNet masks weights: task k uses those whose previous_masks value is 1..k and owns"
        f" those of value k, 0 being free (tasks of dataset2idx: {named}); biases are not masked"
    ]
    args = _args(payload)
    if "dataset" in args:
        task = next((t for t, n in datasets.items() if n == args["dataset"]), None)
        notes.append(
            f"written while {shown(args['dataset'])} (task {task}) was trained or pruned"
            f" (args.mode {shown(args.get('mode'))}): its own weights may change in a later file"
        )
    missing = [task for task in range(1, max(datasets)) if task not in datasets]
    if missing:
        notes.append(f"dataset2idx names no dataset for task {', '.join(map(str, missing))}")
    return notes


def _args(payload) -> dict:
    """``args`` (an ``argparse.Namespace``, a placeholder here) as a dict; {} without one."""
    args = payload.get("args")
    state = args.__dict__.get("state") if isinstance(args, Placeholder) else None
    return dict(state) if isinstance(state, Mapping) else {}


def _metadata(payload, datasets, indices) -> dict[str, str]:
    args = _args(payload)
    hparams = {k: args[k] for k in HPARAMS if type(args.get(k)) in (int, float, str, bool)}
    return {
        fmt.ALGORITHM_KEY: "packnet",
        PROTECTION_KEY: "hard",
        HPARAMS_KEY: json.dumps(hparams),
        "packnet.datasets": json.dumps({str(t): n for t, n in datasets.items()}),
        "packnet.module_index": json.dumps(indices),
        "packnet.saved": payload["model"].global_name,
    }
