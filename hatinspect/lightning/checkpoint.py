"""``HATMaskCheckpoint``: a Lightning callback that writes a native checkpoint per task.

When a task's mask is stored. CLArena's HAT and AdaHAT (and ``HATModule``) store the
task's mask in the module's own ``on_train_end``. Lightning calls the callbacks'
``on_train_end`` *before* the module's, so a callback cannot use it; the first callback
hook after it is ``on_fit_end`` (fit loop end -> strategy teardown -> ``on_fit_end``).
A fit that spans tasks stores masks at epoch ends: as a ``Checkpoint`` callback this one
runs its ``on_train_epoch_end`` after the module's (Lightning's rule for monitoring
callbacks). Either way a file is written for every task whose mask newly appears.

Under several processes every rank computes a digest of its stored masks; the digests
are gathered, and differing masks stop the run instead of writing one rank's view.
Global rank zero alone writes, through ``save_checkpoint`` (temporary file in the same
folder, read back, ``os.replace``: a crash or Ctrl-C leaves earlier files intact), and
every rank waits for rank zero's outcome before going on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import lightning
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch import Tensor, nn

from hatinspect.core.format import SUFFIX, encode_user
from hatinspect.storage.save import save_checkpoint

# what the callback uses of a backbone: hatinspect's HATMaskBackbone and CLArena's have it
HAT_BACKBONE_API = (
    "masks",
    "task_embedding_t",
    "weighted_layer_names",
    "get_layer_by_name",
    "preceding_layer_name",
)
# module attributes recorded as hyper-parameters when present (CLArena's names and ours)
HYPERPARAMETER_NAMES = (
    "s_max",
    "clamp_threshold",
    "mask_sparsity_reg_factor",
    "mask_sparsity_reg_mode",
    "task_embedding_init_mode",
    "alpha",
    "epsilon",
    "adjustment_mode",
    "adjustment_intensity",
    "sparsity_factor",
    "embedding_init",
    "lr",
)


class HATMaskCheckpoint(Checkpoint):
    """Write ``dirpath/<filename>.safetensors`` after each task: that task's mask and every
    earlier one, the backbone's weights, the module's ``heads`` when it has them, and run
    metadata (algorithm, hyper-parameters, Lightning version, world size) plus ``metadata``.

    ``filename`` holds ``{task}``, the id of the task just trained.
    """

    def __init__(
        self,
        dirpath: str | os.PathLike,
        filename: str = "after-task-{task}",
        metadata: Mapping | None = None,
    ) -> None:
        super().__init__()
        if "{task}" not in filename:
            raise ValueError(f"filename must contain {{task}}, got {filename!r}")
        encode_user(metadata)  # refuse what cannot be stored now, not after the first task
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.metadata = dict(metadata or {})
        self.paths: dict[int, Path] = {}  # task id -> the file written when it appeared

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            hat_backbone(pl_module)
            if trainer.is_global_zero:
                self.dirpath.mkdir(parents=True, exist_ok=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._write_new_task(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write_new_task(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"paths": {task: str(path) for task, path in self.paths.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.paths = {int(task): Path(path) for task, path in state_dict["paths"].items()}

    def _write_new_task(self, trainer, pl_module) -> None:
        backbone = hat_backbone(pl_module)
        masks = stored_masks(backbone)
        new = sorted(set(masks) - set(self.paths))
        if not new:
            return
        digests = gather_digests(trainer, masks)
        if len(set(digests)) > 1:
            raise RuntimeError(f"the processes' stored masks differ (digests {digests})")
        path = self.dirpath / f"{self.filename.format(task=new[-1])}{SUFFIX}"
        error = None
        if trainer.is_global_zero:
            try:
                self._save(path, trainer, pl_module, backbone, digests)
            except Exception as exc:  # every rank must hear of it, not wait for ever
                error = exc
        # the barrier: every rank waits here until rank zero's file is complete (or failed)
        outcome = trainer.strategy.broadcast(None if error is None else str(error), src=0)
        if error is not None:
            raise error
        if outcome is not None:
            raise RuntimeError(f"global rank zero could not write {path}: {outcome}")
        for task in new:
            self.paths[task] = path

    def _save(self, path, trainer, pl_module, backbone, digests) -> None:
        heads = getattr(pl_module, "heads", None)
        metadata = {
            "algorithm": algorithm_name(pl_module),
            "hyperparameters": hyperparameters(pl_module),
            "lightning_version": lightning.__version__,
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "mask_digests": digests,  # sha256 of the stored masks, one per process
            **self.metadata,
        }
        save_checkpoint(
            path,
            backbone,
            heads=heads if isinstance(heads, nn.Module) else None,
            metadata=metadata,
        )


def hat_backbone(pl_module) -> nn.Module:
    backbone = getattr(pl_module, "backbone", None)
    missing = [name for name in HAT_BACKBONE_API if not hasattr(backbone, name)]
    if backbone is None or missing:
        raise TypeError(
            f"HATMaskCheckpoint needs {type(pl_module).__name__}.backbone to be a HAT backbone "
            f"(with {', '.join(HAT_BACKBONE_API)}); it lacks {', '.join(missing)}"
        )
    return backbone


def stored_masks(backbone) -> dict[int, dict[str, Tensor]]:
    """The backbone's stored masks with integer task ids (CLArena keys them "1", "2", ...)."""
    masks = {}
    for task, mask in backbone.masks.items():
        if not str(task).isdigit():
            raise ValueError(f"a stored mask's task id must be an integer, got {task!r}")
        masks[int(task)] = {layer: torch.as_tensor(m).detach() for layer, m in mask.items()}
    return masks


def gather_digests(trainer, masks: Mapping[int, Mapping[str, Tensor]]) -> list[str]:
    """One sha256 of the stored masks per process, gathered from every process."""
    digest = hashlib.sha256()
    for task in sorted(masks):
        for layer in sorted(masks[task]):
            digest.update(f"{task}.{layer}".encode())
            digest.update(masks[task][layer].cpu().reshape(-1).to(torch.uint8).numpy().tobytes())
    local = torch.tensor(list(digest.digest()), device=trainer.strategy.root_device)
    gathered = trainer.strategy.all_gather(local).reshape(-1, local.numel())  # (processes, 32)
    return [bytes(row.tolist()).hex() for row in gathered.cpu()]


def algorithm_name(pl_module) -> str:
    name = getattr(pl_module, "algorithm", None)
    return name if isinstance(name, str) else type(pl_module).__name__


def hyperparameters(pl_module) -> dict:
    """The module's saved hyper-parameters and known HAT attributes that are JSON values."""
    found = dict(getattr(pl_module, "hparams", {}) or {})
    for name in HYPERPARAMETER_NAMES:
        if name not in found and hasattr(pl_module, name):
            found[name] = getattr(pl_module, name)
    return {key: value for key, value in found.items() if _is_json(value)}


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
