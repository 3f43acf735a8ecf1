"""HATMaskCheckpoint: one native file per task, holding the task just trained, from a
CLArena-shaped module (string task keys, the mask stored in its own on_train_end) and from
a hatinspect backbone trained in one fit that spans tasks."""

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("lightning")

from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.backbones import HATMaskMLP  # noqa: E402
from hatinspect.lightning import HATMaskCheckpoint  # noqa: E402

TASKS = 3
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


class CLArenaShapedBackbone(nn.Module):
    """Only what CLArena's HAT backbone has, by its names: string task keys in ``masks``,
    ``(1, units)`` embeddings, ``store_mask`` returning the mask."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.ModuleList([nn.Linear(4, 6), nn.Linear(6, 5)])
        self.weighted_layer_names = ["fc/0", "fc/1"]
        self.task_embedding_t = nn.ModuleDict(
            {"fc/0": nn.Embedding(1, 6), "fc/1": nn.Embedding(1, 5)}
        )
        self.masks: dict[str, dict[str, torch.Tensor]] = {}
        self.task_id = None
        self.output_dim = 5

    def get_layer_by_name(self, name):
        return self.get_submodule(name.replace("/", "."))

    def preceding_layer_name(self, name):
        return {"fc/0": None, "fc/1": "fc/0"}[name]

    def forward(self, x, stage, s_max=None, batch_idx=None, num_batches=None, test_task_id=None):
        for layer, name in zip(self.fc, self.weighted_layer_names, strict=True):
            gate = torch.sigmoid(s_max * self.task_embedding_t[name].weight)
            x = F.relu(layer(x)) * gate
        return x, None, None

    def store_mask(self):
        mask = {n: (e.weight > 0).float().squeeze(0) for n, e in self.task_embedding_t.items()}
        self.masks[f"{self.task_id}"] = mask
        return mask


class CLArenaShapedHAT(LightningModule):
    """CLArena's attribute names (backbone, heads, task_id, s_max, clamp_threshold,
    cumulative_mask_for_previous_tasks); the task's mask is stored in on_train_end."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = CLArenaShapedBackbone()
        self.heads = nn.ModuleDict()
        self.task_id = None
        self.s_max = 400.0
        self.clamp_threshold = 6.0
        self.cumulative_mask_for_previous_tasks = {}

    def setup_task_id(self, task_id):
        self.task_id = self.backbone.task_id = task_id
        self.heads[f"{task_id}"] = nn.Linear(5, 2)
        with torch.no_grad():
            for embedding in self.backbone.task_embedding_t.values():
                embedding.weight.normal_()

    def training_step(self, batch, batch_idx):
        x, y = batch
        feature, _, _ = self.backbone(x, "train", s_max=self.s_max)
        return F.cross_entropy(self.heads[f"{self.task_id}"](feature), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self):
        mask_t = self.backbone.store_mask()
        self.cumulative_mask_for_previous_tasks = {
            name: torch.maximum(self.cumulative_mask_for_previous_tasks.get(name, m), m)
            for name, m in mask_t.items()
        }


def loader(features: int = 4, n: int = 16) -> DataLoader:
    generator = torch.Generator().manual_seed(n)
    data = TensorDataset(torch.randn(n, features, generator=generator), torch.arange(n) % 2)
    return DataLoader(data, batch_size=8)


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


class SpanningHAT(LightningModule):
    """One fit for all tasks: task t trains during epoch t, its mask is stored at the end
    of that epoch by the module's own on_train_epoch_end."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = HATMaskMLP(4, [6], 5, gate="sigmoid")
        self.heads = nn.Linear(5, 2)

    def on_train_epoch_start(self):
        self.backbone.setup_task_id(self.current_epoch + 1)
        self.backbone.initialise_task_embedding("N01")

    def training_step(self, batch, batch_idx):
        x, y = batch
        feature, _, _ = self.backbone(x, "train", 400.0, batch_idx + 1, 2)
        return F.cross_entropy(self.heads(feature), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_epoch_end(self):
        self.backbone.store_mask()


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
