"""The WSN authors' runs (``ihaeyong/WSN``, ``main_wsn_*.py``): the files one run writes
under one name, ``<prefix>.<part>.npy`` and ``<prefix>.ptmodel``, several runs per folder.

- ``.pertask.npy``: ``np.save`` of ``{task: {"<module>.weight": 0/1 int64 tensor,
  "<module>.bias": tensor or None}}`` (``model.get_masks(task)``): each task's mask, what
  ``SubnetLinear``/``SubnetConv2d`` kept at the end of its training, ``|w_m|`` at or above
  the ``1 - c`` percentile (``c`` the ``SPARSITY`` of the name);
- ``.fullmask.npy``: their union (``consolidated_masks``), whose weights later tasks freeze;
- ``.acc.npy`` (``.test_acc.npy`` in ``main_wsn_omniglot.py``): the accuracy matrix in
  percent; ``.cap.npy``: the share of the weights used after each task; ``.spar.npy``: that
  share per layer;
- ``.ptmodel``: ``torch.save`` of the whole model (its weights), read as placeholders.

Given any of them, the others are looked for beside it, and where
``main_wsn_cifar100_100.py`` puts them: the ``.npy`` files under ``results_reinit/<dir>``,
the model under ``results2/<dir>``. The output heads' masks (``last.<t>``), saved for the
current task only, and biases' masks are not counted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import Tensor

from hatinspect.importers.common import Imported, binary_mask, imported_checkpoint, layers_of
from hatinspect.importers.payload import load_payload
from hatinspect.importers.pickled_modules import (
    attributes,
    class_name,
    saved_model_state,
    submodules,
    with_metadata,
)
from hatinspect.importers.safety.npy_file import read_npy
from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.model.checkpoint import Covers
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.names import HPARAMS_KEY, PROTECTION_KEY
from hatinspect.native import format as fmt

NAME = "wsn"
MODEL = ".ptmodel"
# part -> suffix; the first two are needed, the rest are shown where present
PARTS = {"masks": ".pertask.npy", "model": MODEL, "union": ".fullmask.npy",
         "accuracy": ".acc.npy", "test_accuracy": ".test_acc.npy", "capacity": ".cap.npy",
         "sparsity": ".spar.npy"}  # fmt: skip
OTHER_SUFFIXES = (".intmask.npy", ".comp_ratio.npy", ".tasklist.npy")  # found, not read
NEEDED = ("masks", "model")
# (folder of the .npy files, folder of the model) one script uses, beside each other
SIBLINGS = (("results_reinit", "results2"),)
SPARSITY = re.compile(r"SPARSITY_([0-9]*\.?[0-9]+)")
HEAD = "last."  # the output heads' modules: last.<t>
SAVER = "pmnist.pickle"  # main_wsn_pmnist.py's save_pickle('./results2/pmnist.pickle', ...)
MASK_DTYPES = ("torch.int64", "torch.int32", "torch.uint8", "torch.bool")


@dataclass(frozen=True)
class RunFiles:
    prefix: str
    found: dict[str, Path]  # part -> file


def is_run_file(path: Path) -> bool:
    """A file named as a WSN run's part (or ``main_wsn_pmnist.py``'s ``pmnist.pickle``)."""
    return _prefix(path.name) is not None or path.name == SAVER


def _refuse_saver(path: Path) -> None:
    if path.name == SAVER:
        raise CheckpointError(
            f"{path}: main_wsn_pmnist.py's saver_dict, overwritten by every run and whose"
            " per-task model entries are all the final model's parameters: not read; give the"
            " run's <prefix>.pertask.npy or <prefix>.ptmodel"
        )


def _prefix(name: str) -> str | None:
    for suffix in (*PARTS.values(), *OTHER_SUFFIXES):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def find_run(path: Path) -> RunFiles:
    """The run's parts beside ``path`` (and in the sibling folder), each by its name."""
    _refuse_saver(path)
    prefix = _prefix(path.name)
    folders = [path.parent, *_siblings(path.parent)]
    found = {}
    for part, suffix in PARTS.items():
        for folder in folders:
            candidate = folder / (prefix + suffix)
            if candidate.is_file():
                found[part] = candidate
                break
    missing = [part for part in NEEDED if part not in found]
    if missing:
        where = " or ".join(str(folder) for folder in folders)
        raise CheckpointError(
            f"{path}: the WSN run {prefix!r} has no {prefix + PARTS[missing[0]]} (looked in"
            f" {where})"
        )
    return RunFiles(prefix, found)


def _siblings(folder: Path) -> list[Path]:
    out = []
    for pair in SIBLINGS:
        for mine, other in (pair, pair[::-1]):
            if folder.parent.name == mine:
                out.append(folder.parent.parent / other / folder.name)
    return out


def run_state(path: Path) -> dict[str, Tensor]:
    """The weights of the run ``path`` belongs to: its model's ``state_dict()``."""
    run = find_run(path)
    return saved_model_state(run.found["model"], _model(run.found["model"]))


def _model(path: Path) -> Placeholder:
    model = load_payload(path)
    if not isinstance(model, Placeholder):
        raise CheckpointError(f"{path}: holds a {type(model).__name__}, not a pickled model")
    return model


def detects(state, extra) -> bool:
    return False  # a run is told by its files' names (`is_run_file`), never by a state dict


def read(path: Path, state, extra, task_id=None) -> Imported:
    raise CheckpointError(
        f"{path}: a WSN run is read from its files (<prefix>.pertask.npy beside"
        " <prefix>.ptmodel); give one of them"
    )


def import_run(path: Path, source: str | None, task_id: int | None) -> Imported:
    """The run ``path`` belongs to; an error in another of its files is told as the
    given file's, naming the part (``<given>: <part's name>: ...``)."""
    try:
        return _import_run(path, source, task_id)
    except CheckpointError as exc:
        other, _, rest = str(exc).partition(": ")
        if other == str(path) or not is_run_file(Path(other)):
            raise
        raise CheckpointError(f"{path}: {Path(other).name}: {rest}") from None


def _import_run(path: Path, source: str | None, task_id: int | None) -> Imported:
    if source not in (None, NAME):
        raise CheckpointError(f"{path}: a WSN run's file; source={shown(source)} does not apply")
    if task_id is not None:
        raise CheckpointError(f"{path}: a WSN run stores its tasks' masks; no task id applies")
    run = find_run(path)
    model_path, masks_path = run.found["model"], run.found["masks"]
    model = _model(model_path)
    state = saved_model_state(model_path, model)
    stored = _tasks(masks_path, read_npy(masks_path))
    modules = _modules(masks_path, stored)
    layers = _layers(model_path, state, model, modules)
    masks = {task: {layer.name: _mask(masks_path, task, layer, per[layer.weight_key])
                    for layer in layers} for task, per in stored.items()}  # fmt: skip
    keep = _keep(run.prefix)
    rule = _rule_note(keep, _module_sparsity(model_path, model, modules))
    notes = [rule, *_uncounted(stored), *_union_note(run, masks, layers)]
    metadata = {fmt.ALGORITHM_KEY: "wsn", PROTECTION_KEY: "hard", "wsn.run": run.prefix,
                HPARAMS_KEY: json.dumps({} if keep is None else {"sparsity": keep})}  # fmt: skip
    notes += _shown_parts(run, len(masks), metadata)
    absent = [PARTS[p] for p in PARTS if p not in run.found and p != "test_accuracy"]
    if absent:
        notes.append(f"not beside it: {', '.join(run.prefix + s for s in absent)}")
    native = {key: fmt.OTHER_PREFIX + key for key in state}
    imported = imported_checkpoint(
        masks_path, NAME, class_name(model), layers, masks, notes, state, native,
        covers=Covers.PARAMETERS,
    )  # fmt: skip
    return with_metadata(imported, metadata)


def _tasks(path: Path, stored) -> dict[int, Mapping]:
    if not isinstance(stored, Mapping) or not stored:
        raise CheckpointError(f"{path}: holds {shown(stored)}, not a mapping of tasks' masks")
    for task, masks in stored.items():
        if not fmt.is_task_id(task) or not isinstance(masks, Mapping):
            raise CheckpointError(f"{path}: task {shown(task)} is not a task id with its masks")
    return dict(sorted(stored.items()))


def _modules(path: Path, stored: dict[int, Mapping]) -> list[str]:
    """The masked modules every task names (``<module>.weight``), heads aside."""
    names = None
    for task, masks in stored.items():
        mine = [k.removesuffix(".weight") for k in masks if _masked_weight(k)]
        if names is not None and mine != names:
            raise CheckpointError(f"{path}: task {task}'s masks name other layers than task 0's")
        names = mine
    if not names or not all(fmt.text(n) and "/" not in n for n in names):
        raise CheckpointError(f"{path}: no masked layers named <module>.weight")
    return names


def _masked_weight(key) -> bool:
    return isinstance(key, str) and key.endswith(".weight") and not key.startswith(HEAD)


def _mask(path: Path, task: int, layer, tensor) -> np.ndarray:
    where = f"task {task}'s {layer.weight_key}"
    if not isinstance(tensor, Tensor) or tuple(tensor.shape) != layer.weight_shape:
        raise CheckpointError(f"{path}: {where} is not a tensor of shape {layer.weight_shape}")
    if str(tensor.dtype) not in MASK_DTYPES:
        raise CheckpointError(f"{path}: {where} is {tensor.dtype}, not a 0/1 integer mask")
    return binary_mask(path, where, tensor).reshape(layer.weight_shape)


def _keep(prefix: str) -> float | None:
    match = SPARSITY.search(prefix)
    return float(match[1]) if match and 0 < float(match[1]) <= 1 else None


def _layers(path: Path, state, model: Placeholder, modules: list[str]):
    """The masked layers with their data flow. ``SubnetBasicBlock`` (networks/resnet18.py)
    names its projection shortcut ``conv3``: it reads the block input, as a ``shortcut`` does,
    so the flow is inferred under that name and the layer keeps its own."""
    names = {m.replace(".", "/"): m for m in modules}
    alias = {name: name.rpartition("/")[0] + "/shortcut" for name, m in names.items()
             if m.endswith(".conv3") and _class_of(path, model, m.rpartition(".")[0])
             == "SubnetBasicBlock"}  # fmt: skip
    layers = layers_of(path, state, {alias.get(n, n): m for n, m in names.items()})
    back = {short: name for name, short in alias.items()}
    return tuple(replace(layer, name=back.get(layer.name, layer.name),
                         preceding=back.get(layer.preceding, layer.preceding))
                 for layer in layers)  # fmt: skip


def _submodule(path: Path, model: Placeholder, dotted: str) -> Placeholder | None:
    obj = model
    for name in dotted.split(".") if dotted else ():
        obj = submodules(path, obj).get(name) if isinstance(obj, Placeholder) else None
    return obj if isinstance(obj, Placeholder) else None


def _class_of(path: Path, model: Placeholder, dotted: str) -> str | None:
    obj = _submodule(path, model, dotted)
    return None if obj is None else class_name(obj)


def _module_sparsity(path: Path, model: Placeholder, modules: list[str]) -> set:
    """The ``sparsity`` attribute of each masked module (``1 - c``: the share dropped)."""
    found = set()
    for module in modules:
        obj = _submodule(path, model, module)
        value = None if obj is None else attributes(path, obj).get("sparsity")
        found.add(value if type(value) in (int, float) else None)
    return found


def _rule_note(keep: float | None, dropped: set) -> str:
    quantile = "a percentile" if keep is None else f"their {1 - keep:g} quantile"
    named = "" if keep is None else f" (SPARSITY {keep:g} in the run's name"
    if keep is not None and all(d is not None and math.isclose(d, 1 - keep) for d in dropped):
        named += f"; each layer's sparsity {1 - keep:g})"
    elif keep is not None:
        stored = dropped - {None}
        named += "; the layers' sparsity attributes say " if stored else ")"
        named += ", ".join(sorted(f"{d:g}" for d in stored)) + ")" * bool(stored)
    return (
        "WSN masks weights: each task's mask is the stored 0/1 tensor (.pertask.npy); the"
        f" authors keep the scores |w_m| at or above {quantile}{named}"
    )


def _uncounted(stored: dict[int, Mapping]) -> list[str]:
    heads = any(isinstance(k, str) and k.startswith(HEAD) for m in stored.values() for k in m)
    biases = any(isinstance(k, str) and k.endswith(".bias") and v is not None
                 for m in stored.values() for k, v in m.items())  # fmt: skip
    return [what + "' masks are not counted" for what, found in
            (("the output heads (last.<t>)", heads), ("biases", biases)) if found]  # fmt: skip


def _union_note(run: RunFiles, masks, layers) -> list[str]:
    """A note where the stored union (``.fullmask.npy``) is not that of the tasks' masks."""
    path = run.found.get("union")
    if path is None:
        return []
    stored = read_npy(path)
    differ = []
    for layer in layers:
        union = np.zeros(layer.weight_shape, np.uint8)
        for mask in masks.values():
            union |= mask[layer.name]
        tensor = stored.get(layer.weight_key) if isinstance(stored, Mapping) else None
        values = tensor.numpy() if isinstance(tensor, Tensor) else None
        if values is None or values.shape != union.shape or not (values == union).all():
            differ.append(layer.name)
    if not differ:
        return []
    return [f"{path.name} differs from the union of the tasks' masks in {', '.join(differ)};"
            " the per-task masks are used"]  # fmt: skip


def _shown_parts(run: RunFiles, tasks: int, metadata: dict) -> list[str]:
    """The accuracy matrix (as shares, for `compare`), capacity and sparsity, into
    ``metadata``; a note for a part that does not fit the run's tasks."""
    notes = []
    part = "accuracy" if "accuracy" in run.found else "test_accuracy"
    if part in run.found:
        acc = read_npy(run.found[part])
        if isinstance(acc, np.ndarray) and acc.shape == (tasks, tasks) and np.isfinite(acc).all():
            rows = [[float(a) / 100 for a in acc[t, : t + 1]] for t in range(tasks)]
            metadata["accuracy"] = json.dumps(rows)
            notes.append(f"accuracy from {run.found[part].name} (percent, shown as shares)")
        else:
            notes.append(f"{run.found[part].name} is not a {tasks} x {tasks} matrix: not shown")
    if "capacity" in run.found:
        cap = read_npy(run.found["capacity"])
        if isinstance(cap, np.ndarray) and cap.shape == (tasks,) and cap.dtype.kind == "f":
            metadata["wsn.capacity"] = json.dumps([round(float(c), 6) for c in cap])
        else:
            notes.append(f"{run.found['capacity'].name} is not one share per task: not shown")
    if "sparsity" in run.found:
        metadata["wsn.sparsity"] = _sparsity(run.found["sparsity"])
    return notes


def _sparsity(path: Path) -> str:
    """``.spar.npy``: ``{task: {"<module>.weight": share used}}``, as JSON."""
    stored = read_npy(path)
    out = {}
    for task, layers in stored.items() if isinstance(stored, Mapping) else ():
        if fmt.is_task_id(task) and isinstance(layers, Mapping):
            out[str(task)] = {str(k): round(float(v), 6) for k, v in layers.items()
                              if isinstance(v, Tensor) and v.numel() == 1}  # fmt: skip
    return json.dumps(out)
