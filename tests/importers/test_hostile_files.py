"""Broken and hostile files: each is one clear CheckpointError line, runs nothing and
changes nothing."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.checkpoint_factories import (
    binary_masks,
    linear_layers,
    native_metadata,
    native_tensors,
    original_hat_state,
    torch_save,
    write_native,
)

import hatinspect
from hatinspect.native import format as fmt

LAYERS = linear_layers((6, 5, 4, 3))
MASKS = binary_masks({layer.name: layer.units for layer in LAYERS}, (0, 1), seed=1)


def _tensors(**changes):
    tensors = native_tensors(LAYERS, MASKS)
    tensors.update(changes)
    return {key: value for key, value in tensors.items() if value is not None}


def _metadata(**changes):
    metadata = native_metadata(LAYERS, MASKS)
    metadata.update(changes)
    return {key: value for key, value in metadata.items() if value is not None}


def _layers_json(**changes):
    records = json.loads(native_metadata(LAYERS, MASKS)[fmt.LAYERS_KEY])
    records[1].update(changes)
    return json.dumps(records)


def _raw(data: bytes):
    return lambda path: path.write_bytes(data)


def _native(tensors=None, metadata=None):
    return lambda path: write_native(path, LAYERS, MASKS, tensors=tensors, metadata=metadata)


def _valid_bytes(tmp_path) -> bytes:
    return write_native(tmp_path / "valid.safetensors", LAYERS, MASKS).read_bytes()


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


CORPUS = {
    "empty": (_raw(b""), "empty file"),
    "random bytes": (_raw(b"GIF89a\x10\x00\x10\x00\xf7\x00\x00 an image"), "neither a safetensors"),
    "text": (_raw(b"GIF89a is what an image starts with"), "it starts with text"),
    "short safetensors": (_raw(b"\x05\x00"), "truncated"),
    "header past the end": (_raw((500).to_bytes(8, "little") + b"{}"), "exceeds the file"),
    "huge header": (
        _raw((fmt.MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b"{"),
        "safetensors' limit",
    ),
    "header not JSON": (_raw((9).to_bytes(8, "little") + b"{not json"), "not a valid safetensors"),
    "no metadata": (_native(metadata={}), "no hatinspect metadata"),
    "missing layers": (_native(metadata=_metadata(**{fmt.LAYERS_KEY: None})), "lacks"),
    "layers not JSON": (_native(metadata=_metadata(**{fmt.LAYERS_KEY: "[{"})), "not valid JSON"),
    "layers not records": (_native(metadata=_metadata(**{fmt.LAYERS_KEY: "[1, 2]"})), "record"),
    "units disagree": (
        _native(metadata=_metadata(**{fmt.LAYERS_KEY: _layers_json(units=7)})),
        "units must equal",
    ),
    "unknown preceding": (
        _native(metadata=_metadata(**{fmt.LAYERS_KEY: _layers_json(preceding="fc/9")})),
        "unknown preceding",
    ),
    "task ids malformed": (_native(metadata=_metadata(**{fmt.TASK_IDS_KEY: '["a"]'})), "task_ids"),
    "newer version": (_native(metadata=_metadata(**{fmt.VERSION_KEY: "99"})), "newer"),
    "version malformed": (_native(metadata=_metadata(**{fmt.VERSION_KEY: "one"})), "version"),
    "unknown source": (_native(metadata=_metadata(**{fmt.SOURCE_KEY: "x"})), "unknown source"),
    "weight missing": (_native(tensors=_tensors(**{"backbone.fc.1.weight": None})), "no tensor"),
    "weight shape": (
        _native(tensors=_tensors(**{"backbone.fc.1.weight": np.zeros((4, 4), np.float32)})),
        "has shape",
    ),
    "mask missing": (_native(tensors=_tensors(**{"mask.1.fc/2": None})), "no tensor 'mask.1"),
    "mask dtype": (
        _native(tensors=_tensors(**{"mask.0.fc/0": np.ones(5, np.float32)})),
        "dtype F32",
    ),
    "mask NaN": (
        _native(tensors=_tensors(**{"mask.0.fc/0": np.full(5, np.nan, np.float32)})),
        "expected U8",
    ),
    "mask not binary": (
        _native(tensors=_tensors(**{"mask.0.fc/0": np.array([0, 1, 2, 0, 1], np.uint8)})),
        "not binary",
    ),
    "mask size": (
        _native(tensors=_tensors(**{"mask.0.fc/0": np.ones(4, np.uint8)})),
        "layer has 5 units",
    ),
    "stray mask": (
        _native(tensors=_tensors(**{"mask.7.fc/0": np.ones(5, np.uint8)})),
        "belongs to no stored task",
    ),
    "pickle running code (torch zip)": (lambda p: torch.save({"x": Evil()}, p), "posix.system"),
    "pickle running code (legacy)": (
        lambda p: torch.save({"x": Evil()}, p, _use_new_zipfile_serialization=False),
        "posix.system",
    ),
    "pickle running code (plain)": (lambda p: p.write_bytes(pickle.dumps(Evil())), "posix.system"),
    "torch file holding a tensor": (lambda p: torch.save(torch.zeros(3), p), "not a state_dict"),
    "state_dict with a non-tensor": (lambda p: torch.save({"w": 3}, p), "not a named tensor"),
    "zip that is not torch": (
        lambda p: zipfile.ZipFile(p, "w").writestr("a.txt", "hello"),
        "not a readable PyTorch",
    ),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_corpus(tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the evil pickles would create "pwned"
    write, message = CORPUS[case]
    path = tmp_path / ("case.bin" if case in ("random bytes", "text") else "case.safetensors")
    write(path)
    before = path.read_bytes()
    with pytest.raises(hatinspect.CheckpointError) as raised:
        hatinspect.open_checkpoint(path)
    text = str(raised.value)
    assert message in text
    assert text.startswith(str(path)) and "\n" not in text
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(hatinspect.CheckpointError, match="no such file"):
        hatinspect.open_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(hatinspect.CheckpointError, match="is a directory"):
        hatinspect.open_checkpoint(tmp_path)


def test_truncated_torch_file(tmp_path):
    data = torch_save(tmp_path / "full.pt", original_hat_state()[0]).read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(hatinspect.CheckpointError) as caught:
        hatinspect.open_checkpoint(path)
    size = path.stat().st_size
    assert "truncated: a zip archive (torch.save's format) whose directory" in str(caught.value)
    assert f"is missing ({size} bytes)" in str(caught.value)


def test_convert_refuses_to_overwrite_its_source_and_native_input(tmp_path):
    src = torch_save(tmp_path / "hat.pt", original_hat_state()[0])
    with pytest.raises(hatinspect.CheckpointError, match="onto itself"):
        hatinspect.convert(src, src)
    native = write_native(tmp_path / "n.safetensors", LAYERS, MASKS)
    with pytest.raises(hatinspect.CheckpointError, match="already a native"):
        hatinspect.convert(native, tmp_path / "m.safetensors")


FAST = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(tmp_path, data):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    with pytest.raises(hatinspect.CheckpointError):
        hatinspect.open_checkpoint(path)


@FAST
@given(cut=st.floats(0, 1, exclude_max=True))
def test_every_truncation_is_a_checkpoint_error(tmp_path, cut):
    data = _valid_bytes(tmp_path)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: int(cut * len(data))])
    with pytest.raises(hatinspect.CheckpointError):
        hatinspect.open_checkpoint(path)


@FAST
@given(position=st.floats(0, 1, exclude_max=True), value=st.integers(0, 255))
def test_a_changed_byte_gives_valid_masks_or_a_checkpoint_error(tmp_path, position, value):
    data = bytearray(_valid_bytes(tmp_path))
    data[int(position * len(data))] = value
    path = tmp_path / "flip.safetensors"
    path.write_bytes(bytes(data))
    try:
        checkpoint = hatinspect.open_checkpoint(path)
    except hatinspect.CheckpointError as exc:
        assert "\n" not in str(exc)
        return
    for layer in checkpoint.layers:
        for task in checkpoint.task_ids:
            mask = checkpoint.masks[task][layer.name]
            assert mask.shape == (layer.units,) and set(np.unique(mask)) <= {0, 1}
