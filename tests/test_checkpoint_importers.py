"""Foreign layouts, built here from plain tensors, read back with the right masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checkpoint_factories import (
    clarena_state,
    hat_cl_state,
    hat_mlp,
    original_hat_state,
    stored_masks,
    torch_save,
)

import hatinspect
from hatinspect.backbones import HATMaskMLP, HATMaskResNet18, HATMaskResNet50
from hatinspect.core.reader import read_tensors
from hatinspect.storage.importers import _preceding_by_blocks
from hatinspect.storage.save import describe_layers


def assert_masks(checkpoint, expected):
    assert checkpoint.task_ids == tuple(sorted(expected))
    for task, by_layer in expected.items():
        assert set(checkpoint.masks[task]) == set(by_layer)
        for name, mask in by_layer.items():
            np.testing.assert_array_equal(checkpoint.masks[task][name], mask)
            assert checkpoint.masks[task][name].dtype == np.uint8
            assert not checkpoint.masks[task][name].flags.writeable


def test_original_hat(tmp_path):
    state, expected = original_hat_state(n_tasks=3)
    checkpoint = hatinspect.open_checkpoint(torch_save(tmp_path / "hat.pt", state))
    assert checkpoint.source == "original-hat"
    assert checkpoint.layer_names == ["c1", "c2", "fc1", "fc2"]
    assert [layer.preceding for layer in checkpoint.layers] == [None, "c1", "c2", "fc1"]
    assert checkpoint.layer("fc1").weight_shape == (6, 20)
    assert_masks(checkpoint, expected)
    assert any("e > 0" in note for note in checkpoint.notes)


def test_hat_cl_reads_trained_tasks_only(tmp_path):
    state, expected = hat_cl_state(n_tasks=4, trained=(0, 2))
    checkpoint = hatinspect.open_checkpoint(torch_save(tmp_path / "hatcl.pth", state))
    assert checkpoint.source == "hat-cl"
    assert checkpoint.layer_names == ["features/0", "classifier/0", "classifier/2"]
    assert checkpoint.layer("features/0").weight_key == "features.0.weight"
    assert_masks(checkpoint, expected)


def test_clarena_recovers_the_last_task_and_says_so(tmp_path):
    state, expected = clarena_state(last_task=3)
    checkpoint = hatinspect.open_checkpoint(torch_save(tmp_path / "clarena.ckpt", state))
    assert checkpoint.source == "clarena"
    assert checkpoint.layer_names == list(expected[3])  # block copies are not extra layers
    assert checkpoint.layer("conv2x/0/shortcut").preceding == "conv1"
    assert checkpoint.layer("conv2x/0/conv2").preceding == "conv2x/0/conv1"
    assert_masks(checkpoint, expected)
    assert any("only task 3" in note for note in checkpoint.notes)


def test_lightning_wrapper_is_unwrapped(tmp_path):
    state, expected = clarena_state(last_task=2)
    wrapped = {
        "state_dict": state,
        "epoch": 4,
        "global_step": 100,
        "pytorch-lightning_version": "2",
    }
    checkpoint = hatinspect.open_checkpoint(torch_save(tmp_path / "last.ckpt", wrapped))
    assert_masks(checkpoint, expected)


def test_hatinspect_state_dict_keeps_the_current_task(tmp_path):
    backbone = hat_mlp(tasks=(0, 1))
    path = torch_save(tmp_path / "sd.pt", backbone.state_dict())
    checkpoint = hatinspect.open_checkpoint(path)
    assert checkpoint.source == "hatinspect"
    assert checkpoint.layer_names == backbone.weighted_layer_names
    current = {n: m.numpy().astype(np.uint8) for n, m in backbone.te_to_binary_mask().items()}
    assert_masks(checkpoint, {0: current})


def test_hatinspect_dict_keeps_every_mask_and_converts_to_a_rebuildable_file(tmp_path):
    backbone = hat_mlp(tasks=(0, 1, 2)).eval()
    bundle = {
        "state_dict": backbone.state_dict(),
        "masks": backbone.masks,
        "backbone": type(backbone).__name__,
        "config": backbone.config,
        "task_id": backbone.task_id,
    }
    src = torch_save(tmp_path / "bundle.pt", bundle)
    checkpoint = hatinspect.open_checkpoint(src)
    assert checkpoint.backbone == "HATMaskMLP" and checkpoint.notes == ()
    assert_masks(checkpoint, stored_masks(backbone))
    rebuilt = hatinspect.load_backbone(hatinspect.convert(src, tmp_path / "n.safetensors")).eval()
    x = torch.randn(4, 6)
    for task, mask in backbone.masks.items():
        assert torch.equal(
            rebuilt(x, "test", test_mask=rebuilt.masks[task])[0],
            backbone(x, "test", test_mask=mask)[0],
        )


@pytest.mark.parametrize(
    ("build", "name"),
    [(original_hat_state, "hat.pt"), (hat_cl_state, "cl.pth"), (clarena_state, "c.ckpt")],
)
def test_convert_keeps_masks_layers_and_source(tmp_path, build, name):
    state, expected = build()
    src = torch_save(tmp_path / name, state)
    before = src.read_bytes()
    foreign = hatinspect.open_checkpoint(src)
    native = hatinspect.open_checkpoint(hatinspect.convert(src, tmp_path / "out.safetensors"))
    assert src.read_bytes() == before
    assert native.source == foreign.source and native.notes == foreign.notes
    assert native.layer_names == foreign.layer_names
    assert [x.preceding for x in native.layers] == [x.preceding for x in foreign.layers]
    assert_masks(native, expected)
    layer = native.layers[0]
    np.testing.assert_array_equal(
        read_tensors(native.path, [layer.weight_key])[layer.weight_key],
        read_tensors(src, [foreign.layers[0].weight_key])[foreign.layers[0].weight_key],
    )


def test_source_override_and_unknown_source(tmp_path):
    state, expected = original_hat_state()
    path = torch_save(tmp_path / "hat.pt", state)
    assert_masks(hatinspect.open_checkpoint(path, source="original-hat"), expected)
    with pytest.raises(hatinspect.CheckpointError, match="no HAT-CL"):
        hatinspect.open_checkpoint(path, source="hat-cl")
    with pytest.raises(hatinspect.CheckpointError, match="unknown source"):
        hatinspect.open_checkpoint(path, source="avalanche")


def test_a_state_dict_without_masks_is_refused(tmp_path):
    path = torch_save(tmp_path / "plain.pt", {"fc.weight": torch.zeros(3, 2)})
    with pytest.raises(hatinspect.CheckpointError, match="no HAT masks found"):
        hatinspect.open_checkpoint(path)


def test_nan_embedding_is_an_error_not_a_zero(tmp_path):
    state, _ = original_hat_state()
    state["ec1.weight"][1, 0] = float("nan")
    with pytest.raises(hatinspect.CheckpointError, match="NaN"):
        hatinspect.open_checkpoint(torch_save(tmp_path / "nan.pt", state))


@pytest.mark.parametrize(
    "build",
    [
        lambda: HATMaskMLP(4, [5, 6], 3, "sigmoid"),
        lambda: HATMaskResNet18(3, 512, "sigmoid"),
        lambda: HATMaskResNet50(3, 2048, "sigmoid"),
    ],
)
def test_inferred_preceding_matches_the_real_data_flow(build):
    with torch.device("meta"):
        layers = list(describe_layers(build()))
    inferred = _preceding_by_blocks(layers)
    assert inferred == [layer.preceding for layer in layers]
