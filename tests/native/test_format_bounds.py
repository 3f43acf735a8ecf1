"""What hatinspect's own backbones are, it saves and opens again: no bound on a count
refuses a network the backbones build, only safetensors' header limit, refused at saving."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import hatinspect
from hatinspect.backbones import HATMaskMLP, HATMaskResNet152
from hatinspect.backbones.layers import describe_layers
from hatinspect.model.errors import CheckpointError
from hatinspect.native import format as fmt
from hatinspect.torch_io.save import header_bytes, prefixed, write_checkpoint


def random_masks(backbone, tasks: int, seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """Task -> layer -> (units,) 0/1 float mask, as ``store_mask`` leaves them; one random
    draw split into views (200,000 draws of a few units each would take seconds)."""
    names = backbone.weighted_layer_names
    units = [backbone.get_layer_by_name(name).weight.shape[0] for name in names]
    bits = torch.from_numpy(np.random.default_rng(seed).integers(0, 2, (tasks, sum(units))))
    rows = bits.float().split(units, dim=1)  # rows[layer]: (tasks, units)
    return {task: {name: rows[i][task] for i, name in enumerate(names)} for task in range(tasks)}


def header_length(path) -> int:
    with open(path, "rb") as f:
        return int.from_bytes(f.read(8), "little")


def assert_reopens(path, backbone) -> None:
    """The file's layers, tasks and every mask are the backbone's."""
    checkpoint = hatinspect.open_checkpoint(path)
    assert [layer.name for layer in checkpoint.layers] == list(backbone.weighted_layer_names)
    assert checkpoint.task_ids == tuple(sorted(backbone.masks))
    for task, mask in backbone.masks.items():
        for name, values in mask.items():
            np.testing.assert_array_equal(checkpoint.masks[task][name], values.numpy())


def test_an_mlp_of_over_1024_layers_saves_and_rebuilds(tmp_path):
    # the config's hidden_dims has an entry per layer: a file of 1,100 was refused
    backbone = HATMaskMLP(3, [2 + i % 3 for i in range(1100)], 2, "sigmoid")
    backbone.masks = random_masks(backbone, tasks=2)
    path = hatinspect.save_checkpoint(tmp_path / "deep.safetensors", backbone)
    assert_reopens(path, backbone)
    rebuilt = hatinspect.load_backbone(path)
    assert rebuilt.config["hidden_dims"] == backbone.config["hidden_dims"]


def test_a_config_list_is_bounded_by_the_layers_the_file_describes():
    hidden = [2] * 50_000
    config = {"hidden_dims": hidden, "gate": "sigmoid"}
    assert fmt.check_config(config, layers=50_001)["hidden_dims"] == hidden
    with pytest.raises(ValueError, match="'hidden_dims' holds no usable value"):
        fmt.check_config(config, layers=4)  # 50,000 layers to build for a file of 4


def test_an_imported_mlp_of_2000_layers_converts_and_opens(tmp_path):
    # a foreign file's config is checked before its backbone is built, without a layer count
    backbone = HATMaskMLP(3, [2 + i % 3 for i in range(2000)], 2, "sigmoid")
    backbone.masks = random_masks(backbone, tasks=2)
    payload = {
        "state_dict": backbone.state_dict(),
        "masks": backbone.masks,
        "backbone": type(backbone).__name__,
        "config": backbone.config,
    }
    torch.save(payload, tmp_path / "deep.pt")
    converted = hatinspect.convert(tmp_path / "deep.pt", tmp_path / "deep.safetensors")
    assert_reopens(converted, backbone)


@pytest.mark.slow
def test_an_mlp_of_10000_layers_and_20_tasks_saves_and_opens(tmp_path):
    backbone = HATMaskMLP(3, [2 + i % 3 for i in range(10_000)], 2, "sigmoid")
    backbone.masks = random_masks(backbone, tasks=20)
    path = hatinspect.save_checkpoint(tmp_path / "deep.safetensors", backbone)
    assert_reopens(path, backbone)
    assert header_length(path) < fmt.MAX_HEADER_BYTES


@pytest.mark.slow
def test_a_resnet152_with_1000_tasks_saves_and_opens(tmp_path):
    backbone = HATMaskResNet152(3, 2048, "sigmoid")
    backbone.masks = random_masks(backbone, tasks=1000, seed=1)
    path = hatinspect.save_checkpoint(tmp_path / "r152.safetensors", backbone)
    assert_reopens(path, backbone)


def test_header_bytes_brackets_the_written_length(tmp_path):
    backbone = HATMaskMLP(3, [4, 3], 2, "sigmoid")
    backbone.masks = random_masks(backbone, tasks=3)
    path = hatinspect.save_checkpoint(tmp_path / "net.safetensors", backbone)
    length = header_length(path)
    with open(path, "rb") as f:
        header = json.loads(f.read(8 + length)[8:])
    metadata = header.pop("__metadata__")
    tensors = {key: torch.zeros(entry["shape"]) for key, entry in header.items()}
    # the least spells every dtype in two letters and every offset in one digit
    shortest = {
        key: {**entry, "dtype": "U8", "data_offsets": [0, 0]} for key, entry in header.items()
    }
    compact = json.dumps({"__metadata__": metadata, **shortest}, separators=(",", ":"))
    least, most = header_bytes(tensors, metadata)
    assert least == len(compact.encode()) < length <= most


def test_a_header_over_safetensors_limit_is_refused_before_writing(tmp_path):
    backbone = HATMaskMLP(3, [4], 2, "sigmoid")
    target = tmp_path / "net.safetensors"
    target.write_bytes(b"an earlier file")
    note = "x" * fmt.MAX_HEADER_BYTES  # the header holds the user's metadata as it is
    with pytest.raises(CheckpointError) as refused:
        hatinspect.save_checkpoint(target, backbone, metadata={"note": note})
    message = str(refused.value)
    assert "\n" not in message and "safetensors' limit of 100,000,000" in message
    assert str(target) in message
    assert target.read_bytes() == b"an earlier file"
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]


def test_a_header_the_offsets_take_over_the_limit_is_refused_in_one_line(tmp_path):
    backbone = HATMaskMLP(3, [4], 2, "sigmoid")
    tensors = prefixed(fmt.BACKBONE_PREFIX, backbone.state_dict())
    layers = describe_layers(backbone)
    # a note that leaves the least header one byte under the limit: the F32 weights'
    # dtype names and data offsets take the header written over it
    header = fmt.Header("HATMaskMLP", None, layers, task_ids=(), user={"note": ""})
    least, _ = header_bytes(tensors, fmt.encode_header(header))
    header = dataclasses.replace(header, user={"note": "x" * (fmt.MAX_HEADER_BYTES - 1 - least)})
    assert header_bytes(tensors, fmt.encode_header(header))[0] == fmt.MAX_HEADER_BYTES - 1
    with pytest.raises(CheckpointError, match="safetensors' limit of 100,000,000") as refused:
        write_checkpoint(tmp_path / "net.safetensors", tensors, header)
    assert str(tmp_path / "net.safetensors") in str(refused.value)
    assert list(tmp_path.iterdir()) == []
