"""The torch-free reader on native files built from plain numpy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
from checkpoint_factories import binary_masks, linear_layers, write_native

import hatinspect
from hatinspect.checkpoints import read_tensors
from hatinspect.core import reader


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


def test_only_mask_tensors_are_loaded(tmp_path, layers, masks, monkeypatch):
    path = write_native(tmp_path / "n.safetensors", layers, masks)
    loaded = []
    real_open = reader.safe_open

    class Spy:
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def __enter__(self):
            self.handle = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def get_tensor(self, key):
            loaded.append(key)
            return self.handle.get_tensor(key)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(reader, "safe_open", Spy)
    hatinspect.open_checkpoint(path)
    assert loaded and all(key.startswith("mask.") for key in loaded)


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
