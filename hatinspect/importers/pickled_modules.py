"""Whole pickled modules, walked from the unpickler's placeholders and never run: their
attributes, submodules, ``state_dict()`` and the names CLArena's backbones keep. What the
layouts of saved models (``saved_models``, ``clarena_wsn``) share."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.native import format as fmt

# A whole pickled model is walked, never run; these bound the walk's time and stack on a
# crafted object graph (a ResNet-152 with its heads has ~1,000 modules, nested < 10 deep).
MAX_DEPTH = 64  # modules inside modules
MAX_MODULES = 100_000  # modules visited in all


def saved_model_state(path: Path, obj: Placeholder) -> dict[str, Tensor]:
    """The ``state_dict()`` of a pickled module: its and its submodules' parameters and
    buffers under dotted names."""
    state: dict[str, Tensor] = {}
    collect(path, obj, "", state, depth=0, budget=[MAX_MODULES])
    return state


def modules_or_empty(obj) -> dict:
    state = obj.__dict__.get("state") if isinstance(obj, Placeholder) else None
    modules = state.get("_modules") if isinstance(state, Mapping) else None
    return dict(modules) if isinstance(modules, Mapping) else {}


def attributes(path: Path, obj: Placeholder) -> dict:
    state = obj.__dict__.get("state")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: the pickled {obj.global_name} holds no attributes")
    return dict(state)


def submodules(path: Path, obj: Placeholder) -> dict:
    modules = attributes(path, obj).get("_modules", {})
    if isinstance(modules, Placeholder):  # an OrderedDict subclass the file names
        modules = modules.__dict__["items"]
    if not isinstance(modules, Mapping):
        raise CheckpointError(f"{path}: the pickled {obj.global_name} has malformed submodules")
    return dict(modules)


def collect(path: Path, obj: Placeholder, prefix: str, state: dict, depth: int, budget) -> None:
    budget[0] -= 1  # shared submodules are walked once per name, as state_dict() does
    if depth > MAX_DEPTH or budget[0] < 0:
        raise CheckpointError(
            f"{path}: modules nested over {MAX_DEPTH} deep or over {MAX_MODULES} in all"
        )
    attrs = attributes(path, obj)
    transient = attrs.get("_non_persistent_buffers_set") or set()  # not in a state_dict
    if not isinstance(transient, set | frozenset | list | tuple):
        raise CheckpointError(f"{path}: {prefix or 'the module'}: malformed buffer names")
    for group in ("_parameters", "_buffers"):
        tensors = attrs.get(group) or {}
        if not isinstance(tensors, Mapping):
            raise CheckpointError(f"{path}: {prefix or 'the module'}: malformed {group}")
        for name, tensor in tensors.items():
            if not fmt.text(name):
                raise CheckpointError(
                    f"{path}: {prefix or 'the module'}: a tensor named {shown(name)}"
                )
            tensor = tensor_value(tensor)
            if tensor is not None and name not in transient:
                state[prefix + name] = tensor.detach()
    for name, child in submodules(path, obj).items():
        if not fmt.text(name):
            raise CheckpointError(f"{path}: {prefix or 'the module'}: a module named {shown(name)}")
        if isinstance(child, Placeholder):
            collect(path, child, f"{prefix}{name}.", state, depth + 1, budget)


def modules_in_order(path: Path, obj: Placeholder) -> list[tuple[str, Placeholder]]:
    """``(dotted name, module)`` as ``obj.modules()`` / ``named_modules()`` yield them: the
    module itself first (name ""), then depth first in registration order, each object once
    (a module registered twice keeps its first place) and ``None`` entries skipped."""
    out: list[tuple[str, Placeholder]] = []
    seen: set[int] = set()
    pending = [("", obj, 0)]
    while pending:
        name, module, depth = pending.pop()
        if id(module) in seen:
            continue
        if depth > MAX_DEPTH or len(out) >= MAX_MODULES:
            raise CheckpointError(
                f"{path}: modules nested over {MAX_DEPTH} deep or over {MAX_MODULES} in all"
            )
        seen.add(id(module))
        out.append((name, module))
        children = []
        for child_name, child in submodules(path, module).items():
            if not fmt.text(child_name):
                raise CheckpointError(f"{path}: {name or 'the module'}: a module named"
                                      f" {shown(child_name)}")  # fmt: skip
            if isinstance(child, Placeholder):
                children.append((f"{name}.{child_name}" if name else child_name, child, depth + 1))
            elif child is not None:
                raise CheckpointError(
                    f"{path}: {name or 'the module'}.{child_name} is not a module"
                )
        pending.extend(reversed(children))
    return out


# torch < 0.4 pickled a Parameter or Variable as the class called on its data (then its
# state: requires_grad, volatile, hooks): a placeholder here, its data the first argument
OLD_TENSORS = frozenset({"torch.nn.parameter.Parameter", "torch.autograd.variable.Variable"})


def tensor_value(value) -> Tensor | None:
    """The tensor ``value`` is or, pickled by torch < 0.4, wraps; None for anything else."""
    if isinstance(value, Placeholder) and value.global_name in OLD_TENSORS:
        args = value.__dict__.get("args")
        value = args[0] if isinstance(args, tuple) and len(args) == 1 else None
    return value if isinstance(value, Tensor) else None


def layer_names(path: Path, attrs: dict) -> list[str]:
    names = attrs.get("weighted_layer_names")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: the backbone lists no weighted_layer_names")
    if len(set(names)) != len(names):
        raise CheckpointError(f"{path}: the backbone's weighted_layer_names repeat a layer")
    return names


def task_key(path: Path, key) -> int:
    """A ``backbone.masks`` key: a task id or its string, as a key spells it."""
    task = key if fmt.is_task_id(key) else fmt.parse_task_id(key) if type(key) is str else None
    if task is None:
        raise CheckpointError(f"{path}: backbone.masks has a task key {shown(key)}, not a task id")
    return task


def infer_heads(path: Path, obj: Placeholder) -> dict[str, list[int]]:
    heads = submodules(path, obj).get("heads")
    if not isinstance(heads, Placeholder):
        return {}
    shapes = {}  # CLArena's HeadsTIL keeps task t's head at heads.<t>
    for key, tensor in saved_model_state(path, heads).items():
        task, _, rest = key.removeprefix("heads.").partition(".")
        if key.startswith("heads.") and rest == "weight":
            shapes[task] = list(tensor.shape)
    return shapes


def with_metadata(imported, metadata: dict[str, str]):
    from dataclasses import replace
    from types import MappingProxyType

    checkpoint = replace(imported.checkpoint, metadata=MappingProxyType(metadata))
    return replace(imported, checkpoint=checkpoint)


def class_name(obj: Placeholder) -> str:
    return obj.global_name.rpartition(".")[2]
