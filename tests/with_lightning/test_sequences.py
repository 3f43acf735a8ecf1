"""HATMaskCheckpoint over a sequence of tasks however the run is laid out: a new callback
per fit, one callback for every fit, a fit resumed from a Lightning .ckpt, a task trained
again. Every file must hold the backbone, heads and masks as they were right after its
task, for a CLArena-shaped module and for HATModule alike."""

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from lightning.pytorch import Callback, Trainer  # noqa: E402
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint  # noqa: E402
from support.lightning_modules import QUIET, CLArenaShapedHAT, SpanningHAT, loader  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.analysis.audit import audit  # noqa: E402
from hatinspect.backbones import HATMaskMLP  # noqa: E402
from hatinspect.lightning import HATMaskCheckpoint, HATModule  # noqa: E402
from hatinspect.model.errors import CheckpointError  # noqa: E402
from hatinspect.native.format import BACKBONE_PREFIX, RUN_ID_KEY  # noqa: E402
from hatinspect.torch_io.load import load_heads_state, tensors  # noqa: E402

TASKS = 3
EPOCHS = 2


class ResumableCLArenaShapedHAT(CLArenaShapedHAT):
    """A CLArena-shaped module that keeps its masks, task and heads in the .ckpt itself."""

    def on_save_checkpoint(self, checkpoint):
        checkpoint["clarena"] = {"task_id": self.task_id, "masks": self.backbone.masks}

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint["clarena"]
        for task in range(1, state["task_id"] + 1):
            self.setup_task_id(task)
        self.backbone.masks = state["masks"]


def clarena_module():
    return ResumableCLArenaShapedHAT()


def hat_module():
    return HATModule(HATMaskMLP(4, [6], 5, gate="sigmoid"), "hat", lr=0.1)


MODULES = {"clarena-shaped": clarena_module, "HATModule": hat_module}


def start(module, task_id: int) -> None:
    if isinstance(module, HATModule):
        module.start_task(task_id, 2)
    else:
        module.setup_task_id(task_id)


def snapshot(module) -> dict:
    """The backbone's state_dict, the heads' and the stored masks, copied."""
    return {
        "backbone": {k: v.detach().clone() for k, v in module.backbone.state_dict().items()},
        "heads": {k: v.detach().clone() for k, v in module.heads.state_dict().items()},
        "masks": {
            int(task): {layer: m.detach().clone() for layer, m in mask.items()}
            for task, mask in module.backbone.masks.items()
        },
    }


def assert_holds(path, expected: dict) -> None:
    checkpoint = hatinspect.open_checkpoint(path)
    assert checkpoint.task_ids == tuple(sorted(expected["masks"]))
    for task, mask in expected["masks"].items():
        for layer, values in mask.items():
            read = checkpoint.masks[task][layer]
            assert np.array_equal(read, values.reshape(-1).numpy().astype(np.uint8)), (task, layer)
    for name, read_back in (("backbone", tensors(path, BACKBONE_PREFIX)), ("heads", None)):
        read_back = load_heads_state(path) if read_back is None else read_back
        assert read_back.keys() == expected[name].keys()
        for key, value in expected[name].items():
            assert torch.equal(read_back[key], value), (path.name, name, key)


def file_of(folder, task: int):
    return folder / f"after-task-{task}.safetensors"


def fit(module, callbacks, epochs: int = EPOCHS, ckpt_path=None) -> None:
    trainer = Trainer(max_epochs=epochs, callbacks=callbacks, **QUIET)
    trainer.fit(module, loader(), ckpt_path=ckpt_path)


@pytest.mark.parametrize("kind", MODULES)
@pytest.mark.parametrize("layout", ["a callback per fit", "one callback"])
def test_every_file_holds_the_state_right_after_its_task(tmp_path, kind, layout):
    torch.manual_seed(0)
    module = MODULES[kind]()
    shared = HATMaskCheckpoint(tmp_path)
    expected = {}
    for task in range(1, TASKS + 1):
        start(module, task)
        callback = shared if layout == "one callback" else HATMaskCheckpoint(tmp_path)
        fit(module, [callback])
        expected[task] = snapshot(module)
        assert callback.paths[task] == file_of(tmp_path, task)
    assert sorted(tmp_path.iterdir()) == [file_of(tmp_path, t) for t in range(1, TASKS + 1)]
    for task in range(1, TASKS + 1):
        assert_holds(file_of(tmp_path, task), expected[task])
    # the weights did move between tasks: a file written from a later state would show
    before, after = (expected[t]["backbone"] for t in (1, 2))
    assert any(not torch.equal(before[key], after[key]) for key in before)


class Crash(Exception):
    pass


class CrashAtSecondEpoch(Callback):
    """Stops the fit as a killed process would, after the .ckpt of its first epoch."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise Crash


def interrupted_run(module, out, ckpts) -> dict:
    """Task 1 in full, task 2 stopped after one of its epochs; task 1's state."""
    start(module, 1)
    fit(module, [HATMaskCheckpoint(out)])
    after_task_1 = snapshot(module)
    start(module, 2)
    saving = ModelCheckpoint(dirpath=ckpts, filename="task-2")
    with pytest.raises(Crash):
        fit(module, [CrashAtSecondEpoch(), saving, HATMaskCheckpoint(out)])
    assert sorted(out.iterdir()) == [file_of(out, 1)]
    return after_task_1


@pytest.mark.parametrize("kind", MODULES)
def test_a_fit_resumed_from_a_ckpt_mid_task_writes_the_right_files(tmp_path, kind):
    torch.manual_seed(0)
    out, ckpts = tmp_path / "out", tmp_path / "ckpts"
    expected = {1: interrupted_run(MODULES[kind](), out, ckpts)}
    module = MODULES[kind]()  # as a new process builds it: no masks, no task started
    fit(
        module,
        [ModelCheckpoint(dirpath=ckpts), HATMaskCheckpoint(out)],
        ckpt_path=ckpts / "task-2.ckpt",
    )
    expected[2] = snapshot(module)
    start(module, 3)
    fit(module, [HATMaskCheckpoint(out)])
    expected[3] = snapshot(module)
    assert sorted(out.iterdir()) == [file_of(out, t) for t in range(1, TASKS + 1)]
    for task in range(1, TASKS + 1):
        assert_holds(file_of(out, task), expected[task])
    # the files before and after the resume are one run's, as audit requires
    runs = {hatinspect.open_checkpoint(file_of(out, t)).metadata[RUN_ID_KEY] for t in (1, 2, 3)}
    assert len(runs) == 1
    if kind == "HATModule":  # HAT's protection held across the resume
        assert audit(*(hatinspect.open_checkpoint(file_of(out, t)) for t in (1, 3))).ok


def test_a_resumed_fit_whose_module_lost_its_masks_writes_nothing(tmp_path):
    torch.manual_seed(0)
    out, ckpts = tmp_path / "out", tmp_path / "ckpts"
    interrupted_run(clarena_module(), out, ckpts)
    first = file_of(out, 1).read_bytes()
    module = CLArenaShapedHAT()  # keeps no masks in the .ckpt
    start(module, 1)
    start(module, 2)
    with pytest.raises(RuntimeError, match=r"resuming: .*\(missing task 1\)"):
        fit(module, [HATMaskCheckpoint(out)], ckpt_path=ckpts / "task-2.ckpt")
    assert sorted(out.iterdir()) == [file_of(out, 1)]
    assert file_of(out, 1).read_bytes() == first


def test_a_task_trained_again_is_refused_unless_overwrite(tmp_path):
    torch.manual_seed(0)
    module = clarena_module()
    callback = HATMaskCheckpoint(tmp_path)
    for task in (1, 2):
        start(module, task)
        fit(module, [callback])
    first = {task: file_of(tmp_path, task).read_bytes() for task in (1, 2)}
    start(module, 2)  # task 2 again: a new head, new embeddings, a new mask
    with pytest.raises(CheckpointError, match=r"task 2 was trained again and .*after-task-2"):
        fit(module, [callback])
    assert {task: file_of(tmp_path, task).read_bytes() for task in (1, 2)} == first
    start(module, 2)
    fit(module, [HATMaskCheckpoint(tmp_path, overwrite=True)])
    assert_holds(file_of(tmp_path, 2), snapshot(module))
    assert file_of(tmp_path, 1).read_bytes() == first[1]


def test_a_task_trained_again_to_the_same_mask_is_refused_unless_overwrite(tmp_path):
    torch.manual_seed(0)
    module = clarena_module()
    for task in (1, 2):
        start(module, task)
        fit(module, [HATMaskCheckpoint(tmp_path)])
    first = file_of(tmp_path, 2).read_bytes()
    mask_2 = {layer: m.clone() for layer, m in module.backbone.masks["2"].items()}
    start(module, 2)  # new weights, but the run stores task 2's earlier mask again

    def store_the_earlier_mask():
        module.backbone.masks["2"] = mask_2
        return mask_2

    module.backbone.store_mask = store_the_earlier_mask
    with pytest.raises(CheckpointError, match=r"task 2 was trained again and .*after-task-2"):
        fit(module, [HATMaskCheckpoint(tmp_path)])
    assert file_of(tmp_path, 2).read_bytes() == first
    fit(module, [HATMaskCheckpoint(tmp_path, overwrite=True)])
    assert_holds(file_of(tmp_path, 2), snapshot(module))


@pytest.mark.parametrize("kind", MODULES)
def test_a_folder_of_an_earlier_run_is_refused_unless_overwrite(tmp_path, kind):
    torch.manual_seed(0)
    start(earlier := MODULES[kind](), 1)
    fit(earlier, [HATMaskCheckpoint(tmp_path)])
    first = file_of(tmp_path, 1).read_bytes()
    for overwrite in (False, True):
        torch.manual_seed(1)
        module = MODULES[kind]()
        start(module, 1)
        if overwrite:
            fit(module, [HATMaskCheckpoint(tmp_path, overwrite=True)])
            assert_holds(file_of(tmp_path, 1), snapshot(module))
            return
        with pytest.raises(CheckpointError, match=r"after-task-1.safetensors exists .*overwrite"):
            fit(module, [HATMaskCheckpoint(tmp_path)])
        assert file_of(tmp_path, 1).read_bytes() == first


class ResumableSpanningHAT(SpanningHAT):
    """One fit for every task (task t in epoch t), its masks kept in the .ckpt."""

    def on_save_checkpoint(self, checkpoint):
        checkpoint["masks"] = self.backbone.masks

    def on_load_checkpoint(self, checkpoint):
        self.backbone.restore_masks(checkpoint["masks"])


class Snapshots(Checkpoint):
    """The module's state at every epoch end (task = epoch + 1): as a Checkpoint it runs
    after the module's own hook, which stores the mask."""

    def __init__(self):
        self.after = {}

    def on_train_epoch_end(self, trainer, pl_module):
        self.after[trainer.current_epoch + 1] = snapshot(pl_module)


class CrashAtThirdEpoch(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 2:
            raise Crash


@pytest.mark.parametrize("lost", [False, True], ids=["file kept", "file lost"])
def test_a_spanning_fit_resumed_from_a_ckpt_saved_before_its_file(tmp_path, lost):
    # ModelCheckpoint runs first: each .ckpt holds a mask whose file is not yet written
    torch.manual_seed(0)
    out, ckpts = tmp_path / "out", tmp_path / "ckpts"
    snapshots = Snapshots()
    saving = ModelCheckpoint(dirpath=ckpts, filename="{epoch}", save_top_k=-1)
    with pytest.raises(Crash):
        fit(
            ResumableSpanningHAT(),
            [snapshots, CrashAtThirdEpoch(), saving, HATMaskCheckpoint(out)],
            epochs=TASKS,
        )
    second = file_of(out, 2).read_bytes()
    if lost:
        file_of(out, 2).unlink()
    module = ResumableSpanningHAT()
    saving = ModelCheckpoint(dirpath=ckpts, filename="{epoch}", save_top_k=-1)
    fit(
        module,
        [snapshots, saving, HATMaskCheckpoint(out)],
        epochs=TASKS,
        ckpt_path=ckpts / "epoch=1.ckpt",
    )
    assert sorted(out.iterdir()) == [file_of(out, t) for t in range(1, TASKS + 1)]
    for task in range(1, TASKS + 1):
        assert_holds(file_of(out, task), snapshots.after[task])
    if not lost:  # this run's own file of the same state is kept, not written again
        assert file_of(out, 2).read_bytes() == second
