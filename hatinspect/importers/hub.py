"""Importing the PyTorch checkpoints other HAT implementations write, without running them.

A file's pickle is scanned first and refused if it names a global that could run code
(``unpickler.refused_globals``). Files of tensors and containers load with
``torch.load(..., weights_only=True)``; a Lightning ``{"state_dict": ...}`` wrapper is
unwrapped. A whole pickled object (``torch.save(module)``) loads with the placeholder
unpickler and is read as a CLArena saved model (``saved_models``) or refused. Layouts,
recognised from the tensor names:

- ``original-hat`` (Serra et al.): ``e<layer>.weight`` of shape (tasks, units) beside
  ``<layer>.weight``; task t's mask is ``e[t] > 0``, i.e. ``sigmoid(s·e[t]) > 0.5``.
- ``hat-cl``: ``<module>.masker.attention.<t>`` (units,) and ``<module>.masker._task_trained``;
  a trained task's mask is ``attention > 0``.
- ``clarena``: ``[backbone.]task_embedding_t.<layer>.weight`` (1, units): only the mask of
  the last trained task, ``e > 0``, survives in such a file.
- ``hatinspect``: ``{"state_dict", "masks", "backbone", "config", "heads"}``, which keeps
  every stored mask (a bare backbone state_dict is CLArena's layout).

Layers get their data flow from ``flow.infer_flow``, never from key order.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from hatinspect.importers.flow import infer_flow, inferred_note
from hatinspect.importers.safety.pickle_scan import CheckedFile, check_tensors, check_torch_file
from hatinspect.importers.safety.unpickler import (
    Placeholder,
    load_saved_object,
    pickle_globals,
    refuse_globals,
)
from hatinspect.model.checkpoint import Checkpoint, LayerInfo
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.native import format as fmt

UNKNOWN_BACKBONE = "unknown"
THRESHOLD_NOTE = "masks recovered from task embeddings as e > 0 (= sigmoid(s*e) > 0.5, any s > 0)"

# a key's task number is any run of digits: one that is no task id refuses the file
# (task_id_in_key), never leaves the key unread
HATCL_ATTENTION = re.compile(r"^(?P<module>.+)\.masker\.attention\.(?P<task>[0-9]+)$")
# a TaskIndexedBatchNorm is a ModuleList of batch norms: task t's at index t, one more last
HATCL_NORM = re.compile(r"^(?P<module>.+)\.(?P<task>[0-9]+)\.(?P<field>running_mean)$")
EMBEDDING = re.compile(r"^(?:.+\.)?task_embedding_t\.(?P<layer>[^.]+)\.weight$")
# CLArena's algorithm (``backbone.``) or its bare backbone's state_dict
CLARENA_EMBEDDING = re.compile(r"^(?:backbone\.)?(?:.+\.)?task_embedding_t\.[^.]+\.weight$")
HATINSPECT_EXTRAS = {"masks", "backbone", "config", "heads", "task_id"}  # entries beside state_dict
ONE_TASK_SOURCES = ("clarena", "hatinspect")
HEAD = re.compile(r"^heads\.heads\.(?P<task>[0-9]+)\.")


@dataclass(frozen=True)
class Imported:
    """A foreign file read: its masks, its tensors and how a native file would name them."""

    checkpoint: Checkpoint  # weight keys as in the foreign file
    state: Mapping[str, Tensor]
    native_keys: Mapping[str, str]  # foreign tensor key -> native tensor key
    config: dict | None = None  # constructor arguments when the backbone can be rebuilt
    task_id: int | None = None
    heads: Mapping[str, Tensor] = field(default_factory=dict)


def import_checkpoint(
    path: str | Path, source: str | None = None, task_id: int | None = None
) -> Imported:
    """Read a PyTorch file in one of the known layouts (``source`` forces one);
    ``task_id`` names the task of a file that holds one task's embedding."""
    path = Path(path)
    if source is not None and source not in IMPORTERS:
        known = ", ".join(IMPORTERS)
        raise CheckpointError(f"{path}: unknown source {source!r}; expected one of {known}")
    payload = load_payload(path)
    if isinstance(payload, Placeholder):
        from hatinspect.importers.saved_models import import_saved_model

        return import_saved_model(path, payload, source, task_id)
    state, extra = unwrap(path, payload)
    source = source or detect(path, state, extra)
    if task_id is not None and source not in ONE_TASK_SOURCES:
        raise CheckpointError(
            f"{path}: a {source} file records its tasks; a task id applies only to a file"
            " with one task's embedding (clarena, hatinspect)"
        )
    return IMPORTERS[source](path, state, extra, task_id)


def read_torch_tensors(path: str | Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Named tensors of a PyTorch file's state_dict, as numpy arrays."""
    path = Path(path)
    payload = load_payload(path)
    if isinstance(payload, Placeholder):
        from hatinspect.importers.saved_models import saved_model_state

        state = saved_model_state(path, payload)
    else:
        state, _ = unwrap(path, payload)
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(f"{path}: no tensor {missing[0]!r}")
    return {key: _numpy(state[key]) for key in keys}


def load_payload(path: Path):
    """The file's object. Its pickle's globals are checked first (``refused_globals``);
    a file of tensors and containers loads with ``torch.load(weights_only=True)``, a whole
    pickled object (a ``torch.save`` zip) with the placeholder unpickler."""
    checked = check_torch_file(path)  # zip records and pickles no checkpoint has, first
    try:
        payload = _load_checked(path, checked)
    except CheckpointError:
        checked.wait()  # a damaged record is what to report first
        raise
    checked.wait()
    check_tensors(path, payload, path.stat().st_size)
    return payload


def _load_checked(path: Path, checked: CheckedFile):
    refuse_globals(path, checked.globals)  # every pickle's, as check_torch_file scanned them
    try:
        with warnings.catch_warnings():
            # What torch warns of while it rebuilds a file's tensors is its own API (the
            # deprecated TypedStorage, quantized constructors, a plain pickle's protocol),
            # never what the file holds: that is checked after loading (check_tensors,
            # the importers) and refused or noted there. So every warning is silenced.
            warnings.simplefilter("ignore")
            # a file object, not the path: torch.load treats a path by its suffix
            with path.open("rb") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not checked.zipped:  # what the scan took it for, never a second guess
            raise CheckpointError(f"{path}: refused to load: {_refusal(path, exc)}") from None
        with warnings.catch_warnings():  # the same warnings, from the same rebuilding
            warnings.simplefilter("ignore")
            return load_saved_object(path)
    except Exception as exc:  # torch.load raises many types on damaged data; all mean "unreadable"
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def unwrap(path: Path, payload) -> tuple[dict[str, Tensor], dict]:
    """``(state_dict, other entries)``; Lightning's ``{"state_dict": ...}`` is unwrapped."""
    if not isinstance(payload, Mapping):
        raise CheckpointError(
            f"{path}: holds a {type(payload).__name__}, not a state_dict; save the weights"
            " with torch.save(model.state_dict(), ...) and inspect that file"
        )
    if isinstance(payload.get("state_dict"), Mapping):
        extra = {key: value for key, value in payload.items() if key != "state_dict"}
        state = payload["state_dict"]
    else:
        state, extra = payload, {}
    return _named_tensors(path, "state_dict", state), extra


def _named_tensors(path: Path, what: str, tensors) -> dict[str, Tensor]:
    if not isinstance(tensors, Mapping):
        raise CheckpointError(f"{path}: {what} is a {type(tensors).__name__}, not a mapping")
    for key, value in tensors.items():
        if not (fmt.text(key) and isinstance(value, Tensor)):
            raise CheckpointError(f"{path}: {what} entry {shown(key)} is not a named tensor")
    return dict(tensors)


def detect(path: Path, state: Mapping[str, Tensor], extra: Mapping) -> str:
    """The layout a state_dict is in, from its tensor names."""
    if HATINSPECT_EXTRAS & set(extra):
        return "hatinspect"
    if any(HATCL_ATTENTION.match(key) for key in state):
        return "hat-cl"
    if any(CLARENA_EMBEDDING.match(key) for key in state):
        return "clarena"
    if _original_layers(state):
        return "original-hat"
    raise CheckpointError(
        f"{path}: no HAT masks found (no task embeddings e<layer>/task_embedding_t and no"
        " HAT-CL masker.attention); pass a source to choose a layout"
    )


# --- original HAT ----------------------------------------------------------------------


def _original_hat(path: Path, state, extra, task_id=None) -> Imported:
    names = _original_layers(state)
    if not names:
        raise CheckpointError(f"{path}: no e<layer>.weight beside a <layer>.weight (original HAT)")
    tasks = {state[f"e{name}.weight"].shape[0] for name in names}
    if len(tasks) != 1:
        raise CheckpointError(
            f"{path}: task embeddings disagree on the task count: {sorted(tasks)}"
        )
    task_ids = tuple(range(tasks.pop()))
    _check_mask_count(path, len(task_ids), len(names))
    masks = {
        t: {n: _threshold(path, f"e{n}.weight", state[f"e{n}.weight"][t]) for n in names}
        for t in task_ids
    }
    notes = (
        THRESHOLD_NOTE,
        f"every one of the {len(task_ids)} embedding rows is read as a task;"
        " rows of tasks not trained yet hold their initialisation",
    )
    layers = _layers(path, state, {name: name for name in names})
    # the per-task output heads are the ModuleList `last`
    native = {
        k: (fmt.HEADS_PREFIX if k.startswith("last.") else fmt.BACKBONE_PREFIX) + k for k in state
    }
    return _imported(path, "original-hat", "Net", layers, masks, notes, state, native)


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


# --- HAT-CL ----------------------------------------------------------------------------


def _hat_cl(path: Path, state, extra, task_id=None) -> Imported:
    attention: dict[str, dict[int, Tensor]] = {}
    for key, value in state.items():
        if match := HATCL_ATTENTION.match(key):
            task = task_id_in_key(path, key, match["task"])
            attention.setdefault(match["module"], {})[task] = value
    if not attention:
        raise CheckpointError(f"{path}: no HAT-CL masker.attention tensors")
    task_ids = sorted(set().union(*(_trained_tasks(path, state, m) for m in attention)))
    _check_mask_count(path, len(task_ids), len(attention))
    masks = {
        t: {
            module.replace(".", "/"): _attention_mask(path, module, attention[module], t)
            for module in attention
        }
        for t in task_ids
    }
    notes = ("masks recovered from HAT-CL attention as attention > 0, for trained tasks only",)
    layers = _layers(path, state, {m.replace(".", "/"): m for m in attention})
    norms = _hat_cl_task_norms(path, state, max(len(rows) for rows in attention.values()))
    native = {key: fmt.BACKBONE_PREFIX + norms.native.get(key, key) for key in state}
    return _imported(
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
    return _threshold(path, key, rows[task])


# --- CLArena and hatinspect ------------------------------------------------------------


def _clarena(path: Path, state, extra, task_id=None) -> Imported:
    prefix = fmt.BACKBONE_PREFIX if any(k.startswith(fmt.BACKBONE_PREFIX) for k in state) else ""
    names = _embedded_layers(path, state, prefix)
    newest = _newest_head(path, state)  # CLArena counts tasks from 1; its heads are keyed by them
    task = task_id if task_id is not None else newest if newest is not None else 1
    masks = {task: {n: _threshold(path, key, state[key][0]) for n, key in names.items()}}
    notes = [THRESHOLD_NOTE, _last_task_note("clarena", task)]
    if task_id is None and newest is None:
        notes.append(_unknown_task_note(task))
    layers = _layers(path, state, {n: prefix + n.replace("/", ".") for n in names})
    native = {
        k: k if k.startswith((fmt.BACKBONE_PREFIX, fmt.HEADS_PREFIX)) else fmt.OTHER_PREFIX + k
        for k in state
    }
    if not prefix:  # a bare backbone's state_dict: its tensors are the backbone's
        native = {k: fmt.BACKBONE_PREFIX + k for k in state}
    return _imported(
        path, "clarena", UNKNOWN_BACKBONE, layers, masks, notes, state, native, task_id=task
    )


def _unknown_task_note(task: int) -> str:
    return (
        f"the file does not say which task its embedding belongs to: reported as task {task}"
        " (CLArena counts tasks from 1); pass --task-id N to name it"
    )


def _hatinspect(path: Path, state, extra, given_task: int | None = None) -> Imported:
    names = _embedded_layers(path, state, "")
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
        masks = {task: {n: _threshold(path, key, state[key][0]) for n, key in names.items()}}
        notes = (THRESHOLD_NOTE, _last_task_note("hatinspect", task))
    layers = (
        _rebuilt_layers(path, backbone, dict(config), state)
        if rebuildable
        else _layers(path, state, {n: n.replace("/", ".") for n in names})
    )
    native = {key: fmt.BACKBONE_PREFIX + key for key in state}
    return _imported(
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
        heads=_named_tensors(path, "heads", {} if extra.get("heads") is None else extra["heads"]),
    )


def _check_entry(path: Path, name: str, value, kind: type, what: str) -> None:
    """An entry beside the state_dict is absent, None or of its kind: a tensor or list in
    its place refuses the file rather than leaving the entry unread."""
    if value is not None and not isinstance(value, kind):
        raise CheckpointError(f"{path}: {name!r} must be {what} or None, got {shown(value)}")


def _embedded_layers(path: Path, state, prefix: str) -> dict[str, str]:
    """Layer name -> its embedding key; a layer seen under several prefixes (CLArena's
    blocks keep copies) takes the shortest key, the backbone's own."""
    names: dict[str, str] = {}
    for key in state:
        match = EMBEDDING.match(key)
        if match and key.startswith(prefix):
            best = names.get(match["layer"])
            names[match["layer"]] = key if best is None or len(key) < len(best) else best
    if not names:
        raise CheckpointError(f"{path}: no {prefix}task_embedding_t.<layer>.weight tensors")
    for key in names.values():
        if state[key].dim() != 2 or state[key].shape[0] != 1:
            shape = tuple(state[key].shape)
            raise CheckpointError(f"{path}: {key!r} has shape {shape}, expected (1, units)")
    return names


def _newest_head(path: Path, state) -> int | None:
    tasks = [task_id_in_key(path, key, m["task"]) for key in state if (m := HEAD.match(key))]
    return max(tasks, default=None)


def _last_task_note(source: str, task: int) -> str:
    return (
        f"a {source} state_dict keeps only the last trained task's embedding:"
        f" only task {task}'s mask is recovered, earlier tasks' masks are lost"
    )


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
            name: _binary(path, f"masks[{shown(task)}][{shown(name)}]", m)
            for name, m in mask.items()
        }
    return out


def _rebuilt_layers(path: Path, backbone: str, config: dict, state) -> tuple[LayerInfo, ...]:
    from hatinspect.backbones import build_backbone
    from hatinspect.backbones.structure import structure_only
    from hatinspect.torch_io.save import describe_layers

    _check_config(path, config)
    try:
        with structure_only():  # meta tensors, initialisers skipped
            layers = describe_layers(build_backbone(backbone, config), prefix="")
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"{path}: cannot rebuild {shown(backbone)}: {reason}") from None
    for layer in layers:
        _check_weight(path, state, layer)
    return layers


MAX_MASKS = 2**18  # (task, layer) masks one file may yield: 1,000 tasks of a ResNet-152 fit


def _check_mask_count(path: Path, tasks: int, layers: int) -> None:
    """Refuse, before building them, more masks than any network has (each costs a
    small array: a file of many one-unit embeddings would otherwise cost ~50x its size)."""
    if tasks * layers > MAX_MASKS:
        raise CheckpointError(
            f"{path}: {tasks:,} tasks x {layers:,} layers are more masks than hatinspect"
            f" reads ({MAX_MASKS:,})"
        )


def _check_config(path: Path, config: Mapping) -> None:
    try:
        fmt.check_config(config)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


# --- shared ----------------------------------------------------------------------------


def task_id_in_key(path: Path, key: str, digits: str) -> int:
    """The task id a tensor key carries (``digits`` of it), by the native format's rule
    (``fmt.parse_task_id``); a key with a number no task id has refuses the file."""
    try:
        return fmt.key_task_id(key, digits)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def stored_task_id(path: Path, where: str, value) -> int | None:
    """A task id a file stores as a value (``None`` when it names none); a tensor, list,
    bool or out-of-range number where the id belongs refuses the file."""
    if value is not None and not fmt.is_task_id(value):
        raise CheckpointError(
            f"{path}: {where} must be an integer in 0..{fmt.MAX_TASK_ID} or None,"
            f" got {shown(value)}"
        )
    return value


def _layers(path: Path, state: Mapping[str, Tensor], modules: Mapping[str, str]):
    """LayerInfo for each ``layer name -> module path``, in network order with its data flow."""
    layers = []
    for name, module in modules.items():
        weight_key, bias_key = f"{module}.weight", f"{module}.bias"
        if weight_key not in state:
            raise CheckpointError(f"{path}: layer {name!r} has a mask but no {weight_key!r}")
        shape = tuple(state[weight_key].shape)
        if len(shape) < 2:
            raise CheckpointError(f"{path}: layer {name!r}: {weight_key!r} has shape {shape}")
        bias = bias_key if bias_key in state else None
        layers.append(LayerInfo(name, shape[0], shape, weight_key, bias, None))
    return infer_flow(path, layers)


def _check_weight(path: Path, state, layer: LayerInfo) -> None:
    weight = state.get(layer.weight_key)
    if weight is None or tuple(weight.shape) != layer.weight_shape:
        raise CheckpointError(f"{path}: layer {layer.name!r} does not fit {layer.weight_key!r}")


def _threshold(path: Path, key: str, values: Tensor) -> np.ndarray:
    """A soft mask's binary mask, ``values > 0``; NaN is an error, not a 0."""
    values = values.detach().float()
    if torch.isnan(values).any():
        raise CheckpointError(f"{path}: {key!r} contains NaN")
    return _frozen((values > 0).numpy())


def _binary(path: Path, where: str, values) -> np.ndarray:
    if not isinstance(values, Tensor):
        raise CheckpointError(f"{path}: {where} is {shown(values)}, not a tensor")
    # numpy's comparisons: a thousand masks cost a few torch calls each otherwise
    values = _numpy(values).reshape(-1)
    if not ((values == 0) | (values == 1)).all():
        raise CheckpointError(f"{path}: {where} is not a binary (0/1) mask")
    return _frozen(values)


def _frozen(mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(np.uint8)
    mask.setflags(write=False)
    return mask


def _imported(
    path, source, backbone, layers, masks, notes, state, native, task_norms=None, **more
) -> Imported:
    try:  # what a native file must satisfy, so that convert never refuses an import
        fmt.check_layers(tuple(layers))
        fmt.check_task_ids(list(masks))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    stored_task_id(path, "'task_id'", more.get("task_id"))  # the task being learned
    _check_masks(path, layers, masks)
    _check_layer_tensors(path, layers, state)
    checkpoint = Checkpoint(
        path=str(path),
        backbone=backbone,
        source=source,
        layers=layers,
        task_ids=tuple(sorted(masks)),
        masks=MappingProxyType({t: MappingProxyType(m) for t, m in sorted(masks.items())}),
        metadata=MappingProxyType({}),
        notes=(*notes, *filter(None, [inferred_note(layers)])),
        task_norms=MappingProxyType(dict(task_norms or {})),
    )
    return Imported(checkpoint, state, native, **more)


def _check_layer_tensors(path: Path, layers, state: Mapping[str, Tensor]) -> None:
    """Weights and biases as a native file keeps them: floating point, a bias per unit."""
    for layer in layers:
        expected = {layer.weight_key: layer.weight_shape}
        if layer.bias_key is not None:
            expected[layer.bias_key] = (layer.units,)
        for key, shape in expected.items():
            tensor = state.get(key)
            if tensor is None or tuple(tensor.shape) != shape:
                raise CheckpointError(
                    f"{path}: layer {shown(layer.name)}: {shown(key)} is not of shape {shape}"
                )
            if not tensor.dtype.is_floating_point:
                raise CheckpointError(
                    f"{path}: layer {shown(layer.name)}: {shown(key)} has dtype {tensor.dtype},"
                    " not floating point"
                )


def _check_masks(path: Path, layers, masks) -> None:
    for task, mask in masks.items():
        if set(mask) != {layer.name for layer in layers}:
            raise CheckpointError(f"{path}: task {task}'s masks do not cover exactly the layers")
        for layer in layers:
            if mask[layer.name].shape != (layer.units,):
                raise CheckpointError(
                    f"{path}: task {task}'s mask of {layer.name!r} has {mask[layer.name].size}"
                    f" units, the layer has {layer.units}"
                )


def _numpy(tensor: Tensor) -> np.ndarray:
    """A tensor's values as a numpy array; dtypes numpy lacks (bfloat16, float8) widened
    to float32."""
    tensor = tensor.detach().cpu()
    try:
        return tensor.numpy()
    except TypeError:
        return tensor.float().numpy()


def _refusal(path: Path, exc: Exception) -> str:
    names = _unsafe_globals(path, exc)
    if names:
        return (
            f"it needs {', '.join(names)}, not only tensors and containers; save the weights"
            " with torch.save(model.state_dict(), ...) and inspect that file"
        )
    return f"not a plain tensor checkpoint ({_torch_reason(exc)})"


def _unsafe_globals(path: Path, exc: Exception) -> list[str]:
    found = re.findall(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return sorted(set(found))
    try:  # opcodes only, never executed; a damaged pickle names nothing
        return [name for name in pickle_globals(path.read_bytes()) if name != "<unknown>"]
    except Exception:
        return []


def _torch_reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if "Unsupported" in line or "Trying to load" in line]
    return (detail or lines or [type(exc).__name__])[0][:200]


IMPORTERS: dict[str, Callable[[Path, dict, dict, int | None], Imported]] = {
    "hatinspect": _hatinspect,
    "original-hat": _original_hat,
    "hat-cl": _hat_cl,
    "clarena": _clarena,
}
