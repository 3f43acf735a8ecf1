"""Foreign layouts, built here from plain tensors, read back with the right masks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from support.checkpoint_factories import (
    PEERS,
    binary_masks,
    hat_mlp,
    linear_layers,
    original_hat_state,
    peer_truth,
    stored_masks,
    torch_save,
    truth_masks,
)

import hatinspect
from hatinspect.backbones import HATMaskMLP, HATMaskResNet18, HATMaskResNet50
from hatinspect.backbones.layers import describe_layers
from hatinspect.checkpoints import read_tensors
from hatinspect.importers.flow import infer_flow


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


def test_hat_cl_reads_trained_tasks_only():
    checkpoint = hatinspect.open_checkpoint(PEERS / "hatcl_resnet.pt")
    truth = peer_truth("hatcl_resnet.pt")
    assert checkpoint.source == "hat-cl"
    assert checkpoint.task_ids == (0, 1)  # of its 3 attention rows, 2 were trained
    assert checkpoint.layer("layer2/0/downsample/0").weight_key == "layer2.0.downsample.0.weight"
    assert_masks(checkpoint, truth_masks(truth))


def test_clarena_recovers_the_last_task_and_says_so():
    checkpoint = hatinspect.open_checkpoint(PEERS / "clarena_hat_resnet_state.ckpt")
    assert checkpoint.source == "clarena"
    assert checkpoint.layer_names == [
        layer["name"] for layer in peer_truth("clarena_hat_resnet.pth")["layers"]
    ]
    assert_masks(checkpoint, truth_masks(peer_truth("clarena_hat_resnet_state.ckpt")))
    assert any("task 3's mask is recovered" in note for note in checkpoint.notes)


def test_hatinspect_state_dict_keeps_the_current_task(tmp_path):
    backbone = hat_mlp(tasks=(0, 1))
    path = torch_save(tmp_path / "sd.pt", backbone.state_dict())
    # a bare backbone state_dict has CLArena's layout; the source names it hatinspect
    assert hatinspect.open_checkpoint(path).source == "clarena"
    checkpoint = hatinspect.open_checkpoint(path, source="hatinspect")
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


def test_convert_writes_the_source_tensors_and_masks_unchanged(tmp_path):
    backbone = hat_mlp(tasks=(0, 1, 2)).eval()
    bundle = {"state_dict": backbone.state_dict(), "masks": backbone.masks,
              "backbone": type(backbone).__name__, "config": backbone.config}  # fmt: skip
    src = torch_save(tmp_path / "bundle.pt", bundle)
    out = hatinspect.convert(src, tmp_path / "n.safetensors")
    with safe_open(out, framework="pt") as f:
        for key, value in backbone.state_dict().items():
            assert torch.equal(f.get_tensor(f"backbone.{key}"), value), key
        for task, masks in backbone.masks.items():
            for name, mask in masks.items():
                written = f.get_tensor(f"mask.{task}.{name}")
                assert written.dtype == torch.uint8
                assert torch.equal(written, mask.reshape(-1).to(torch.uint8)), (task, name)
        stored = {f"mask.{t}.{n}" for t, masks in backbone.masks.items() for n in masks}
        assert {k for k in f.keys() if k.startswith("mask.")} == stored


def _original(tmp_path):
    state, expected = original_hat_state()
    return torch_save(tmp_path / "hat.pt", state), expected


def _peer(name):
    return lambda tmp_path: (PEERS / name, truth_masks(peer_truth(name)))


@pytest.mark.parametrize(
    "make",
    [
        _original,
        _peer("hatcl_resnet.pt"),
        _peer("clarena_hat_resnet_state.ckpt"),
        _peer("clarena_hat_mlp.pth"),
        _peer("clarena_adahat_resnet.pth"),
    ],
)
def test_convert_keeps_masks_layers_and_source(tmp_path, make):
    src, expected = make(tmp_path)
    before = src.read_bytes()
    foreign = hatinspect.open_checkpoint(src)
    native = hatinspect.open_checkpoint(hatinspect.convert(src, tmp_path / "out.safetensors"))
    assert src.read_bytes() == before
    assert native.source == foreign.source and native.notes == foreign.notes
    assert native.layer_names == foreign.layer_names
    assert [x.preceding for x in native.layers] == [x.preceding for x in foreign.layers]
    assert [x.preceding_inferred for x in native.layers] == [
        x.preceding_inferred for x in foreign.layers
    ]
    assert_masks(native, expected)
    layer = native.layers[0]
    np.testing.assert_array_equal(
        read_tensors(native.path, [layer.weight_key])[layer.weight_key],
        read_tensors(src, [foreign.layers[0].weight_key])[foreign.layers[0].weight_key],
    )


def test_a_pytorch_file_audits_against_its_converted_twin(tmp_path):
    state, _ = original_hat_state()
    src = torch_save(tmp_path / "hat.pt", state)
    native = hatinspect.convert(src, tmp_path / "hat.safetensors")
    both_ways = [hatinspect.audit(src, native), hatinspect.audit(native, src)]
    same_kind = hatinspect.audit(src, src)
    for report in both_ways:
        assert report.ok
        assert [(r.name, r.protected, r.changed) for r in report.layers] == [
            (r.name, r.protected, r.changed) for r in same_kind.layers
        ]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn], ids=str)
def test_read_tensors_widens_what_numpy_lacks(tmp_path, dtype):
    state, _ = original_hat_state()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].to(dtype)
    path = torch_save(tmp_path / "narrow.pt", state)
    value = read_tensors(path, [key])[key]
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, state[key].float().numpy())


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
def test_inferred_flow_matches_the_real_data_flow_whatever_the_key_order(build):
    with torch.device("meta"):
        layers = list(describe_layers(build()))
    # blocks' layers in reverse order: the flow must not come from the file's key order
    # (a network without blocks keeps its order: nothing else tells it)
    blocks = len({layer.name.rpartition("/")[0] for layer in layers}) > 2
    shuffled = [replace(layer, preceding=None) for layer in (layers[::-1] if blocks else layers)]
    inferred = infer_flow(Path("x.pt"), shuffled)
    assert [(x.name, x.preceding) for x in inferred] == [(x.name, x.preceding) for x in layers]


def _layer(name, shape):
    return hatinspect.LayerInfo(name, shape[0], shape, f"{name}.weight", None, None)


@pytest.mark.parametrize("shortcut", ["shortcut", "downsample/0", "identity_downsample"])
def test_every_projection_shortcut_name_reads_the_block_input(shortcut):
    layers = [
        _layer("stage2/0/conv2", (6, 6, 3, 3)),
        _layer(f"stage2/0/{shortcut}", (6, 4, 1, 1)),
        _layer("stage2/0/conv1", (6, 4, 3, 3)),
        _layer("stage1/0/conv2", (4, 4, 3, 3)),
        _layer("stage1/0/conv1", (4, 4, 3, 3)),
        _layer("conv1", (4, 3, 3, 3)),
    ]
    flow = {x.name: x.preceding for x in infer_flow(Path("x.pt"), layers)}
    assert flow == {
        "conv1": None,
        "stage1/0/conv1": "conv1",
        "stage1/0/conv2": "stage1/0/conv1",
        "stage2/0/conv1": "stage1/0/conv2",
        "stage2/0/conv2": "stage2/0/conv1",
        f"stage2/0/{shortcut}": "stage1/0/conv2",
    }


def test_blocks_sort_by_their_numbers_whatever_their_length():
    """Block numbers in value order, a 5,000-digit one last (``int`` of it would raise)."""
    from hatinspect.importers.flow import _natural

    names = ["layer10", "layer" + "9" * 5000, "layer2", "layer02x", "layer1/0", "layerx"]
    assert sorted(names, key=_natural) == [
        "layer1/0", "layer2", "layer02x", "layer10", "layer" + "9" * 5000, "layerx",
    ]  # fmt: skip


def test_a_flow_the_shapes_refuse_is_one_error_naming_the_layer():
    layers = [_layer("conv1", (4, 3, 3, 3)), _layer("layer1/0/conv1", (4, 5, 3, 3))]
    with pytest.raises(hatinspect.CheckpointError) as error:
        infer_flow(Path("x.pt"), layers)
    message = str(error.value)
    assert "'layer1/0/conv1'" in message and "'conv1'" in message and "\n" not in message


def test_a_native_file_naming_an_unknown_inferred_layer_is_refused(tmp_path):
    from support.checkpoint_factories import native_metadata, write_native

    from hatinspect.native import format as fmt

    metadata = native_metadata(linear_layers(), binary_masks({"fc/0": 5}, ()))
    metadata[fmt.INFERRED_KEY] = '["fc/0"]'  # fc/0 has no preceding layer
    path = write_native(tmp_path / "n.safetensors", metadata=metadata, masks={})
    with pytest.raises(hatinspect.CheckpointError, match="preceding_inferred"):
        hatinspect.open_checkpoint(path)
