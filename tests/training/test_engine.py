"""The training engine: HAT forgets nothing and moves no protected parameter; fine-tuning
forgets; AdaHAT runs; the same seed gives the same run."""

import pytest
import torch

from hatinspect.backbones import HATMaskMLP, HATMaskResNet18
from hatinspect.training.demo import DemoConfig, forgetting, run_demo
from hatinspect.training.engine import ALGORITHMS, PROTECTIONS, TrainConfig, train_task
from hatinspect.training.hat import parameter_measures
from hatinspect.training.heads import TaskHeads
from hatinspect.training.tasks import Task, make_tasks


def tiny_image_tasks(n: int) -> list[Task]:
    generator = torch.Generator().manual_seed(1)

    def images(count):
        return torch.randn(count, 1, 8, 8, generator=generator)

    def labels(count):
        return torch.randint(2, (count,), generator=generator)

    return [Task(t, 2, images(32), labels(32), images(8), labels(8)) for t in range(1, n + 1)]


def mlp_and_tasks():
    return HATMaskMLP(32, [24, 24], 24, gate="sigmoid"), make_tasks("toy", 3, seed=0), "N01"


def resnet_and_tasks():
    return HATMaskResNet18(1, 512, gate="sigmoid"), tiny_image_tasks(2), "U01"


def protected_values(backbone):
    """(parameter, protected elements, their values now) under the current cumulative mask."""
    measures = parameter_measures(backbone, backbone.get_cumulative_mask())
    return [(p, m.bool(), p.detach()[m.bool()].clone()) for _, p, m in measures]


@pytest.mark.parametrize("build", [mlp_and_tasks, resnet_and_tasks], ids=["mlp", "resnet18"])
def test_hat_leaves_every_protected_parameter_bit_identical(build):
    torch.manual_seed(0)
    backbone, tasks, init = build()
    heads = TaskHeads(backbone.output_dim)
    config = TrainConfig(epochs=2, batch_size=16, lr=0.1, embedding_init=init)
    generator = torch.Generator().manual_seed(0)
    train_task(backbone, heads, tasks[0], config, generator)
    for task in tasks[1:]:
        protected = protected_values(backbone)
        old_heads = {key: value.clone() for key, value in heads.state_dict().items()}
        everything = [p.detach().clone() for p in backbone.parameters()]
        train_task(backbone, heads, task, config, generator)
        assert sum(int(mask.sum()) for _, mask, _ in protected) > 0
        for parameter, mask, before in protected:
            assert torch.equal(parameter.detach()[mask], before)
        for key, value in old_heads.items():
            assert torch.equal(heads.state_dict()[key], value)
        moved = [
            not torch.equal(p, q) for p, q in zip(backbone.parameters(), everything, strict=True)
        ]
        assert any(moved), "the new task must have trained something"


def test_hat_forgets_exactly_nothing_and_learns_each_task():
    result = run_demo(DemoConfig("hat"))  # the default run: 5 tasks
    assert result.forgetting == (0.0, 0.0, 0.0, 0.0)
    for task in range(result.tasks):
        column = {row[task] for row in result.accuracy[task:]}
        assert len(column) == 1, f"task {task + 1}'s accuracy changed: {column}"
        assert result.accuracy[task][task] >= 0.9
    assert list(result.capacity) == sorted(result.capacity)


def test_finetuning_on_the_same_tasks_forgets():
    result = run_demo(DemoConfig("finetuning", tasks=3, epochs=5))
    assert result.mean_forgetting > 0.05
    assert result.capacity == (0.0, 0.0, 0.0)  # every unit open to every task: none protected


def test_adahat_runs_and_reports():
    result = run_demo(DemoConfig("adahat", tasks=3, epochs=3))
    assert [len(row) for row in result.accuracy] == [1, 2, 3]
    assert len(result.forgetting) == 2 and len(result.capacity) == 3
    assert all(0.0 <= a <= 1.0 for row in result.accuracy for a in row)


def test_same_seed_same_run_and_the_callers_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = run_demo(DemoConfig("hat", tasks=2, epochs=2, seed=7))
    assert torch.equal(torch.get_rng_state(), state)
    second = run_demo(DemoConfig("hat", tasks=2, epochs=2, seed=7))
    other = run_demo(DemoConfig("hat", tasks=2, epochs=2, seed=8))
    assert (first.accuracy, first.capacity) == (second.accuracy, second.capacity)
    assert first.accuracy != other.accuracy


def test_forgetting_is_best_earlier_accuracy_minus_final():
    accuracy = [[0.9], [0.7, 0.8], [0.95, 0.6, 1.0], [0.5, 0.85, 0.9, 0.7]]
    assert forgetting(accuracy) == pytest.approx([0.95 - 0.5, 0.8 - 0.85, 1.0 - 0.9])
    assert forgetting([[0.9]]) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithm": "ewc"},
        {"tasks": 0},
        {"epochs": -1},
        {"backbone": "vgg"},
        {"dataset": "mnist"},
        {"dataset": "digits", "tasks": 6},
    ],
)
def test_bad_configs_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        DemoConfig(**kwargs)


def test_unknown_algorithm_in_train_config():
    with pytest.raises(ValueError, match="unknown algorithm"):
        TrainConfig(algorithm="ewc")
    assert tuple(PROTECTIONS) == ALGORITHMS  # every algorithm a file may name trains here


def test_optimiser_is_plain_sgd(monkeypatch):
    """Weight decay, or momentum kept from an earlier task, would move protected parameters:
    the update is plain SGD (tests/test_no_dynamo.py checks it against torch.optim.SGD),
    fresh for each task and with no state of its own."""
    from hatinspect.training import engine

    made = []
    original = engine.PlainSGD

    def spy(*args, **kwargs):
        optimiser = original(*args, **kwargs)
        made.append(optimiser)
        return optimiser

    monkeypatch.setattr(engine, "PlainSGD", spy)
    run_demo(DemoConfig("hat", tasks=2, epochs=1))
    assert len(made) == 2  # a fresh optimiser per task
    for optimiser in made:
        assert set(vars(optimiser)) == {"parameters", "lr"}  # no momentum buffers, no decay
