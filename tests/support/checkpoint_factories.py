"""Checkpoint files for tests: native ones from plain numpy, foreign ones in each layout.

HAT-CL's and CLArena's files are the ones their own code wrote (``fixtures/peers``, made
by ``make_fixtures.py``), each with the producer's ground truth beside it as JSON. The
original HAT layout, whose code is not installable, is built here: it starts from chosen
binary masks and writes embeddings whose sign encodes them, so a test knows the masks a
reader must recover without computing them with the code under test.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from hatinspect.model.checkpoint import LayerInfo
from hatinspect.native import format as fmt
from support.paths import PEERS

Masks = dict[int, dict[str, np.ndarray]]  # task id -> layer name -> (units,) uint8


def peer_truth(name: str) -> dict:
    """The producer's ground truth for ``fixtures/peers/<name>``."""
    return json.loads((PEERS / f"{name}.json").read_text())


def truth_masks(truth: dict, key: str = "masks") -> Masks:
    return {
        int(task): {layer: np.array(m, dtype=np.uint8) for layer, m in by_layer.items()}
        for task, by_layer in truth[key].items()
    }


def linear_layers(widths=(6, 5, 4, 3), prefix="backbone.fc") -> tuple[LayerInfo, ...]:
    """An MLP's layers ``fc/0..``: widths[0] inputs, then one layer per further width."""
    return tuple(
        LayerInfo(
            name=f"fc/{i}",
            units=out,
            weight_shape=(out, inp),
            weight_key=f"{prefix}.{i}.weight",
            bias_key=f"{prefix}.{i}.bias",
            preceding=f"fc/{i - 1}" if i else None,
        )
        for i, (inp, out) in enumerate(itertools.pairwise(widths))
    )


def binary_masks(units: dict[str, int], tasks, seed=0, density=0.5) -> Masks:
    rng = np.random.default_rng(seed)
    return {
        task: {name: (rng.random(n) < density).astype(np.uint8) for name, n in units.items()}
        for task in tasks
    }


def random_weights(layers, seed=0) -> dict[str, np.ndarray]:
    """Random float32 weights and biases for ``layers``, under their keys."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in layers:
        tensors[layer.weight_key] = rng.standard_normal(layer.weight_shape).astype(np.float32)
        if layer.bias_key:
            tensors[layer.bias_key] = rng.standard_normal(layer.units).astype(np.float32)
    return tensors


def native_tensors(layers, masks: Masks, seed=0) -> dict[str, np.ndarray]:
    """Random weights and biases for ``layers`` plus ``masks`` under their native keys."""
    tensors = random_weights(layers, seed)
    for task, by_layer in masks.items():
        for name, mask in by_layer.items():
            tensors[fmt.mask_key(task, name)] = np.asarray(mask, dtype=np.uint8)
    return tensors


def native_metadata(layers, masks: Masks, **user) -> dict[str, str]:
    header = fmt.Header(
        backbone="HATMaskMLP",
        config=None,
        layers=tuple(layers),
        task_ids=tuple(masks),
        user=fmt.encode_user(user),
    )
    return fmt.encode_header(header)


def write_native(path, layers=None, masks=None, *, tensors=None, metadata=None) -> Path:
    """A native file from numpy; ``tensors``/``metadata`` replace the consistent defaults
    (to build broken files)."""
    layers = linear_layers() if layers is None else layers
    if masks is None:
        masks = binary_masks({layer.name: layer.units for layer in layers}, (0, 1, 2))
    tensors = native_tensors(layers, masks) if tensors is None else tensors
    metadata = native_metadata(layers, masks) if metadata is None else metadata
    save_file(tensors, str(path), metadata=metadata)
    return Path(path)


# --- foreign layouts (torch) -----------------------------------------------------------


def signed_embedding(masks: list[np.ndarray], seed=0):
    """Rows whose sign is the mask: ``row > 0`` exactly where ``mask == 1``."""
    import torch

    rng = np.random.default_rng(seed)
    rows = [np.where(m == 1, 1.0, -1.0) * (0.1 + rng.random(m.size)) for m in masks]
    return torch.tensor(np.stack(rows), dtype=torch.float32)


def original_hat_state(n_tasks=3, seed=0) -> tuple[dict, Masks]:
    """Serra et al.'s AlexNet-like ``Net``: convs ``c1``, ``c2``, linears ``fc1``, ``fc2``,
    embeddings ``e<layer>`` (tasks, units), heads ``last.<t>``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    shapes = {"c1": (4, 3, 3, 3), "c2": (5, 4, 2, 2), "fc1": (6, 5 * 2 * 2), "fc2": (3, 6)}
    masks = binary_masks({n: s[0] for n, s in shapes.items()}, range(n_tasks), seed)
    state = {}
    for name, shape in shapes.items():
        state[f"{name}.weight"] = torch.randn(shape, generator=g)
        state[f"{name}.bias"] = torch.randn(shape[0], generator=g)
    for t in range(n_tasks):
        state[f"last.{t}.weight"] = torch.randn(2, 3, generator=g)
    for name in shapes:
        rows = [masks[t][name] for t in range(n_tasks)]
        state[f"e{name}.weight"] = signed_embedding(rows, seed)
    return state, masks


def hat_mlp(tasks=(0, 1, 2), seed=0):
    """A small ``HATMaskMLP`` with a stored mask per task (random embeddings)."""
    import torch

    from hatinspect.backbones import HATMaskMLP

    torch.manual_seed(seed)
    backbone = HATMaskMLP(6, [8, 7], 5, "sigmoid")
    for task in tasks:
        backbone.setup_task_id(task)
        backbone.initialise_task_embedding("N01")
        backbone.store_mask()
    return backbone


def stored_masks(backbone) -> Masks:
    return {
        task: {name: m.numpy().astype(np.uint8) for name, m in mask.items()}
        for task, mask in backbone.masks.items()
    }


def torch_save(path, obj) -> Path:
    import torch

    torch.save(obj, path)
    return Path(path)
