"""The torch-free reader on native files built from plain numpy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support.checkpoint_factories import (
    binary_masks,
    linear_layers,
    native_metadata,
    native_tensors,
    write_native,
)

import hatinspect
from hatinspect.checkpoints import read_tensors
from hatinspect.native import blocks, reader
from hatinspect.native import format as fmt


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
    from support.checkpoint_factories import native_metadata

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


def write_in_order(path, tensors: list[tuple[str, np.ndarray, str]], metadata) -> Path:
    """A safetensors file with its (key, array, dtype name) tensors stored in the given
    order, which ``save_file`` (sorting by dtype and name) would not keep."""
    entries, offset = {"__metadata__": metadata}, 0
    for key, array, dtype in tensors:
        entries[key] = {"dtype": dtype, "shape": list(array.shape)}
        entries[key]["data_offsets"] = [offset, offset := offset + array.nbytes]
    header = json.dumps(entries).encode()
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        for _, array, _ in tensors:
            f.write(array.tobytes())
    return Path(path)


def interleaved(tmp_path, layers, masks) -> tuple[Path, dict[str, range]]:
    """A native file whose masks lie between the weights, task 2's as BOOL with bytes
    of 7 for True; and the bytes of the file each mask is stored in."""
    from support.checkpoint_factories import native_metadata, native_tensors

    stored, ranges, at = [], {}, 0
    for key, array in native_tensors(layers, masks).items():
        dtype = "F32" if array.dtype == np.float32 else "U8"
        if key.startswith("mask.2."):
            array, dtype = array * np.uint8(7), "BOOL"
        stored.append((key, array, dtype))
    stored = sorted(stored, key=lambda t: t[0].split(".")[-1])  # masks among the weights
    for key, array, _ in stored:
        ranges[key], at = range(at, at + array.nbytes), at + array.nbytes
    path = write_in_order(tmp_path / "i.safetensors", stored, native_metadata(layers, masks))
    data = path.stat().st_size - at
    return path, {k: range(r.start + data, r.stop + data) for k, r in ranges.items()}


def test_masks_among_the_weights_and_bool_bytes(tmp_path, layers, masks):
    path, _ = interleaved(tmp_path, layers, masks)
    checkpoint = hatinspect.open_checkpoint(path)
    for task, by_layer in masks.items():
        for name, mask in by_layer.items():
            assert checkpoint.masks[task][name].tolist() == [int(v) for v in mask]


def test_only_mask_bytes_are_read(tmp_path, layers, masks, monkeypatch):
    path, ranges = interleaved(tmp_path, layers, masks)
    read = set()

    class Spy:  # a file that notes which bytes were read from it
        def __init__(self, *args, **kwargs):
            self.file = open(*args, **kwargs)  # noqa: SIM115 (closed by __exit__)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def __getattr__(self, name):
            method = getattr(self.file, name)
            if name not in ("read", "readinto"):
                return method

            def reading(*args):
                start = self.file.tell()
                done = method(*args)
                read.update(range(start, self.file.tell()))
                return done

            return reading

    monkeypatch.setattr(reader, "open", Spy, raising=False)
    hatinspect.open_checkpoint(path)
    masks_bytes = {b for key, span in ranges.items() if key.startswith("mask.") for b in span}
    data = min(span.start for span in ranges.values())
    assert {b for b in read if b >= data} == masks_bytes


def test_masks_read_one_by_one_without_offset_keys(tmp_path, layers, masks, monkeypatch):
    path, _ = interleaved(tmp_path, layers, masks)
    real_open = reader.safe_open

    class Older:  # safetensors before offset_keys
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def __enter__(self):
            self.handle = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def keys(self):
            return self.handle.keys()

        def get_slice(self, key):
            return self.handle.get_slice(key)

        def get_tensor(self, key):
            return self.handle.get_tensor(key)

        def metadata(self):
            return self.handle.metadata()

    monkeypatch.setattr(reader, "safe_open", Older)
    checkpoint = hatinspect.open_checkpoint(path)
    for task, by_layer in masks.items():
        for name, mask in by_layer.items():
            assert checkpoint.masks[task][name].tolist() == [int(v) for v in mask]


@pytest.mark.parametrize("bad_task", [None, 1, 5])
def test_masks_far_apart(tmp_path, layers, masks, bad_task):
    """Masks with megabytes between them (a foreign writer's order) read as stored, and a
    value other than 0 or 1 in any of them is refused by name."""
    tensors = native_tensors(layers, masks)
    if bad_task is not None:
        key = fmt.mask_key(bad_task, layers[-1].name)
        tensors[key] = tensors[key].copy()
        tensors[key][-1] = 2
    keys = sorted(tensors, key=lambda k: (k.startswith("mask."), k))
    filler = np.zeros(2 * 2**20, np.uint8)  # between two masks
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
    from support.checkpoint_factories import native_tensors

    path = write_native(tmp_path / "n.safetensors", layers, masks)
    expected = native_tensors(layers, masks)
    keys = [layers[1].weight_key, layers[1].bias_key]
    for key, value in read_tensors(path, keys).items():
        np.testing.assert_array_equal(value, expected[key])
    with pytest.raises(hatinspect.CheckpointError, match="no tensor 'nope'"):
        read_tensors(path, ["nope"])


def test_bool_masks_are_accepted(tmp_path, layers, masks):
    from support.checkpoint_factories import native_metadata, native_tensors

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
    from support.checkpoint_factories import native_metadata

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
