"""The task sequences: deterministic from the seed, and digits only with scikit-learn."""

import sys

import pytest
import torch

from hatinspect import HatinspectError
from hatinspect.training.tasks import IMAGE_SHAPE, TOY_FEATURES, make_tasks


def test_same_seed_same_tasks_other_seed_other_tasks():
    first, again, other = (make_tasks("toy", 2, seed) for seed in (3, 3, 4))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(first[0].train_x, other[0].train_x)


def test_toy_tasks_shapes_and_labels():
    tasks = make_tasks("toy", 3, seed=0)
    assert [task.task_id for task in tasks] == [1, 2, 3]
    for task in tasks:
        assert task.input_shape == (TOY_FEATURES,)
        assert task.num_classes == 2 and set(task.train_y.tolist()) == {0, 1}
        assert 0.3 < task.train_y.float().mean() < 0.7
    # the same inputs, labelled differently: tasks pull shared features apart
    assert not torch.equal(tasks[0].train_y, tasks[1].train_y)


def test_image_tasks():
    (task,) = make_tasks("toy", 1, seed=0, images=True)
    assert task.input_shape == IMAGE_SHAPE


def test_digits_without_scikit_learn_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(HatinspectError, match="scikit-learn"):
        make_tasks("digits", 2, seed=0)


def test_digits_tasks():
    pytest.importorskip("sklearn")
    tasks = make_tasks("digits", 5, seed=0)
    assert [task.input_shape for task in tasks] == [(64,)] * 5
    assert all(set(task.test_y.tolist()) == {0, 1} for task in tasks)
    with pytest.raises(ValueError, match="at most 5"):
        make_tasks("digits", 6, seed=0)


@pytest.mark.parametrize(("dataset", "tasks"), [("toy", 0), ("mnist", 2)])
def test_bad_arguments(dataset, tasks):
    with pytest.raises(ValueError):
        make_tasks(dataset, tasks, seed=0)
