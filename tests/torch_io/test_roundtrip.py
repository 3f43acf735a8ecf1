"""save_checkpoint -> open_checkpoint / load_backbone: same masks, weights and outputs."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
import torch
from support.checkpoint_factories import hat_mlp, stored_masks

import hatinspect
from hatinspect.backbones import MLP, HATMaskMLP, HATMaskResNet18
from hatinspect.checkpoints import read_tensors
from hatinspect.torch_io.load import load_heads_state
from hatinspect.training.heads import TaskHeads


def _with_tasks(backbone, tasks=(0, 1, 3)):
    for task in tasks:
        backbone.setup_task_id(task)
        backbone.initialise_task_embedding("N01")
        backbone.store_mask()
    return backbone


BACKBONES = {
    "mlp": (lambda: HATMaskMLP(12, [16, 10], 8, "sigmoid"), (3, 12)),
    "resnet18": (lambda: HATMaskResNet18(3, 512, "sigmoid"), (2, 3, 16, 16)),
}


@pytest.fixture(params=list(BACKBONES), scope="module")
def saved(request, tmp_path_factory):
    build, input_shape = BACKBONES[request.param]
    torch.manual_seed(0)
    backbone = _with_tasks(build()).eval()
    path = tmp_path_factory.mktemp(request.param) / "net.safetensors"
    hatinspect.save_checkpoint(path, backbone, metadata={"s_max": 400, "algorithm": "HAT"})
    return backbone, path, torch.randn(input_shape)


def test_outputs_are_bit_identical_for_every_task(saved):
    original, path, x = saved
    rebuilt = hatinspect.load_backbone(path).eval()
    assert type(rebuilt) is type(original)
    assert rebuilt.task_id == original.task_id
    with torch.no_grad():
        for task in original.masks:
            expected = original(x, "test", test_mask=original.masks[task])[0]
            actual = rebuilt(x, "test", test_mask=rebuilt.masks[task])[0]
            assert torch.equal(actual, expected)


def test_weights_and_masks_survive(saved):
    original, path, _ = saved
    rebuilt = hatinspect.load_backbone(path)
    for key, value in original.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    assert rebuilt.masks.keys() == original.masks.keys()
    for task, mask in original.masks.items():
        for name, values in mask.items():
            assert torch.equal(rebuilt.masks[task][name], values)


def test_reader_sees_layers_tasks_and_metadata(saved):
    original, path, _ = saved
    checkpoint = hatinspect.open_checkpoint(path)
    assert checkpoint.backbone == type(original).__name__
    assert checkpoint.source == "hatinspect"
    assert checkpoint.layer_names == original.weighted_layer_names
    assert checkpoint.task_ids == (0, 1, 3)
    metadata = dict(checkpoint.metadata)
    assert re.fullmatch("[0-9a-f]{32}", metadata.pop("run_id"))
    assert metadata == {"s_max": "400", "algorithm": "HAT"}
    for layer in checkpoint.layers:
        module = original.get_layer_by_name(layer.name)
        assert layer.weight_shape == tuple(module.weight.shape)
        assert layer.has_bias == (module.bias is not None)
        assert layer.preceding == original.preceding_layer_name(layer.name)
    for task, mask in stored_masks(original).items():
        for name, values in mask.items():
            np.testing.assert_array_equal(checkpoint.masks[task][name], values)


def test_cumulative_and_summative_match_the_backbone(saved):
    original, path, _ = saved
    checkpoint = hatinspect.open_checkpoint(path)
    cumulative, summative = checkpoint.cumulative_mask(), checkpoint.summative_mask()
    for name, values in original.get_cumulative_mask().items():
        np.testing.assert_array_equal(cumulative[name], values.numpy())
    for name, values in original.get_summative_mask().items():
        np.testing.assert_array_equal(summative[name], values.numpy())


def test_weight_keys_read_back_as_the_weights(saved):
    original, path, _ = saved
    checkpoint = hatinspect.open_checkpoint(path)
    layer = checkpoint.layers[-1]
    tensors = read_tensors(path, [layer.weight_key])
    expected = original.get_layer_by_name(layer.name).weight.detach().numpy()
    np.testing.assert_array_equal(tensors[layer.weight_key], expected)


def test_heads_round_trip(tmp_path):
    backbone = hat_mlp()
    heads = TaskHeads(5)
    for task in (0, 1):
        heads.add_task(task, 3)
    path = hatinspect.save_checkpoint(tmp_path / "net.safetensors", backbone, heads=heads)
    state = load_heads_state(path)
    assert state.keys() == heads.state_dict().keys()
    fresh = TaskHeads(5)
    for task in (0, 1):
        fresh.add_task(task, 3)
    fresh.load_state_dict(state)
    for key, value in heads.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_plain_backbone_without_masks_round_trips(tmp_path):
    torch.manual_seed(0)
    backbone = MLP(6, [5], 4, batch_normalisation=True).eval()
    path = hatinspect.save_checkpoint(tmp_path / "plain.safetensors", backbone)
    assert hatinspect.open_checkpoint(path).task_ids == ()
    rebuilt = hatinspect.load_backbone(path).eval()
    x = torch.randn(3, 6)
    assert torch.equal(rebuilt(x, "test")[0], backbone(x, "test")[0])


def test_failed_save_leaves_the_existing_file_and_no_temporary(tmp_path):
    path = hatinspect.save_checkpoint(tmp_path / "net.safetensors", hat_mlp())
    before = path.read_bytes()
    broken = hat_mlp()
    broken.masks[0]["fc/0"] = torch.full_like(broken.masks[0]["fc/0"], 0.5)
    with pytest.raises(hatinspect.CheckpointError, match="not binary"):
        hatinspect.save_checkpoint(path, broken)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.safetensors"]


def test_save_replaces_an_existing_file(tmp_path):
    path = hatinspect.save_checkpoint(tmp_path / "net.safetensors", hat_mlp(tasks=(0,)))
    hatinspect.save_checkpoint(path, hat_mlp(tasks=(0, 1, 2)))
    assert hatinspect.open_checkpoint(path).task_ids == (0, 1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.safetensors"]


def test_the_file_is_on_disk_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        real_fsync(fd)
        events.append(f"fsync {kind}")

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    hatinspect.save_checkpoint(tmp_path / "net.safetensors", hat_mlp())
    assert events == ["fsync file", "replace", "fsync folder"]


def test_unserialisable_metadata_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not JSON"):
        hatinspect.save_checkpoint(tmp_path / "n.safetensors", hat_mlp(), metadata={"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_load_backbone_refuses_a_converted_foreign_file(tmp_path):
    from support.checkpoint_factories import original_hat_state, torch_save

    src = torch_save(tmp_path / "hat.pt", original_hat_state()[0])
    dst = hatinspect.convert(src, tmp_path / "hat.safetensors")
    with pytest.raises(hatinspect.CheckpointError, match="no hatinspect backbone to rebuild"):
        hatinspect.load_backbone(dst)
