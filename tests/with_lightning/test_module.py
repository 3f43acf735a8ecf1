"""HATModule: the plain engine's training rules on Lightning, step for step."""

import copy

import pytest
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

pytest.importorskip("lightning")

from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from hatinspect.backbones import HATMaskMLP  # noqa: E402
from hatinspect.lightning import HATMaskCheckpoint, HATModule  # noqa: E402
from hatinspect.training.engine import ALGORITHMS, TrainConfig, train_task  # noqa: E402
from hatinspect.training.hat import parameter_measures  # noqa: E402
from hatinspect.training.heads import TaskHeads  # noqa: E402
from hatinspect.training.tasks import Task  # noqa: E402

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


def tiny_task(task_id: int, n: int = 24) -> Task:
    generator = torch.Generator().manual_seed(task_id)
    x = torch.randn(n + 8, 6, generator=generator)
    y = (x[:, task_id % 6] > 0).long()
    return Task(task_id, 2, x[:n], y[:n], x[n:], y[n:])


class EngineOrder(Sampler):
    """The plain engine's order: one randperm per epoch from one generator (torch's
    RandomSampler draws an extra one at the end of each epoch)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.n


def engine_order_loader(task: Task, batch_size: int, seed: int) -> DataLoader:
    data = TensorDataset(task.train_x, task.train_y)
    return DataLoader(data, batch_size=batch_size, sampler=EngineOrder(len(data), seed))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_task_on_lightning_equals_the_plain_engine(algorithm):
    torch.manual_seed(0)
    initial = HATMaskMLP(6, [5], 4, gate="sigmoid")
    task = tiny_task(1)
    config = TrainConfig(algorithm=algorithm, epochs=2, batch_size=8, lr=0.1)

    plain = copy.deepcopy(initial)
    heads = TaskHeads(4)
    torch.manual_seed(1)  # embeddings and head drawn from the same state on both sides
    train_task(plain, heads, task, config, torch.Generator().manual_seed(7))

    module = HATModule(copy.deepcopy(initial), algorithm, lr=0.1)
    torch.manual_seed(1)
    module.start_task(1, 2)
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, **QUIET)
    trainer.fit(module, engine_order_loader(task, 8, seed=7))

    assert module.backbone.masks.keys() == plain.masks.keys() == {1}
    for layer, mask in plain.masks[1].items():
        assert torch.equal(module.backbone.masks[1][layer], mask)
    # the same operations in the same order: bit for bit the same weights
    for (name, mine), theirs in zip(
        module.backbone.state_dict().items(), plain.state_dict().values(), strict=True
    ):
        assert torch.equal(mine, theirs), name
    for key, value in heads.state_dict().items():
        assert torch.equal(module.heads.state_dict()[key], value), key
    assert not torch.equal(module.backbone.fc[0].weight, initial.fc[0].weight)


def test_hat_on_lightning_protects_earlier_tasks_and_logs(tmp_path):
    torch.manual_seed(0)
    module = HATModule(HATMaskMLP(6, [8], 6, gate="sigmoid"), "hat", lr=0.1)
    tasks = [tiny_task(t) for t in (1, 2, 3)]
    logger = CSVLogger(tmp_path, name="logs", version=0)
    callback = HATMaskCheckpoint(tmp_path / "ckpt")
    protected = None
    for task in tasks:
        if protected is not None:
            measures = parameter_measures(module.backbone, module.backbone.get_cumulative_mask())
            protected = [(p, m.bool(), p.detach()[m.bool()].clone()) for _, p, m in measures]
        module.start_task(task.task_id, 2)
        trainer = Trainer(max_epochs=2, logger=logger, callbacks=[callback], **QUIET)
        trainer.fit(module, DataLoader(TensorDataset(task.train_x, task.train_y), 8))
        if protected:
            assert sum(int(mask.sum()) for _, mask, _ in protected) > 0
            for parameter, mask, before in protected:
                assert torch.equal(parameter.detach()[mask], before)
        protected = protected or []
        loaders = {t.task_id: DataLoader(TensorDataset(t.test_x, t.test_y), 5) for t in tasks}
        earlier = {t: loaders[t] for t in range(1, task.task_id + 1)}
        module.test_tasks(trainer, earlier)
    accuracy = module.accuracy
    assert [len(row) for row in accuracy] == [1, 2, 3]
    for t in range(3):  # HAT: an earlier task's accuracy never moves
        assert len({row[t] for row in accuracy[t:]}) == 1
    assert module.forgetting == [0.0, 0.0]
    # accuracy counted by hand for the last task through its mask and head
    last = tasks[-1]
    module.backbone.eval()
    feature, _, _ = module.backbone(last.test_x, "test", test_mask=module.backbone.masks[3])
    hand = (module.heads(feature, 3).argmax(1) == last.test_y).float().mean().item()
    assert accuracy[-1][-1] == pytest.approx(hand)
    capacity = module.capacity_by_task
    assert capacity == sorted(capacity) and 0 < capacity[0]
    header = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for column in ("train/loss", "train/accuracy", "train/capacity", "test/accuracy/task_1"):
        assert column in header.split(",")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        f"after-task-{t}.safetensors" for t in (1, 2, 3)
    ]


def test_a_task_must_be_started_first():
    module = HATModule(HATMaskMLP(6, [5], 4, gate="sigmoid"))
    with pytest.raises(RuntimeError, match="start_task"):
        module.configure_optimizers()
