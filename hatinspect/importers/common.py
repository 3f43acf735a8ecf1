"""What the layout modules share: the imported form, the checks every layout's tensors and
masks pass, task ids in keys, and the layers a state dict's weights describe."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from hatinspect.importers.flow import infer_flow, inferred_note
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.native import format as fmt

UNKNOWN_BACKBONE = "unknown"
THRESHOLD_NOTE = "masks recovered from task embeddings as e > 0 (= sigmoid(s*e) > 0.5, any s > 0)"


EMBEDDING = re.compile(r"^(?:.+\.)?task_embedding_t\.(?P<layer>[^.]+)\.weight$")


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


def embedded_layers(path: Path, state, prefix: str) -> dict[str, str]:
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


def newest_head(path: Path, state) -> int | None:
    tasks = [task_id_in_key(path, key, m["task"]) for key in state if (m := HEAD.match(key))]
    return max(tasks, default=None)


def last_task_note(task: int) -> str:
    return (
        "a state dict holds only the current task's embedding (CLArena's and hatinspect's"
        f" backbones alike): task {task}'s mask is recovered, earlier tasks' are not in the"
        " file; hatinspect.save_checkpoint keeps every task's"
    )


# (task, layer) masks one file may yield: each becomes an array and a header entry, so a
# few bytes claiming millions of tasks would exhaust memory; 1,000 tasks of a ResNet-152 fit.
MAX_MASKS = 2**18


def check_mask_count(path: Path, tasks: int, layers: int) -> None:
    """Refuse, before building them, more masks than any network has (each costs a
    small array: a file of many one-unit embeddings would otherwise cost ~50x its size)."""
    if tasks * layers > MAX_MASKS:
        raise CheckpointError(
            f"{path}: {tasks:,} tasks x {layers:,} layers are more masks than hatinspect"
            f" reads ({MAX_MASKS:,})"
        )


def check_config(path: Path, config: Mapping) -> None:
    try:
        fmt.check_config(config)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


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


def layers_of(path: Path, state: Mapping[str, Tensor], modules: Mapping[str, str]):
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


def check_weight(path: Path, state, layer: LayerInfo) -> None:
    weight = state.get(layer.weight_key)
    if weight is None or tuple(weight.shape) != layer.weight_shape:
        raise CheckpointError(f"{path}: layer {layer.name!r} does not fit {layer.weight_key!r}")


def threshold(path: Path, key: str, values: Tensor) -> np.ndarray:
    """A soft mask's binary mask, ``values > 0``; NaN is an error, not a 0."""
    values = values.detach().float()
    if torch.isnan(values).any():
        raise CheckpointError(f"{path}: {key!r} contains NaN")
    return frozen((values > 0).numpy())


def binary_mask(path: Path, where: str, values) -> np.ndarray:
    if not isinstance(values, Tensor):
        raise CheckpointError(f"{path}: {where} is {shown(values)}, not a tensor")
    # numpy's comparisons: a thousand masks cost a few torch calls each otherwise
    values = numpy_of(values).reshape(-1)
    if not ((values == 0) | (values == 1)).all():
        raise CheckpointError(f"{path}: {where} is not a binary (0/1) mask")
    return frozen(values)


def frozen(mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(np.uint8)
    mask.setflags(write=False)
    return mask


def imported_checkpoint(
    path,
    source,
    backbone,
    layers,
    masks,
    notes,
    state,
    native,
    task_norms=None,
    covers: Covers = Covers.UNITS,
    weights: bool = True,  # False: a file of masks only (the layers' shapes, no tensors)
    **more,
) -> Imported:
    try:  # what a native file must satisfy, so that convert never refuses an import
        fmt.check_layers(tuple(layers))
        fmt.check_task_ids(list(masks))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    stored_task_id(path, "'task_id'", more.get("task_id"))  # the task being learned
    check_masks(path, layers, masks, covers)
    if weights:
        check_layer_tensors(path, layers, state)
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
        covers=covers,
    )
    return Imported(checkpoint, state, native, **more)


def check_layer_tensors(path: Path, layers, state: Mapping[str, Tensor]) -> None:
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


def check_masks(path: Path, layers, masks, covers: Covers = Covers.UNITS) -> None:
    for task, mask in masks.items():
        if set(mask) != {layer.name for layer in layers}:
            raise CheckpointError(f"{path}: task {task}'s masks do not cover exactly the layers")
        for layer in layers:
            if mask[layer.name].shape != layer.mask_shape(covers):
                raise CheckpointError(
                    f"{path}: task {task}'s mask of {layer.name!r} has shape"
                    f" {mask[layer.name].shape}, the layer's {covers} {layer.mask_shape(covers)}"
                )


def numpy_of(tensor: Tensor) -> np.ndarray:
    """A tensor's values as a numpy array; dtypes numpy lacks (bfloat16, float8) widened
    to float32."""
    tensor = tensor.detach().cpu()
    try:
        return tensor.numpy()
    except TypeError:
        return tensor.float().numpy()
