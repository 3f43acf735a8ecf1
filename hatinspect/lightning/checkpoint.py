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

Which masks are new. The masks stored when a fit starts are not: a callback created per
fit (CLArena's way) writes only the task trained in its own fit. A task is new when its
mask appears or changes. An existing file is never replaced silently: one this fit would
write with other content is refused unless ``overwrite=True`` (one from a resumed run,
holding the same run's very tensors, is kept as it is).

Resuming from a Lightning ``.ckpt``: the callback's ``state_dict`` holds the files it
wrote (with a sha256 of each), the masks it had accounted for, the run id and the
module's stored masks when the ``.ckpt`` was saved. A resumed fit whose module does not
hold those same masks again is stopped before it writes anything (``HATModule`` restores
its own; a CLArena module must restore its masks itself).
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
from safetensors import safe_open
from torch import Tensor, nn

from hatinspect.checkpoints import open_checkpoint
from hatinspect.lightning.progress import writes_shown
from hatinspect.model.errors import CheckpointError
from hatinspect.model.progress import reading
from hatinspect.native.format import RUN_ID_KEY, SUFFIX, encode_user
from hatinspect.torch_io.save import checkpoint_tensors, run_id, save_checkpoint, set_run_id

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

    ``filename`` holds ``{task}``, the id of the task just trained. Only tasks whose mask is
    stored during the fit the callback watches are written, so one callback for all tasks
    and a new one per ``Trainer`` write the same files. ``overwrite=False``: a task's file
    that exists already with other content (the task trained again, or a folder of an
    earlier run) stops the run with an error naming it; ``overwrite=True`` replaces it.

    ``progress``: a bar on stderr of each file's writing (the tensors copied to the CPU,
    the file written, its bytes read back to check it) once it has lasted half a second;
    None: when stderr is a terminal, as Lightning draws its own; False: never; True:
    always (off a terminal, one plain line per file once written).
    """

    def __init__(
        self,
        dirpath: str | os.PathLike,
        filename: str = "after-task-{task}",
        metadata: Mapping | None = None,
        overwrite: bool = False,
        progress: bool | None = None,
    ) -> None:
        super().__init__()
        if "{task}" not in filename:
            raise ValueError(f"filename must contain {{task}}, got {filename!r}")
        encode_user(metadata)  # refuse what cannot be stored now, not after the first task
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.metadata = dict(metadata or {})
        self.overwrite, self.progress = overwrite, progress
        self.paths: dict[int, Path] = {}  # task id -> the file written when it appeared
        self.file_digests: dict[int, str] = {}  # task id -> sha256 of that file
        # task id -> digest of its mask, for every mask already written or there at fit start
        self.accounted: dict[int, str] = {}
        self.run_id: str | None = None
        self._resumed: dict | None = None  # a .ckpt's state, checked once the module's is back
        self._written_in_fit: set[int] = set()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=str(self.dirpath), filename=self.filename)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            hat_backbone(pl_module)
            if trainer.is_global_zero:
                self.dirpath.mkdir(parents=True, exist_ok=True)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._written_in_fit = set()
        if self._resumed is None:  # a resumed fit accounts as its .ckpt says instead
            backbone = hat_backbone(pl_module)
            self.accounted = task_digests(stored_masks(backbone))
            self.run_id = run_id(backbone)

    def on_train_start(self, trainer, pl_module) -> None:
        # a resumed fit writes here what its .ckpt held but had not written yet
        self._write_new_task(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._write_new_task(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        # the fit's own task counts as new even when it came out with the mask it had before
        # the fit: its file must then hold the weights this fit trained (or be refused)
        self._write_new_task(trainer, pl_module, trained=fit_task(pl_module))

    def state_dict(self) -> dict:
        return {
            "paths": {task: str(path) for task, path in self.paths.items()},
            "file_digests": dict(self.file_digests),
            "accounted": dict(self.accounted),
            "run_id": self.run_id,
        }

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # the module's masks as the .ckpt holds them: a resumed fit must hold them again
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is not None:  # absent from a weights-only .ckpt, which cannot resume
            state["stored_masks"] = task_digests(stored_masks(hat_backbone(pl_module)))

    def load_state_dict(self, state_dict: dict) -> None:
        self.paths = {int(task): Path(path) for task, path in state_dict["paths"].items()}
        self.file_digests = {int(t): d for t, d in state_dict.get("file_digests", {}).items()}
        self._resumed = dict(state_dict)

    def _resume(self, backbone) -> None:
        """Take the accounting of the .ckpt, once the module holds the masks it held."""
        state, self._resumed = self._resumed, None
        found = task_digests(stored_masks(backbone))
        if "stored_masks" not in state:  # a .ckpt without them: the masks there now count
            self.accounted = found
            return
        expected = {int(task): digest for task, digest in state["stored_masks"].items()}
        if found != expected:
            raise RuntimeError(resume_mismatch(expected, found))
        self.accounted = {int(task): digest for task, digest in state["accounted"].items()}
        self.run_id = state["run_id"]
        if self.run_id is not None:
            set_run_id(backbone, self.run_id)  # the files after the resume are the same run's

    def _write_new_task(self, trainer, pl_module, trained: int | None = None) -> None:
        backbone = hat_backbone(pl_module)
        if self._resumed is not None:
            self._resume(backbone)
        masks = stored_masks(backbone)
        current = task_digests(masks)
        new = {task for task, digest in current.items() if self.accounted.get(task) != digest}
        if trained in current and trained not in self._written_in_fit:
            new.add(trained)
        new = sorted(new)
        if not new:
            return
        digests = gather_digests(trainer, masks)
        if len(set(digests)) > 1:
            raise RuntimeError(f"the processes' stored masks differ (digests {digests})")
        task = new[-1]
        path = self.dirpath / f"{self.filename.format(task=task)}{SUFFIX}"
        error, outcome = None, None
        if trainer.is_global_zero:  # decides alone whether the file is written, kept or refused
            try:
                with writes_shown(self.progress, trainer):
                    sha256 = self._save_or_keep(path, task, trainer, pl_module, backbone, digests)
                outcome = (None, sha256)
            except Exception as exc:  # every rank must hear of it, not wait for ever
                error, outcome = exc, (str(exc), None)
        # the barrier: every rank waits here until rank zero's file is complete (or failed)
        failure, file_digest = trainer.strategy.broadcast(outcome, src=0)
        if error is not None:
            raise error
        if failure is not None:
            raise RuntimeError(f"global rank zero could not write {path}: {failure}")
        for t in new:
            self.paths[t] = path
            self.file_digests[t] = file_digest
        self._written_in_fit.update(new)
        self.accounted = current

    def _save_or_keep(self, path, task, trainer, pl_module, backbone, digests) -> str:
        """Write ``path`` unless it must be kept; the sha256 of the file there after."""
        heads = getattr(pl_module, "heads", None)
        heads = heads if isinstance(heads, nn.Module) else None
        if path.exists() and not self.overwrite:
            if not self._holds_this_state(path, backbone, heads):
                raise CheckpointError(self._refusal(path, task, retrained=task in self.accounted))
            return file_sha256(path)
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
        save_checkpoint(path, backbone, heads=heads, metadata=metadata)
        return file_sha256(path)

    def _holds_this_state(self, path: Path, backbone, heads) -> bool:
        """Whether ``path`` is this run's file of the backbone as it is (written before a
        resume that the .ckpt did not record)."""
        try:
            if open_checkpoint(path).metadata.get(RUN_ID_KEY) != run_id(backbone):
                return False
        except CheckpointError:
            return False
        return same_tensors(path, checkpoint_tensors(backbone, heads))

    def _refusal(self, path: Path, task: int, retrained: bool) -> str:
        if retrained or self.file_digests.get(task) == file_sha256(path):
            why = f"task {task} was trained again and {path} holds its earlier training"
        else:
            why = f"{path} exists and holds other weights (an earlier run's?)"
        return f"{why}: HATMaskCheckpoint(..., overwrite=True) replaces it, or use another dirpath"


def fit_task(pl_module) -> int | None:
    """The task a fit trains, by the module's ``task_id`` (CLArena's name and ours)."""
    task = getattr(pl_module, "task_id", None)
    return int(task) if isinstance(task, int | str) and str(task).isdigit() else None


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


def masks_sha256(masks: Mapping[int, Mapping[str, Tensor]]):
    """A sha256 over the masks, tasks and layers in order, each as uint8 bytes."""
    digest = hashlib.sha256()
    for task in sorted(masks):
        for layer in sorted(masks[task]):
            digest.update(f"{task}.{layer}".encode())
            digest.update(masks[task][layer].cpu().reshape(-1).to(torch.uint8).numpy().tobytes())
    return digest


def task_digests(masks: Mapping[int, Mapping[str, Tensor]]) -> dict[int, str]:
    """Task id -> the sha256 of that task's mask alone."""
    return {task: masks_sha256({task: mask}).hexdigest() for task, mask in masks.items()}


def resume_mismatch(expected: Mapping[int, str], found: Mapping[int, str]) -> str:
    """The one-line error of a resumed fit whose module lacks the .ckpt's masks."""
    missing = sorted(set(expected) - set(found))
    changed = sorted(t for t in set(expected) & set(found) if expected[t] != found[t])
    extra = sorted(set(found) - set(expected))
    parts = [
        f"{what} {', '.join(map(str, tasks))}"
        for what, tasks in (
            ("missing task", missing),
            ("other mask of task", changed),
            ("extra task", extra),
        )
        if tasks
    ]
    return (
        "resuming: the module's stored masks are not those it held when the .ckpt was saved "
        f"({'; '.join(parts)}); restore them before fit (HATModule does so itself)"
    )


def gather_digests(trainer, masks: Mapping[int, Mapping[str, Tensor]]) -> list[str]:
    """One sha256 of the stored masks per process, gathered from every process."""
    digest = masks_sha256(masks)
    local = torch.tensor(list(digest.digest()), device=trainer.strategy.root_device)
    gathered = trainer.strategy.all_gather(local).reshape(-1, local.numel())  # (processes, 32)
    return [bytes(row.tolist()).hex() for row in gathered.cpu()]


def file_sha256(path: Path) -> str:
    """The file's sha256: its bytes read back, reported as ``checking <name>``."""
    with reading(path, f"checking {path.name}") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def same_tensors(path: Path, tensors: Mapping[str, Tensor]) -> bool:
    """Whether the safetensors file holds exactly ``tensors``, key for key, bit for bit."""
    with safe_open(path, framework="pt") as f:
        if set(f.keys()) != set(tensors):
            return False
        return all(
            torch.equal(f.get_tensor(key), tensors[key].detach().cpu().contiguous())
            for key in tensors
        )


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
