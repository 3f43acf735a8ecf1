"""The demo's checkpoints open in the inspection reader with the masks the backbone stored."""

import json

import numpy as np
import pytest
import torch

import hatinspect
from hatinspect.analysis.capacity import capacity
from hatinspect.training import demo
from hatinspect.training.engine import train_sequence
from hatinspect.training.heads import TaskHeads
from hatinspect.training.tasks import make_tasks


@pytest.mark.parametrize("algorithm", ["hat", "finetuning"])
def test_checkpoints_hold_the_masks_the_backbone_stored(tmp_path, algorithm):
    config = demo.DemoConfig(algorithm, tasks=3, epochs=1)
    torch.manual_seed(0)
    tasks = make_tasks("toy", 3, seed=0)
    backbone = demo.demo_backbone("mlp", tasks[0])
    heads = TaskHeads(backbone.output_dim)
    stored = {}

    def save(task_id, accuracy):
        stored[task_id] = {
            task: {name: mask.numpy().copy() for name, mask in masks.items()}
            for task, masks in backbone.masks.items()
        }
        demo.save_demo_checkpoint(
            tmp_path / f"{task_id}.safetensors", backbone, heads, config, accuracy
        )

    generator = torch.Generator().manual_seed(0)
    accuracy = train_sequence(backbone, heads, tasks, config.train_config, generator, None, save)
    for task_id, masks in stored.items():
        checkpoint = hatinspect.open_checkpoint(tmp_path / f"{task_id}.safetensors")
        assert checkpoint.task_ids == tuple(range(1, task_id + 1))
        assert checkpoint.layer_names == backbone.weighted_layer_names
        for task, layers in masks.items():
            for name, mask in layers.items():
                np.testing.assert_array_equal(checkpoint.masks[task][name], mask)
        assert json.loads(checkpoint.metadata["accuracy"]) == accuracy[:task_id]
        assert checkpoint.metadata["algorithm"] == algorithm


def test_run_demo_writes_one_checkpoint_per_task(tmp_path):
    seen = []
    result = demo.run_demo(demo.DemoConfig("hat", tasks=2, epochs=1), tmp_path, None, seen.append)
    expected = [str(tmp_path / f"after-task-{t}.safetensors") for t in (1, 2)]
    assert list(result.checkpoints) == expected == [str(path) for path in seen]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "after-task-1.safetensors",
        "after-task-2.safetensors",
    ]
    last = hatinspect.open_checkpoint(expected[-1])
    by_file = [growth.param_usage for growth in capacity(last).by_task]
    assert list(result.capacity) == by_file


def test_without_a_folder_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = demo.run_demo(demo.DemoConfig("hat", tasks=1, epochs=1))
    assert result.checkpoints == ()
    assert list(tmp_path.iterdir()) == []


def test_the_mlp_trains_on_one_thread_and_leaves_the_count_as_it_was():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        during = []
        demo.run_demo(
            demo.DemoConfig("hat", tasks=1, epochs=2),
            on_epoch=lambda *_: during.append(torch.get_num_threads()),
        )
        assert during == [1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
