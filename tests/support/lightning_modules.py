"""Lightning modules shaped as the runs that write HAT checkpoints are: a CLArena-shaped
module (string task keys, the mask stored in its own on_train_end) and one fit spanning
tasks over a hatinspect backbone, with a small loader and the quiet Trainer options."""

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from hatinspect.backbones import HATMaskMLP

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
