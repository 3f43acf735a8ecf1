"""Piggyback (Mallya, Davis & Lazebnik, ``arunmallya/piggyback``): its training checkpoints
(``Manager.save_model``: ``args`` and the whole pickled ``model``) and the files of its
``pack.py`` (``dataset2masks``), read from the unpickler's placeholders (zip or legacy).

A training checkpoint holds one dataset's task. Every masked layer is a ``modnets.layers``
``ElementWise*`` module of ``model.shared`` (any class with ``ElementWise`` in its name, as
their code finds them): its backbone ``weight`` (and ``bias``) is a plain attribute, not a
parameter, so never in a ``state_dict()`` and never trained; its ``mask_real`` (float, the
weight's shape) is. The module's ``threshold_fn`` (a pickled ``Binarizer`` or
``Ternarizer``, its ``threshold`` 5e-3 by default) makes the mask as their ``forward``
does: ``mask_real > threshold``, or -1 / 0 / 1 (-1 below 0, 1 above the threshold) for the
ternarizer, whose weights used are the nonzero entries. The task is the dataset's place in
``model.datasets`` (ImageNet, the backbone's own, is 0).

``pack.py`` keeps ``dataset2masks[dataset][i]`` (uint8, the weight's shape) for the i-th
module of ``model.shared.modules()``: 1 used, 0 not, 255 the ternarizer's -1 cast to uint8
(used, its sign flipped). It holds no backbone: layers are named ``module/<i>``, and the
datasets are tasks 1, 2, ... in the file's order.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hatinspect.importers.common import (
    UNKNOWN_BACKBONE,
    Imported,
    check_mask_count,
    frozen,
    imported_checkpoint,
    numpy_of,
)
from hatinspect.importers.flow import infer_flow
from hatinspect.importers.pickled_modules import (
    attributes,
    class_name,
    modules_in_order,
    modules_or_empty,
    saved_model_state,
    tensor_value,
    with_metadata,
)
from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.model.checkpoint import Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.names import HPARAMS_KEY, MASKS_ONLY_KEY
from hatinspect.native import format as fmt

NAME = "piggyback"
PACKED = "dataset2masks"  # pack.py:133
THRESHOLDERS = ("Binarizer", "Ternarizer")  # modnets/layers.py:12, :29
FLIPPED = 255  # pack.py:110 casts the ternarizer's -1 to a ByteTensor
HPARAMS = ("arch", "threshold_fn", "mask_init", "mask_scale", "lr_mask", "train_bn")


def holds(payload) -> bool:
    """A training checkpoint (a whole model with ``ElementWise`` modules) or a packed file."""
    if not isinstance(payload, Mapping):
        return False
    if isinstance(payload.get(PACKED), Mapping):
        return True
    model = payload.get("model")
    if "previous_masks" in payload or not isinstance(model, Placeholder):
        return False
    shared = _shared_or_none(model)
    return shared is not None and any(_masked(m) for m in _walk(shared))


def detects(state, extra) -> bool:  # a state_dict is never one of Piggyback's files
    return False


def read(path: Path, state, extra, task_id=None) -> Imported:
    raise CheckpointError(
        f"{path}: Piggyback's files hold the whole pickled model or pack.py's dataset2masks;"
        " this file holds a state_dict"
    )


def tensors(path: Path, payload) -> dict[str, Tensor]:
    """The network's tensors: its ``state_dict()`` and the masked modules' backbone
    weights and biases, under ``<module>.weight`` / ``.bias``; none in a packed file."""
    if PACKED in payload:
        return {}
    model = payload["model"]
    state = saved_model_state(path, model)
    for name, module in _masked_modules(path, model).values():
        state |= _backbone(path, name, module)
    return state


def import_object(
    path: Path, payload, source: str | None, task_id: int | None, mask_threshold=None
) -> Imported:
    """``mask_threshold`` replaces every module's threshold (``mask_real > threshold``)."""
    if source not in (None, NAME):
        raise CheckpointError(f"{path}: a Piggyback file; source={shown(source)} does not apply")
    if task_id is not None:
        raise CheckpointError(f"{path}: a Piggyback file names its tasks; no task id applies")
    if PACKED in payload:
        if mask_threshold is not None:
            raise CheckpointError(
                f"{path}: pack.py's dataset2masks are binary already; no mask threshold applies"
            )
        return _import_packed(path, payload[PACKED])
    if mask_threshold is not None and (
        isinstance(mask_threshold, bool)
        or not isinstance(mask_threshold, numbers.Real)
        or not math.isfinite(mask_threshold)
    ):
        raise CheckpointError(
            f"{path}: the mask threshold {shown(mask_threshold)} is not a finite number"
        )
    return _import_trained(path, payload, None if mask_threshold is None else float(mask_threshold))


# --- training checkpoints --------------------------------------------------------------


def _import_trained(path: Path, payload, chosen: float | None) -> Imported:
    model = payload["model"]
    state = tensors(path, payload)
    modules = _masked_modules(path, model)
    masks, rules = {}, set()
    for name, module in modules.values():
        masks[_layer(name)], rule = _task_mask(path, name, module, state, chosen)
        rules.add(rule)
    if len(rules) != 1:
        raise CheckpointError(f"{path}: the masked layers threshold differently: {sorted(rules)}")
    args = _args(payload)
    task, dataset = _task(path, model, args)
    layers = _layers(path, state, modules)
    rule = rules.pop()
    notes = [_rule_note(*rule, chosen is not None), *_args_notes(args, rule)]
    if not any(mask.any() for mask in masks.values()):
        notes.append("the task's mask keeps no weight")
    native = {key: fmt.OTHER_PREFIX + key for key in state}
    imported = imported_checkpoint(
        path, NAME, class_name(model), layers, {task: masks}, notes, state, native,
        covers=Covers.PARAMETERS,
    )  # fmt: skip
    hparams = {k: args[k] for k in HPARAMS if type(args.get(k)) in (int, float, str, bool)}
    hparams["threshold"] = rule[1]
    return with_metadata(imported, _metadata({task: dataset}, hparams, model.global_name))


def _masked_modules(path: Path, model) -> dict[int, tuple[str, Placeholder]]:
    """Module index -> (dotted name under ``shared``, module) of the ``ElementWise`` ones."""
    shared = _shared_or_none(model)
    if shared is None:
        raise CheckpointError(f"{path}: Piggyback's model has no shared module")
    found = {
        index: ("shared." + name if name else "shared", module)
        for index, (name, module) in enumerate(modules_in_order(path, shared))
        if _masked(module)
    }
    if not found:
        raise CheckpointError(f"{path}: model.shared has no ElementWise (masked) module")
    return found


def _backbone(path: Path, name: str, module: Placeholder) -> dict[str, Tensor]:
    """The module's frozen weight (and bias): plain attributes (modnets/layers.py:84)."""
    attrs = attributes(path, module)
    parameters = attrs.get("_parameters") or {}
    out = {}
    for part in ("weight", "bias"):
        value = attrs.get(part, parameters.get(part) if isinstance(parameters, Mapping) else None)
        if tensor_value(value) is not None:  # a Variable, pickled by torch 0.2
            out[f"{name}.{part}"] = tensor_value(value).detach()
        elif part == "weight" or value is not None:
            raise CheckpointError(f"{path}: {name}.{part} is {shown(value)}, not a tensor")
    return out


def _task_mask(
    path: Path, name: str, module: Placeholder, state, chosen: float | None
) -> tuple[np.ndarray, tuple]:
    """The mask the module's ``threshold_fn`` makes of its ``mask_real`` (at the
    ``chosen`` threshold, where given), and (rule, threshold)."""
    attrs = attributes(path, module)
    thresholder = attrs.get("threshold_fn")
    kind = class_name(thresholder) if isinstance(thresholder, Placeholder) else None
    state_of = thresholder.__dict__.get("state") if kind else None
    threshold = state_of.get("threshold") if isinstance(state_of, Mapping) else None
    if (
        kind not in THRESHOLDERS
        or type(threshold) not in (int, float)
        or not math.isfinite(threshold)
    ):
        raise CheckpointError(
            f"{path}: {name}.threshold_fn is {shown(thresholder)}, not a Binarizer or"
            " Ternarizer with a finite threshold"
        )
    real, weight = state.get(f"{name}.mask_real"), state[f"{name}.weight"]
    if (
        not isinstance(real, Tensor)
        or not real.dtype.is_floating_point
        or (tuple(real.shape) != tuple(weight.shape))
    ):
        raise CheckpointError(
            f"{path}: {name}.mask_real is not a floating-point tensor of its weight's shape"
            f" {tuple(weight.shape)}"
        )
    values = numpy_of(real).astype(np.float64)
    if np.isnan(values).any():
        raise CheckpointError(f"{path}: {name}.mask_real contains NaN")
    threshold = threshold if chosen is None else chosen
    used = values > threshold
    if kind == "Ternarizer":
        used |= values < 0  # -1: the weight is used with its sign flipped
    return frozen(used), (kind, float(threshold))


def _layers(path: Path, state, modules) -> tuple[LayerInfo, ...]:
    layers = []
    for name, _ in modules.values():
        shape = tuple(state[name + ".weight"].shape)
        if len(shape) < 2:
            raise CheckpointError(f"{path}: {name}.weight has shape {shape}, not a layer's")
        bias = name + ".bias" if name + ".bias" in state else None
        layers.append(LayerInfo(_layer(name), shape[0], shape, name + ".weight", bias, None))
    try:
        return infer_flow(path, layers)
    except CheckpointError:
        return tuple(layers)  # no chain fits (a DenseNet's concatenations): none recorded


def _task(path: Path, model, args) -> tuple[int, str]:
    """The task id (the dataset's place in ``model.datasets``) and the dataset's name."""
    datasets = attributes(path, model).get("datasets")
    dataset = args.get("dataset")
    if isinstance(datasets, list) and dataset in datasets:
        return datasets.index(dataset), dataset
    if isinstance(datasets, list) and len(datasets) == 2 and all(map(fmt.text, datasets)):
        return 1, datasets[1]  # ImageNet's and the one added
    raise CheckpointError(f"{path}: the model's datasets do not name the dataset trained")


def _rule_note(kind: str, threshold: float, chosen: bool) -> str:
    given = " (the threshold chosen, not the file's)" if chosen else ""
    if kind == "Ternarizer":
        return (
            f"Piggyback masks weights (ternarizer): a weight is used where its ternary mask is"
            f" nonzero: mask_real below 0 (-1, its sign flipped) or above {threshold:g}"
            f" (1){given}"
        )
    return (
        f"Piggyback masks weights: a weight is used where its mask_real is above"
        f" {threshold:g}{given}"
    )


def _args_notes(args, rule) -> list[str]:
    stated = args.get("threshold_fn")
    if isinstance(stated, str) and stated.lower() != rule[0].lower():
        return [f"args.threshold_fn is {shown(stated)}, but the layers hold a {rule[0]}"]
    return []


def _args(payload) -> dict:
    args = payload.get("args")
    state = args.__dict__.get("state") if isinstance(args, Placeholder) else None
    return dict(state) if isinstance(state, Mapping) else {}


# --- pack.py's files -------------------------------------------------------------------


def _import_packed(path: Path, stored) -> Imported:
    if not stored or not all(fmt.text(d) for d in stored):
        raise CheckpointError(f"{path}: dataset2masks does not map dataset names to masks")
    first = next(iter(stored.values()))
    shapes = _packed_shapes(path, first)
    check_mask_count(path, len(stored), len(shapes))
    masks, flipped = {}, 0
    for task, (dataset, layers) in enumerate(stored.items(), start=1):
        if not isinstance(layers, Mapping) or set(layers) != set(shapes):
            raise CheckpointError(
                f"{path}: dataset2masks[{shown(dataset)}] does not mask the modules the first"
                " dataset masks"
            )
        masks[task] = {}
        for index, shape in shapes.items():
            values = _packed_mask(path, f"dataset2masks[{shown(dataset)}][{index}]",
                                  layers[index], shape)  # fmt: skip
            flipped += int((values == FLIPPED).sum())
            masks[task][f"module/{index}"] = frozen(values > 0)
    layers = tuple(
        LayerInfo(f"module/{i}", shape[0], shape, f"shared.modules.{i}.weight", None, None)
        for i, shape in shapes.items()
    )
    notes = [
        "a Piggyback packed file (pack.py): masks only, layers named module/<i> after their"
        " index in model.shared.modules(); the backbone, whose weights they select, is not in"
        " the file",
        "Piggyback masks weights: a weight is used where its packed mask is nonzero"
        + (f" ({flipped:,} entries are the ternarizer's -1, stored as 255)" if flipped else ""),
    ]
    datasets = dict(enumerate(stored, start=1))
    imported = imported_checkpoint(
        path, NAME, UNKNOWN_BACKBONE, layers, masks, notes, {}, {},
        covers=Covers.PARAMETERS, weights=False,
    )  # fmt: skip
    return with_metadata(imported, _metadata(datasets, {}, None) | {MASKS_ONLY_KEY: "true"})


def _packed_shapes(path: Path, first) -> dict[int, tuple[int, ...]]:
    if not isinstance(first, Mapping) or not first:
        raise CheckpointError(f"{path}: dataset2masks holds no module's mask")
    for index in first:
        if type(index) is not int or index < 1:
            raise CheckpointError(
                f"{path}: dataset2masks has a key {shown(index)}, not a module index"
            )
    shapes = {}
    for index in sorted(first):  # module order, the network's
        mask = first[index]
        if not isinstance(mask, Tensor) or mask.dim() < 2 or 0 in mask.shape:
            raise CheckpointError(f"{path}: dataset2masks' mask of module {index} is no weight's")
        shapes[index] = tuple(mask.shape)
    return shapes


def _packed_mask(path: Path, where: str, mask, shape) -> np.ndarray:
    if not isinstance(mask, Tensor) or mask.dtype != torch.uint8 or tuple(mask.shape) != shape:
        raise CheckpointError(f"{path}: {where} is not a uint8 tensor of shape {shape}")
    values = numpy_of(mask)
    if not np.isin(values, (0, 1, FLIPPED)).all():
        raise CheckpointError(f"{path}: {where} holds values other than 0, 1 and 255 (-1)")
    return values


# --- both ------------------------------------------------------------------------------


def _metadata(datasets: dict[int, str], hparams: dict, saved: str | None) -> dict[str, str]:
    metadata = {
        fmt.ALGORITHM_KEY: "piggyback",
        HPARAMS_KEY: json.dumps(hparams),
        "piggyback.datasets": json.dumps({str(t): d for t, d in datasets.items()}),
    }
    if saved:
        metadata["piggyback.saved"] = saved
    return metadata


def _layer(name: str) -> str:
    return name.replace(".", "/")


def _masked(module) -> bool:
    return isinstance(module, Placeholder) and "ElementWise" in class_name(module)


def _shared_or_none(model):
    shared = modules_or_empty(model).get("shared")
    return shared if isinstance(shared, Placeholder) else None


def _walk(obj, limit: int = 100_000):
    """Modules below ``obj`` (without checks, for recognising the layout only)."""
    pending, seen = [obj], set()
    while pending and len(seen) < limit:
        module = pending.pop()
        if id(module) in seen or not isinstance(module, Placeholder):
            continue
        seen.add(id(module))
        yield module
        pending.extend(modules_or_empty(module).values())
