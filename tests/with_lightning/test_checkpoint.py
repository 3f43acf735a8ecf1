"""HATMaskCheckpoint: one native file per task, holding the task just trained, from a
CLArena-shaped module (string task keys, the mask stored in its own on_train_end) and from
a hatinspect backbone trained in one fit that spans tasks."""

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

pytest.importorskip("lightning")

from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from support.lightning_modules import QUIET, CLArenaShapedHAT, SpanningHAT, loader  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.lightning import HATMaskCheckpoint  # noqa: E402

TASKS = 3


class StoredMaskProbe(Callback):
    """How many masks the backbone holds when the callbacks' on_train_end and on_fit_end run."""

    def __init__(self):
        self.seen = []

    def on_train_end(self, trainer, pl_module):
        self.seen.append(("on_train_end", len(pl_module.backbone.masks)))

    def on_fit_end(self, trainer, pl_module):
        self.seen.append(("on_fit_end", len(pl_module.backbone.masks)))


def test_one_fit_per_task_writes_the_task_just_trained(tmp_path):
    torch.manual_seed(0)
    module = CLArenaShapedHAT()
    callback = HATMaskCheckpoint(tmp_path, metadata={"run": "clarena-shaped"})
    probe = StoredMaskProbe()
    for task_id in range(1, TASKS + 1):
        module.setup_task_id(task_id)
        trainer = Trainer(max_epochs=1, callbacks=[probe, callback], **QUIET)
        trainer.fit(module, loader())
        checkpoint = hatinspect.open_checkpoint(tmp_path / f"after-task-{task_id}.safetensors")
        assert checkpoint.task_ids == tuple(range(1, task_id + 1))
        for t in checkpoint.task_ids:
            for layer, stored in module.backbone.masks[str(t)].items():
                assert (checkpoint.masks[t][layer] == stored.numpy()).all()
        # Lightning runs the callbacks' on_train_end before the module's, where the mask
        # is stored; on_fit_end is the first callback hook that sees it
        assert probe.seen[-2:] == [("on_train_end", task_id - 1), ("on_fit_end", task_id)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"after-task-{t}.safetensors" for t in range(1, TASKS + 1)
    ]
    meta = checkpoint.metadata
    assert meta["run"] == "clarena-shaped"
    assert meta["algorithm"] == "CLArenaShapedHAT"
    assert json.loads(meta["hyperparameters"]) == {"s_max": 400.0, "clamp_threshold": 6.0}
    assert json.loads(meta["world_size"]) == 1
    import lightning

    assert meta["lightning_version"] == lightning.__version__
    from hatinspect.torch_io.load import load_heads_state

    heads = load_heads_state(tmp_path / "after-task-3.safetensors")
    assert sorted(heads) == [f"{t}.{p}" for t in "123" for p in ("bias", "weight")]
    assert torch.equal(heads["2.weight"], module.heads["2"].weight.detach())


def test_one_fit_spanning_tasks_writes_one_file_per_task(tmp_path):
    torch.manual_seed(0)
    module = SpanningHAT()
    callback = HATMaskCheckpoint(tmp_path / "runs", filename="net-{task}")
    Trainer(max_epochs=TASKS, callbacks=[callback], **QUIET).fit(module, loader())
    for task_id in range(1, TASKS + 1):
        path = tmp_path / "runs" / f"net-{task_id}.safetensors"
        assert callback.paths[task_id] == path
        checkpoint = hatinspect.open_checkpoint(path)
        assert checkpoint.task_ids == tuple(range(1, task_id + 1))
        assert json.loads(checkpoint.metadata["epoch"]) == task_id - 1
    restored = hatinspect.load_backbone(tmp_path / "runs" / f"net-{TASKS}.safetensors")
    for t, mask in module.backbone.masks.items():
        for layer, values in mask.items():
            assert torch.equal(restored.masks[t][layer], values)
    assert torch.equal(restored.fc[0].weight, module.backbone.fc[0].weight)


def test_a_failed_write_leaves_earlier_files_intact(tmp_path, monkeypatch):
    torch.manual_seed(0)
    module = CLArenaShapedHAT()
    callback = HATMaskCheckpoint(tmp_path)
    module.setup_task_id(1)
    Trainer(max_epochs=1, callbacks=[callback], **QUIET).fit(module, loader())
    first = (tmp_path / "after-task-1.safetensors").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("hatinspect.torch_io.save.save_file", full_disk)
    module.setup_task_id(2)
    with pytest.raises(hatinspect.CheckpointError, match="cannot write .*No space left"):
        Trainer(max_epochs=1, callbacks=[callback], **QUIET).fit(module, loader())
    assert [p.name for p in tmp_path.iterdir()] == ["after-task-1.safetensors"]
    assert (tmp_path / "after-task-1.safetensors").read_bytes() == first


def test_refuses_a_module_without_a_hat_backbone(tmp_path):
    class Plain(LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.backbone(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(TypeError, match="lacks masks, task_embedding_t"):
        Trainer(max_epochs=1, callbacks=[HATMaskCheckpoint(tmp_path)], **QUIET).fit(
            Plain(), loader()
        )
    with pytest.raises(ValueError, match="task"):
        HATMaskCheckpoint(tmp_path, filename="net")
