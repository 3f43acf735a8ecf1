"""Per-task batch norm in HAT ResNets: one BatchNorm2d per task after every masked conv, the
current task's trains, earlier tasks' stay bit-identical, a task id picks its own."""

import pytest
import torch
from torch import nn

from hatinspect.backbones import HATMaskResNet18, HATMaskResNet50, ResNet18
from hatinspect.backbones.task_norm import TaskBatchNorm2d
from hatinspect.torch_io.load import load_backbone
from hatinspect.torch_io.save import save_checkpoint
from hatinspect.training.engine import TrainConfig, evaluate, train_task
from hatinspect.training.heads import TaskHeads
from hatinspect.training.tasks import Task


def norm_path(layer: str) -> str:
    """The module path of the batch norm after a weighted layer, spelt out by hand."""
    parent, _, local = layer.rpartition("/")
    local = "shortcut_bn" if local == "shortcut" else local.replace("conv", "bn")
    return ".".join(filter(None, (parent.replace("/", "."), local)))


def tiny_tasks(n: int, count: int = 16) -> list[Task]:
    generator = torch.Generator().manual_seed(3)

    def images(k):
        return torch.randn(k, 1, 8, 8, generator=generator)

    def labels(k):
        return torch.randint(2, (k,), generator=generator)

    return [Task(t, 2, images(count), labels(count), images(8), labels(8)) for t in range(1, n + 1)]


def task_state(backbone: nn.Module, task_id: int) -> dict[str, torch.Tensor]:
    marker = f".per_task.{task_id}."
    return {k: v.clone() for k, v in backbone.state_dict().items() if marker in k}


@pytest.mark.parametrize(
    "cls, features", [(HATMaskResNet18, 512), (HATMaskResNet50, 2048)], ids=["18", "50"]
)
def test_one_task_batch_norm_after_every_masked_conv(cls, features):
    backbone = cls(1, features, gate="sigmoid", batch_normalisation="task")
    backbone.setup_task_id(1)
    backbone.setup_task_id(2)
    assert len(backbone.task_norms()) == len(backbone.weighted_layer_names)
    for layer in backbone.weighted_layer_names:
        norm = backbone.get_submodule(norm_path(layer))
        assert isinstance(norm, TaskBatchNorm2d), layer
        assert sorted(norm.per_task) == ["1", "2"]
        units = backbone.get_layer_by_name(layer).out_channels
        assert all(bn.num_features == units for bn in norm.per_task.values())


def test_without_batch_norm_by_default_and_no_shared_one():
    assert HATMaskResNet18(1, 512, gate="sigmoid").task_norms() == []
    with pytest.raises(ValueError, match="batch_normalisation"):
        HATMaskResNet18(1, 512, gate="sigmoid", batch_normalisation=True)


def test_earlier_tasks_batch_norm_is_bit_identical_after_later_tasks():
    torch.manual_seed(0)
    backbone = HATMaskResNet18(1, 512, gate="sigmoid", batch_normalisation="task")
    heads = TaskHeads(512)
    tasks = tiny_tasks(2)
    config = TrainConfig(epochs=1, batch_size=8, lr=0.1)
    generator = torch.Generator().manual_seed(0)
    train_task(backbone, heads, tasks[0], config, generator)
    first = task_state(backbone, 1)
    assert first and any(k.endswith("num_batches_tracked") and v == 2 for k, v in first.items())
    train_task(backbone, heads, tasks[1], config, generator)
    evaluate(backbone, heads, tasks[0])
    backbone.train()  # an earlier task's forward in train mode updates nothing either
    backbone(tasks[0].train_x, "test", test_mask=backbone.masks[1], task_id=1)
    after = task_state(backbone, 1)
    assert after.keys() == first.keys()
    assert all(torch.equal(after[k], v) for k, v in first.items())
    latest = task_state(backbone, 2)
    assert latest["bn1.per_task.2.num_batches_tracked"] == 2  # the current task's trained
    assert not torch.equal(latest["bn1.per_task.2.weight"], torch.ones(64))
    assert not torch.equal(latest["bn1.per_task.2.running_mean"], torch.zeros(64))


def test_earlier_batch_norms_are_left_out_of_training():
    backbone = HATMaskResNet18(1, 512, gate="sigmoid", batch_normalisation="task")
    backbone.setup_task_id(1)
    backbone.setup_task_id(2)
    backbone.train()
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad and "per_task" in n}
    assert trainable and all(".per_task.2." in n for n in trainable)
    modes = {n: m.training for n, m in backbone.named_modules() if n.endswith("per_task.1")}
    assert modes and not any(modes.values())


def plain_twin(backbone: nn.Module, task_id: int) -> nn.Module:
    """A plain ResNet18 with shared batch norm holding the HAT net's convs and task t's BN."""
    twin = ResNet18(1, 512, batch_normalisation=True)
    marker = f".per_task.{task_id}."
    state = {
        key.replace(marker, "."): value
        for key, value in backbone.state_dict().items()
        if "task_embedding" not in key and (".per_task." not in key or marker in key)
    }
    twin.load_state_dict(state)
    return twin.eval()


def test_forward_with_a_task_id_uses_that_tasks_batch_norm():
    torch.manual_seed(0)
    backbone = HATMaskResNet18(1, 512, gate="sigmoid", batch_normalisation="task")
    for task_id in (1, 2):
        backbone.setup_task_id(task_id)
        with torch.no_grad():  # distinct statistics and affine parameters per task
            for norm in backbone.task_norms():
                bn = norm.per_task[str(task_id)]
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
    backbone.eval()
    x = torch.randn(3, 1, 16, 16)
    ones = {n: torch.ones_like(m) for n, m in backbone.te_to_binary_mask().items()}
    outputs = {}
    for task_id in (1, 2):
        feature, _, _ = backbone(x, "test", test_mask=ones, task_id=task_id)
        torch.testing.assert_close(feature, plain_twin(backbone, task_id)(x, "test")[0])
        outputs[task_id] = feature
    assert not torch.allclose(outputs[1], outputs[2])
    with pytest.raises(ValueError, match="task_id"):
        backbone(x, "test", test_mask=ones)
    with pytest.raises(ValueError, match="no batch norm for task 7"):
        backbone(x, "test", test_mask=ones, task_id=7)


def test_per_task_batch_norm_is_stored_and_restored(tmp_path):
    torch.manual_seed(0)
    backbone = HATMaskResNet18(1, 512, gate="sigmoid", batch_normalisation="task")
    heads = TaskHeads(512)
    config = TrainConfig(epochs=1, batch_size=8, lr=0.1)
    generator = torch.Generator().manual_seed(0)
    tasks = tiny_tasks(2)
    for task in tasks:
        train_task(backbone, heads, task, config, generator)
    path = save_checkpoint(tmp_path / "net.safetensors", backbone, heads=heads)
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        keys = set(f.keys())
    for task_id in (1, 2):  # the documented keys, per task
        for field in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            assert f"backbone.conv3x.0.shortcut_bn.per_task.{task_id}.{field}" in keys
    loaded = load_backbone(path).eval()
    assert loaded.config["batch_normalisation"] == "task"
    original = backbone.state_dict()
    assert loaded.state_dict().keys() == original.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in original.items())
    backbone.eval()
    for task in tasks:
        mask = backbone.masks[task.task_id]
        want = backbone(task.test_x, "test", test_mask=mask, task_id=task.task_id)[0]
        got = loaded(task.test_x, "test", test_mask=mask, task_id=task.task_id)[0]
        assert torch.equal(got, want)
    # the restored current task trains its own batch norm, the earlier one stays frozen
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad and "per_task" in n}
    assert trainable and all(".per_task.2." in n for n in trainable)
