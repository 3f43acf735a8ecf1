"""The torch-free reader on native files built from plain numpy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
from checkpoint_factories import (
    binary_masks,
    linear_layers,
    native_metadata,
    native_tensors,
    write_native,
)
from safetensors import safe_open

import hatinspect
from hatinspect.checkpoints import read_tensors
from hatinspect.core import blocks, reader
from hatinspect.core import format as fmt


@pytest.fixture
def layers():
    return linear_layers((6, 5, 4, 3))


@pytest.fixture
def masks(layers):
    return binary_masks({layer.name: layer.units for layer in layers}, (1, 2, 5), seed=3)


def test_reads_layers_tasks_and_masks(tmp_path, layers, masks):
    path = write_native(tmp_path / "n.safetensors", layers, masks)
    checkpoint = hatinspect.open_checkpoint(path)
    assert checkpoint.path == str(path)
    assert checkpoint.layers == layers
    assert checkpoint.task_ids == (1, 2, 5)
    for task, by_layer in masks.items():
        for name, mask in by_layer.items():
            np.testing.assert_array_equal(checkpoint.masks[task][name], mask)


def test_cumulative_and_summative_against_a_double_loop(tmp_path, layers, masks):
    checkpoint = hatinspect.open_checkpoint(write_native(tmp_path / "n.safetensors", layers, masks))
    cumulative, summative = checkpoint.cumulative_mask(), checkpoint.summative_mask()
    for layer in layers:
        for unit in range(layer.units):
            used = [masks[task][layer.name][unit] for task in masks]
            assert cumulative[layer.name][unit] == max(used)
            assert summative[layer.name][unit] == sum(used)


def test_everything_is_read_only(tmp_path, layers, masks):
    checkpoint = hatinspect.open_checkpoint(write_native(tmp_path / "n.safetensors", layers, masks))
    mask = checkpoint.masks[1]["fc/0"]
    with pytest.raises(ValueError):
        mask[0] = 1
    with pytest.raises(TypeError):
        checkpoint.masks[1]["fc/0"] = mask
    with pytest.raises(TypeError):
        checkpoint.metadata["x"] = "y"


def test_user_metadata_in_key_order_whatever_the_file_order(tmp_path, layers, masks):
    """safetensors hands the metadata over in no fixed order; tables list it sorted, the
    same in every process."""
    user = {name: str(i) for i, name in enumerate("qwertyuiopasdfgh")}
    metadata = native_metadata(layers, masks, **user)
    path = write_native(tmp_path / "n.safetensors", layers, masks, metadata=metadata)
    assert list(hatinspect.open_checkpoint(path).metadata) == sorted(user)


def test_user_metadata_as_strings(tmp_path, layers, masks):
    from checkpoint_factories import native_metadata

    metadata = native_metadata(layers, masks, s_max=400, algorithm="AdaHAT", acc=[0.9, 0.8])
    path = write_native(tmp_path / "n.safetensors", layers, masks, metadata=metadata)
    assert dict(hatinspect.open_checkpoint(path).metadata) == {
        "s_max": "400",
        "algorithm": "AdaHAT",
        "acc": "[0.9, 0.8]",
    }


def test_layer_order_is_the_stored_order_not_key_order(tmp_path, masks):
    # network order z -> a -> m, which no sorting of the names or keys gives
    names = {"fc/0": "z", "fc/1": "a", "fc/2": "m"}
    layers = tuple(
        replace(layer, name=names[layer.name], preceding=names.get(layer.preceding))
        for layer in linear_layers((6, 5, 4, 3))
    )
    renamed = {t: {names[n]: m for n, m in by_layer.items()} for t, by_layer in masks.items()}
    path = write_native(tmp_path / "n.safetensors", layers, renamed)
    assert hatinspect.open_checkpoint(path).layer_names == ["z", "a", "m"]


def test_only_mask_tensors_are_read(tmp_path, layers, masks, monkeypatch):
    """No byte of a weight or bias is read: every read lies inside the mask tensors."""
    path = write_native(tmp_path / "n.safetensors", layers, masks)
    reads = []
    real_read = blocks.TensorFile.read_bytes

    def spy(self, offset, size):
        reads.append((offset, offset + size))
        return real_read(self, offset, size)

    monkeypatch.setattr(blocks.TensorFile, "read_bytes", spy)
    hatinspect.open_checkpoint(path)
    with safe_open(path, framework="numpy") as f:
        keys = list(f.keys())
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    table = json.loads(path.read_bytes()[8 : 8 + header_length])
    spans = {k: [8 + header_length + o for o in table[k]["data_offsets"]] for k in keys}
    weights = [spans[k] for k in keys if not k.startswith("mask.")]
    assert reads and weights
    for begin, end in reads:
        assert all(end <= w_begin or begin >= w_end for w_begin, w_end in weights)


@pytest.mark.parametrize("bad_task", [None, 1, 5])
def test_masks_far_apart_are_read_one_by_one(tmp_path, layers, masks, bad_task):
    """Masks separated by more than the slack (a foreign writer's order) are read each on
    its own, and a value other than 0 or 1 in any of them is still refused by name."""
    tensors = native_tensors(layers, masks)
    if bad_task is not None:
        key = fmt.mask_key(bad_task, layers[-1].name)
        tensors[key] = tensors[key].copy()
        tensors[key][-1] = 2
    keys = sorted(tensors, key=lambda k: (k.startswith("mask."), k))
    filler = np.zeros(2 * reader.MASK_SPAN_SLACK, np.uint8)  # between two masks
    ordered = {k: tensors[k] for k in keys[:-1]} | {"filler": filler, keys[-1]: tensors[keys[-1]]}
    path = tmp_path / "apart.safetensors"
    blocks.write_stream(
        path,
        {k: (v.dtype, v.shape, [v]) for k, v in ordered.items()},
        native_metadata(layers, masks),
    )
    if bad_task is not None:
        with pytest.raises(hatinspect.CheckpointError, match=f"mask.{bad_task}.*not binary"):
            hatinspect.open_checkpoint(path)
        return
    checkpoint = hatinspect.open_checkpoint(path)
    for task, by_layer in masks.items():
        for name, mask in by_layer.items():
            assert checkpoint.masks[task][name].tolist() == list(mask)


def test_read_tensors(tmp_path, layers, masks):
    from checkpoint_factories import native_tensors

    path = write_native(tmp_path / "n.safetensors", layers, masks)
    expected = native_tensors(layers, masks)
    keys = [layers[1].weight_key, layers[1].bias_key]
    for key, value in read_tensors(path, keys).items():
        np.testing.assert_array_equal(value, expected[key])
    with pytest.raises(hatinspect.CheckpointError, match="no tensor 'nope'"):
        read_tensors(path, ["nope"])


def test_bool_masks_are_accepted(tmp_path, layers, masks):
    from checkpoint_factories import native_metadata, native_tensors

    tensors = native_tensors(layers, masks)
    tensors = {k: v.astype(bool) if k.startswith("mask.") else v for k, v in tensors.items()}
    path = write_native(
        tmp_path / "n.safetensors",
        layers,
        masks,
        tensors=tensors,
        metadata=native_metadata(layers, masks),
    )
    checkpoint = hatinspect.open_checkpoint(path)
    assert checkpoint.masks[1]["fc/0"].dtype == np.uint8


def test_reading_native_files_never_imports_torch(tmp_path):
    path = write_native(tmp_path / "n.safetensors")
    layer_key = linear_layers()[0].weight_key
    script = textwrap.dedent(f"""
        import sys
        import hatinspect
        from hatinspect.checkpoints import read_tensors
        checkpoint = hatinspect.open_checkpoint({str(path)!r})
        checkpoint.cumulative_mask(), checkpoint.summative_mask()
        read_tensors({str(path)!r}, [{layer_key!r}])
        assert "torch" not in sys.modules, "torch was imported"
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_header_length_starting_with_the_pickle_byte_is_still_safetensors(tmp_path, layers):
    from checkpoint_factories import native_metadata

    masks = binary_masks({layer.name: layer.units for layer in layers}, (0,))
    for padding in range(256):
        path = write_native(
            tmp_path / "n.bin",
            layers,
            masks,
            metadata=native_metadata(layers, masks, pad="x" * padding),
        )
        if path.read_bytes()[0] == 0x80:  # what a pickle's PROTO opcode starts with
            break
    else:
        pytest.fail("no padding gave a header length whose first byte is 0x80")
    assert hatinspect.open_checkpoint(path).task_ids == (0,)
