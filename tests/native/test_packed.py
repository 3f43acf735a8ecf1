"""Native files of masks of weights (pmask.<task>.<layer>, packed bits): read bit for bit
without unpacking, and every malformed table, length or padding refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.checkpoint_factories import write_native
from support.weight_masks import (
    LAYERS,
    loop_packed,
    packed_metadata,
    packed_tensors,
    random_masks,
    write_packed,
)

import hatinspect
from hatinspect.model.bits import PackedMasks
from hatinspect.model.checkpoint import Covers
from hatinspect.native import format as fmt


@pytest.fixture
def masks():
    return random_masks(tasks=(0, 2, 3), seed=5)


def test_reads_every_mask_bit_for_bit_without_unpacking(tmp_path, masks):
    checkpoint = hatinspect.open_checkpoint(write_packed(tmp_path / "w.safetensors", masks))
    assert checkpoint.covers == "parameters" and checkpoint.task_ids == (0, 2, 3)
    assert isinstance(checkpoint.masks, PackedMasks)  # read on demand
    for task, by_layer in masks.items():
        for layer in LAYERS:
            dense = checkpoint.masks[task][layer.name]
            assert dense.shape == layer.weight_shape and dense.dtype == np.uint8
            assert dense.tolist() == by_layer[layer.name].tolist()
            assert not dense.flags.writeable
            packed = checkpoint.packed_mask(task, layer.name)
            assert packed.tobytes() == loop_packed(by_layer[layer.name]).tobytes()


def test_a_block_of_packed_bytes_is_the_same_slice_for_all_tasks(tmp_path, masks):
    checkpoint = hatinspect.open_checkpoint(write_packed(tmp_path / "w.safetensors", masks))
    rows = checkpoint.packed_rows([3, 0], "conv1", 5, 17)
    assert rows.shape == (2, 12)
    for row, task in zip(rows, (3, 0), strict=True):
        assert row.tobytes() == loop_packed(masks[task]["conv1"])[5:17].tobytes()


def test_the_metadata_says_what_the_masks_cover_and_the_version_that_packs_them(tmp_path, masks):
    metadata = packed_metadata(masks)
    assert metadata[fmt.COVERS_KEY] == "parameters" and metadata[fmt.VERSION_KEY] == "2"
    units = write_native(tmp_path / "u.safetensors")
    from safetensors import safe_open

    with safe_open(units, framework="numpy") as f:  # masks of units: as version 1 wrote them
        assert f.metadata()[fmt.VERSION_KEY] == "1" and fmt.COVERS_KEY not in f.metadata()


def _broken(masks, change):
    tensors, metadata = packed_tensors(masks), packed_metadata(masks)
    change(tensors, metadata)
    return tensors, metadata


def _set_padding(tensors, _):
    tensors["pmask.2.conv1"] = tensors["pmask.2.conv1"].copy()
    tensors["pmask.2.conv1"][-1] |= 0x80  # 135 weights: bits 7.. of the last byte are padding


CASES = {
    "padding bit set": (_set_padding, "padding bits set past its 135 weights"),
    "a byte short": (
        lambda t, m: t.__setitem__("pmask.0.fc", t["pmask.0.fc"][:-1]),
        "'pmask.0.fc' is U8 of shape (20,), expected U8 of shape (21,)",
    ),
    "wrong dtype": (
        lambda t, m: t.__setitem__("pmask.3.out", t["pmask.3.out"].astype(np.int16)),
        "is I16 of shape (1,)",
    ),
    "dense mask": (
        lambda t, m: t.__setitem__("pmask.0.out", np.ones((2, 3), np.uint8)),
        "expected U8 of shape (1,)",
    ),
    "missing": (lambda t, m: t.pop("pmask.2.conv2"), "no tensor 'pmask.2.conv2'"),
    "stray task": (
        lambda t, m: t.__setitem__("pmask.7.fc", t["pmask.0.fc"].copy()),
        "'pmask.7.fc' belongs to no stored task",
    ),
    "a unit mask beside": (
        lambda t, m: t.__setitem__("mask.0.fc", np.ones(3, np.uint8)),
        "'mask.0.fc' belongs to no stored task",
    ),
    "version 1": (
        lambda t, m: m.__setitem__(fmt.VERSION_KEY, "1"),
        "format version 1 cannot hold",
    ),
    "unknown covers": (
        lambda t, m: m.__setitem__(fmt.COVERS_KEY, "pixels"),
        "'hatinspect.covers' is 'pixels'",
    ),
    "newer version": (
        lambda t, m: m.__setitem__(fmt.VERSION_KEY, "3"),
        "format version 3 is newer than this hatinspect reads (2)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_file_is_one_line_of_error(tmp_path, masks, case):
    change, message = CASES[case]
    tensors, metadata = _broken(masks, change)
    path = write_packed(tmp_path / "bad.safetensors", masks, tensors=tensors, metadata=metadata)
    with pytest.raises(hatinspect.CheckpointError) as caught:
        hatinspect.open_checkpoint(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_a_unit_file_with_a_packed_mask_is_refused(tmp_path):
    from support.checkpoint_factories import binary_masks, linear_layers, native_tensors

    layers = linear_layers((4, 3))
    units = binary_masks({layer.name: layer.units for layer in layers}, (0,))
    tensors = {**native_tensors(layers, units), "pmask.0.fc/0": np.zeros(1, np.uint8)}
    path = write_native(tmp_path / "u.safetensors", layers, units, tensors=tensors)
    with pytest.raises(hatinspect.CheckpointError, match="'pmask.0.fc/0' belongs to no stored"):
        hatinspect.open_checkpoint(path)


def test_a_file_cut_after_opening_is_one_line_when_a_mask_is_read(tmp_path, masks):
    path = write_packed(tmp_path / "w.safetensors", masks)
    checkpoint = hatinspect.open_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3])
    with pytest.raises(hatinspect.CheckpointError, match="truncated"):
        for task in checkpoint.task_ids:
            for name in checkpoint.layer_names:
                checkpoint.packed_mask(task, name)


def test_random_bytes_in_the_masks_never_escape_as_anything_but_one_line(tmp_path, masks):
    """Every byte of the mask data flipped in turn: a file either opens with masks that
    unpack to 0/1 of the weight's shape, or is refused in one line."""
    path = write_packed(tmp_path / "w.safetensors", masks)
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    rng = np.random.default_rng(0)
    for offset in rng.choice(np.arange(header, len(data)), 40, replace=False):
        flipped = bytearray(data)
        flipped[offset] ^= 0xFF
        target = tmp_path / "f.safetensors"
        target.write_bytes(bytes(flipped))
        try:
            checkpoint = hatinspect.open_checkpoint(target)
        except hatinspect.CheckpointError as exc:
            assert "\n" not in str(exc)
            continue
        for task in checkpoint.task_ids:
            for layer in checkpoint.layers:
                mask = checkpoint.masks[task][layer.name]
                assert mask.shape == layer.weight_shape and set(np.unique(mask)) <= {0, 1}


def test_the_commands_on_packed_masks_import_no_torch(tmp_path, masks):
    from support.cli_runs import modules_left_out, run_in_fresh_python

    write_packed(tmp_path / "w.safetensors", masks)
    commands = [
        [*command, "-f", "json"]
        for command in (["info", "w.safetensors"], ["masks", "w.safetensors"],
                        ["capacity", "w.safetensors"], ["overlap", "w.safetensors"],
                        ["audit", "w.safetensors", "w.safetensors"])
    ]  # fmt: skip
    result = run_in_fresh_python(commands, modules_left_out("torch", "matplotlib"), tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_layer_whose_masks_cover_its_bias_reads_back_rows_of_weights_then_bias(tmp_path):
    """``bias_masked``: each unit's row of the mask holds its weights, then its bias, packed
    in that order; a record that claims it wrongly is refused in one line."""
    from dataclasses import replace

    layers = tuple(replace(layer, bias_masked=layer.has_bias) for layer in LAYERS)
    shapes = {layer.name: layer.mask_shape(Covers.PARAMETERS) for layer in layers}
    assert shapes["conv2"] == (7, 6) and shapes["conv1"] == (5, 3, 3, 3)  # conv1: no bias
    rng = np.random.default_rng(2)
    masks = {t: {n: (rng.random(s) < 0.5).astype(np.uint8) for n, s in shapes.items()}
             for t in (0, 1)}  # fmt: skip
    path = write_packed(tmp_path / "b.safetensors", masks, layers)
    checkpoint = hatinspect.open_checkpoint(path)
    assert [layer.bias_masked for layer in checkpoint.layers] == [False, True, False, True]
    for task in (0, 1):
        for name, shape in shapes.items():
            assert checkpoint.masks[task][name].shape == shape
            assert checkpoint.masks[task][name].tolist() == masks[task][name].tolist()
    shared = hatinspect.overlap(checkpoint).layers[1].shared  # conv2: 42 entries a mask
    both = int((masks[0]["conv2"] & masks[1]["conv2"]).sum())
    assert shared.tolist()[0][1] == both and hatinspect.overlap(checkpoint).layers[1].units == 42
    conv1 = {"name": "conv1", "units": 5, "weight_shape": [5, 3, 3, 3], "preceding": None,
             "weight_key": "backbone.conv1.weight", "bias_key": None}  # fmt: skip
    for record, message in [
        ({**conv1, "bias_key": "backbone.conv1.bias", "bias_masked": False}, "must be true"),
        ({**conv1, "bias_masked": True}, "without bias"),
    ]:
        with pytest.raises(ValueError, match=message):
            fmt.decode_layers([record])


def test_a_unit_file_whose_layer_claims_a_masked_bias_is_refused():
    layer = {"name": "fc/0", "units": 3, "weight_shape": [3, 4], "preceding": None,
             "weight_key": "backbone.fc.0.weight", "bias_key": "backbone.fc.0.bias",
             "bias_masked": True}  # fmt: skip
    metadata = {
        fmt.VERSION_KEY: "1",
        fmt.BACKBONE_KEY: "Net",
        fmt.LAYERS_KEY: json.dumps([layer]),
        fmt.TASK_IDS_KEY: "[0]",
    }
    with pytest.raises(ValueError, match="bias_masked in a file of masks of units"):
        fmt.decode_header(metadata)
    covers = {**metadata, fmt.VERSION_KEY: "2", fmt.COVERS_KEY: "parameters"}
    assert fmt.decode_header(covers).layers[0].bias_masked
