"""Rebuilding a backbone (and its heads' state) from a native checkpoint."""

from __future__ import annotations

import os

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from hatinspect.model.errors import CheckpointError
from hatinspect.native import format as fmt
from hatinspect.native.reader import existing_file, read_native, sniff


def load_backbone(path: str | os.PathLike) -> nn.Module:
    """The saved backbone: same class, weights, stored masks and current task id."""
    path = _native(path)
    header, masks = read_native(path)
    backbone = _build(path, header)
    _load_state(path, backbone, tensors(path, fmt.BACKBONE_PREFIX))
    if masks:
        backbone.restore_masks(
            {
                task: {name: torch.tensor(m, dtype=torch.float32) for name, m in mask.items()}
                for task, mask in masks.items()
            }
        )
    if header.task_id is not None:
        backbone.setup_task_id(header.task_id)
    if header.user.get(fmt.RUN_ID_KEY):
        from hatinspect.torch_io.save import set_run_id

        set_run_id(backbone, header.user[fmt.RUN_ID_KEY])  # training goes on in the same run
    return backbone


def load_heads_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """The ``heads`` state_dict saved beside the backbone (empty when none was saved),
    for ``heads.load_state_dict(...)``."""
    return tensors(_native(path), fmt.HEADS_PREFIX)


def tensors(path, prefix: str) -> dict[str, Tensor]:
    """A native file's tensors whose key starts with ``prefix``, the prefix removed."""
    try:
        with safe_open(path, framework="pt") as f:
            keys = [key for key in f.keys() if key.startswith(prefix)]
            return {key[len(prefix) :]: f.get_tensor(key) for key in keys}
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None


def _native(path) -> os.PathLike:
    path = existing_file(path)
    if sniff(path) != "safetensors":
        raise CheckpointError(f"{path}: a PyTorch file; convert it to the native format first")
    return path


def _build(path, header: fmt.Header) -> nn.Module:
    from hatinspect.backbones import build_backbone

    if header.config is None:
        origin = (
            f"converted from {header.source}"
            if header.source != "hatinspect"
            else (f"written from a {header.backbone} that records no constructor arguments")
        )
        raise CheckpointError(
            f"{path}: {origin}, it holds no hatinspect backbone to rebuild"
            " (its masks still read with open_checkpoint)"
        )
    try:
        return build_backbone(header.backbone, header.config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild {header.backbone}: {exc}") from None


def _load_state(path, backbone: nn.Module, state: dict[str, Tensor]) -> None:
    try:
        backbone.load_state_dict(state)
    except RuntimeError as exc:
        summary = " ".join(str(exc).split())
        raise CheckpointError(
            f"{path}: weights do not fit {type(backbone).__name__}: {summary}"
        ) from None
