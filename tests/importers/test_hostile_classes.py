"""One regression test per class of hostile input the reader must survive: each file is
made here, small, and either loads as what it is or gives one CheckpointError line that
names the file."""

from __future__ import annotations

import fractions
import io
import json
import os
import pickle
import pickletools
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from support.checkpoint_factories import (
    binary_masks,
    hat_mlp,
    linear_layers,
    native_metadata,
    native_tensors,
    original_hat_state,
    torch_save,
    write_native,
)
from support.paths import FIXTURES, PEERS

import hatinspect
from hatinspect.checkpoints import read_tensors
from hatinspect.model.errors import CheckpointError, one_line, shown
from hatinspect.native import format as fmt

LAYERS = linear_layers((6, 5, 4, 3))
MASKS = binary_masks({layer.name: layer.units for layer in LAYERS}, (0, 1), seed=1)


def refused(path, match: str = "", opener=hatinspect.open_checkpoint) -> str:
    with pytest.raises(CheckpointError) as raised:
        opener(path)
    text = str(raised.value)
    assert "\n" not in text and text.startswith(one_line(str(path))), text
    assert match in text, text
    return text


def native_with_layers(path, records):
    metadata = native_metadata(LAYERS, MASKS)
    metadata[fmt.LAYERS_KEY] = json.dumps(records)
    return write_native(path, LAYERS, MASKS, metadata=metadata)


def records():
    return json.loads(native_metadata(LAYERS, MASKS)[fmt.LAYERS_KEY])


def run_python(code: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (a hang or crash there cannot take the suite down)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# 1 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [fmt.LAYERS_KEY, fmt.TASK_IDS_KEY, fmt.CONFIG_KEY, fmt.NOTES_KEY, fmt.TASK_ID_KEY]
)
def test_deeply_nested_json_in_metadata_is_refused(tmp_path, key):
    metadata = native_metadata(LAYERS, MASKS)
    metadata[key] = "[" * 100_000 + "]" * 100_000
    path = write_native(tmp_path / "nested.safetensors", LAYERS, MASKS, metadata=metadata)
    refused(path, "not valid JSON")


# 2 ----------------------------------------------------------------------------------------


def test_read_tensors_reads_bf16_native_files_written_by_save_checkpoint(tmp_path):
    backbone = hat_mlp(tasks=(0, 1)).to(torch.bfloat16)
    path = hatinspect.save_checkpoint(tmp_path / "bf16.safetensors", backbone)
    checkpoint = hatinspect.open_checkpoint(path)
    keys = [layer.weight_key for layer in checkpoint.layers]
    arrays = read_tensors(path, keys)
    state = backbone.state_dict()
    for key in keys:
        expected = state[key.removeprefix(fmt.BACKBONE_PREFIX)].float().numpy()
        assert arrays[key].dtype == np.float32
        np.testing.assert_array_equal(arrays[key], expected)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.bfloat16])
def test_read_tensors_widens_every_value_of_narrow_floats(tmp_path, dtype):
    # all 256 (or 65536) bit patterns, checked against torch's own conversion
    bits = torch.arange(2 ** (8 * dtype.itemsize), dtype=torch.int32)
    raw = bits.to(torch.uint8 if dtype.itemsize == 1 else torch.int16)
    values = raw.view(dtype).reshape(-1, 16)
    layer = fmt.LayerInfo("fc/0", values.shape[0], tuple(values.shape), "w", None, None)
    metadata = native_metadata((layer,), {})
    path = tmp_path / "narrow.safetensors"
    save_file({"w": values}, str(path), metadata=metadata)
    assert hatinspect.open_checkpoint(path).layers == (layer,)
    got = read_tensors(path, ["w"])["w"]
    np.testing.assert_array_equal(got, values.float().numpy())  # NaN == NaN here


# 3 ----------------------------------------------------------------------------------------


def test_preceding_that_cannot_feed_the_layer_is_refused_at_open(tmp_path):
    layers = records()
    layers[2]["preceding"] = "fc/0"  # fc/2 has 4 inputs; fc/0 has 5 units
    text = refused(native_with_layers(tmp_path / "flow.safetensors", layers), "cannot feed")
    assert "fc/2" in text


def test_preceding_later_in_the_list_or_itself_is_refused(tmp_path):
    for index, name in ((1, "fc/1"), (1, "fc/2")):
        layers = records()
        layers[index]["preceding"] = name
        refused(native_with_layers(tmp_path / f"{name[-1]}.safetensors", layers), "earlier")


def test_a_linear_layer_after_a_flatten_takes_a_multiple_of_the_conv_units(tmp_path):
    conv = fmt.LayerInfo("conv", 4, (4, 3, 3, 3), "c.weight", None, None)
    good = fmt.LayerInfo("fc", 2, (2, 4 * 9), "f.weight", None, "conv")
    bad = fmt.LayerInfo("fc", 2, (2, 4 * 9 + 1), "f.weight", None, "conv")
    fmt.check_layers((conv, good))
    with pytest.raises(ValueError, match="cannot feed"):
        fmt.check_layers((conv, bad))
    with pytest.raises(ValueError, match="cannot feed"):  # conv after conv: exactly
        fmt.check_layers((conv, fmt.LayerInfo("c2", 2, (2, 8, 1, 1), "k", None, "conv")))


# 4 ----------------------------------------------------------------------------------------


def test_weight_key_equal_to_bias_key_is_refused(tmp_path):
    layers = records()
    layers[1]["bias_key"] = layers[1]["weight_key"]
    refused(native_with_layers(tmp_path / "same.safetensors", layers), "another's")


def test_two_layers_sharing_a_weight_are_refused(tmp_path):
    layers = records()
    layers[2]["bias_key"] = layers[1]["bias_key"]
    refused(native_with_layers(tmp_path / "shared.safetensors", layers), "another's")


# 6 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [[], [5], [5, 0], [0, 6], [5, -1]])
def test_weight_shapes_without_two_positive_dims_are_refused(tmp_path, shape):
    layers = records()
    layers[0]["weight_shape"] = shape
    refused(native_with_layers(tmp_path / "shape.safetensors", layers), "layer record 0")


def test_a_0d_weight_tensor_is_refused(tmp_path):
    tensors = native_tensors(LAYERS, MASKS)
    tensors[LAYERS[0].weight_key] = np.array(1.0, np.float32)
    path = write_native(tmp_path / "zero-d.safetensors", LAYERS, MASKS, tensors=tensors)
    refused(path, "has shape ()")


def test_integer_weights_are_refused(tmp_path):
    tensors = native_tensors(LAYERS, MASKS)
    tensors[LAYERS[0].weight_key] = np.ones(LAYERS[0].weight_shape, np.int64)
    path = write_native(tmp_path / "int.safetensors", LAYERS, MASKS, tensors=tensors)
    refused(path, "dtype I64")


# 7 ----------------------------------------------------------------------------------------


def test_messages_are_one_line_whatever_they_quote(tmp_path):
    folder = tmp_path / "a\nb"
    folder.mkdir()
    layers = records()
    layers[1]["name"] = "fc\n1"
    refused(native_with_layers(folder / "x\r\n.safetensors", layers))
    assert "\n" not in str(CheckpointError("line 1\nline 2\x1b[31m"))


def test_untrusted_values_are_shown_bounded_and_never_by_repr():
    class Hostile:
        def __repr__(self):
            raise AssertionError("repr of an untrusted object")

    assert shown(Hostile()) == "a Hostile"
    assert shown(torch.ones(3)) == "a Tensor"
    assert shown(10**5000).startswith("an integer of about")
    assert len(shown("x" * 10_000)) < 80 and "\n" not in shown("a\nb")
    assert len(str(CheckpointError("x" * 100_000))) <= 8192


# 12 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [hatinspect.open_checkpoint, lambda p: read_tensors(p, ["w"])])
def test_path_errors_are_checkpoint_errors(tmp_path, opener):
    refused(tmp_path / ("n" * 300 + ".safetensors"), "cannot read it", opener)
    refused(Path("/" + "d/" * 2100 + "x.safetensors"), "cannot read it", opener)
    refused(tmp_path / "missing" / "x.pt", "no such file", opener)
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    refused(fifo, "not a regular file", opener)


NOT_PATHS = {
    "NUL": ("a\x00b.safetensors", "a\\x00b.safetensors: a path cannot contain a NUL"),
    "NUL folder": ("run\x00/", "a path cannot contain a NUL"),
    "int": (3, "a path must be a str or os.PathLike, got 3"),
    "None": (None, "got None"),
    "bytes": (b"x.pt", "a path must be text, got a bytes"),
    "list": (["x.pt"], "got a list"),
}
CHECKPOINT_ENTRIES = {  # each takes the path under test and a valid native file
    "open_checkpoint": lambda p, _: hatinspect.open_checkpoint(p),
    "read_tensors": lambda p, _: read_tensors(p, ["w"]),
    "masks": lambda p, _: hatinspect.masks(p),
    "capacity": lambda p, _: hatinspect.capacity(p),
    "measure": lambda p, _: hatinspect.measure(p, "fc/0"),
    "overlap": lambda p, _: hatinspect.overlap(p),
    "info": lambda p, _: hatinspect.info(p),
    "audit before": lambda p, native: hatinspect.audit(p, native),
    "audit after": lambda p, native: hatinspect.audit(native, p),
    "compare": lambda p, native: hatinspect.compare(native, p),
    "report": lambda p, _: hatinspect.report(p),
    "convert": lambda p, _: hatinspect.convert(p, "out.safetensors"),
    "load_backbone": lambda p, _: hatinspect.load_backbone(p),
}


@pytest.fixture()
def native_file(tmp_path):
    return write_native(tmp_path / "n.safetensors", LAYERS, MASKS)


@pytest.mark.parametrize("value, message", list(NOT_PATHS.values()), ids=list(NOT_PATHS))
@pytest.mark.parametrize("entry", list(CHECKPOINT_ENTRIES))
def test_what_is_no_path_is_one_checkpoint_error_at_every_entry(native_file, entry, value, message):
    # NUL raised ValueError (embedded null byte), the rest TypeError, from the system's calls
    with pytest.raises(CheckpointError) as raised:
        CHECKPOINT_ENTRIES[entry](value, native_file)
    assert "\n" not in str(raised.value) and message in str(raised.value), raised.value


OUTPUTS = {
    "heatmap": lambda src, out: hatinspect.masks(src, heatmap=out),
    "plot": lambda src, out: hatinspect.capacity(src, plot=out),
    "measure save": lambda src, out: hatinspect.measure(src, "fc/0", save=out),
    "report": lambda src, out: hatinspect.report(src, output=out),
}


NOT_OUTPUTS = {kind: case for kind, case in NOT_PATHS.items() if kind != "None"}  # None: no output


@pytest.mark.parametrize("value, message", list(NOT_OUTPUTS.values()), ids=list(NOT_OUTPUTS))
@pytest.mark.parametrize("entry", list(OUTPUTS))
def test_an_output_that_is_no_path_is_one_error_and_writes_nothing(
    native_file, tmp_path, entry, value, message
):
    before = sorted(tmp_path.iterdir())
    with pytest.raises(hatinspect.HatinspectError) as raised:
        OUTPUTS[entry](native_file, value)
    assert "\n" not in str(raised.value) and message in str(raised.value), raised.value
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("value", ["x\x00.safetensors", 5, b"x.safetensors"])
def test_a_conversion_target_that_is_no_path_is_one_error(tmp_path, value):
    source = torch_save(tmp_path / "o.pt", original_hat_state(n_tasks=2)[0])
    with pytest.raises(hatinspect.HatinspectError, match="path"):
        hatinspect.convert(source, value)
    with pytest.raises(hatinspect.HatinspectError, match="path"):
        hatinspect.save_checkpoint(value, hat_mlp(tasks=(0,)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.pt"]


def test_control_characters_in_a_path_are_escaped_in_every_message(tmp_path):
    refused(tmp_path / "a\nb\x1b[31m", "a\\nb\\x1b[31m: no such file")
    folder = tmp_path / "run\nx"  # a folder that is no run: a HatinspectError quoting it
    folder.mkdir()
    with pytest.raises(hatinspect.HatinspectError, match="no after-task") as raised:
        hatinspect.capacity(folder)
    assert "\n" not in str(raised.value) and "run\\nx" in str(raised.value)


def test_unreadable_files_and_folders_are_checkpoint_errors(tmp_path):
    # root reads everything: as root, the check runs as the unprivileged user "nobody"
    base = Path(tempfile.mkdtemp(dir="/tmp")) if os.geteuid() == 0 else tmp_path
    try:
        readable, closed = base / "open", base / "closed"
        readable.mkdir(), closed.mkdir()
        files = [write_native(d / "n.safetensors", LAYERS, MASKS) for d in (readable, closed)]
        files[0].chmod(0o000 if os.geteuid() else 0o600)
        base.chmod(0o711), readable.chmod(0o711), closed.chmod(0o700 if os.geteuid() else 0)
        code = """
            import os, sys
            import hatinspect
            from hatinspect.checkpoints import read_tensors
            if os.geteuid() == 0:
                os.setgid(65534), os.setuid(65534)
            for opener in (hatinspect.open_checkpoint, lambda p: read_tensors(p, ["w"])):
                for target in sys.argv[1:]:
                    try:
                        opener(target)
                    except hatinspect.CheckpointError as exc:
                        print("ERR", exc)
        """
        done = run_python(code, *files)
    finally:
        for folder in (base, base / "open", base / "closed"):
            folder.chmod(0o755)
        if base != tmp_path:
            shutil.rmtree(base)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert len(lines) == 4 and all("Permission denied" in line for line in lines), lines


# 13 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_ids", ["[-1]", "[true]", "[2147483648]", "[0, 0]"])
def test_invalid_task_ids_are_refused_natively(tmp_path, task_ids):
    metadata = native_metadata(LAYERS, MASKS)
    metadata[fmt.TASK_IDS_KEY] = task_ids
    refused(write_native(tmp_path / "t.safetensors", LAYERS, MASKS, metadata=metadata))


def test_an_empty_layer_name_is_refused_on_import_naming_the_source(tmp_path):
    state = {".weight": torch.randn(4, 3), "e.weight": torch.randn(2, 4)}
    src = torch_save(tmp_path / "empty-name.pt", state)
    refused(src, "non-empty", lambda p: hatinspect.open_checkpoint(p, "original-hat"))
    refused(src, "non-empty", lambda p: hatinspect.convert(p, tmp_path / "out.safetensors"))
    assert [p.name for p in tmp_path.iterdir()] == ["empty-name.pt"]


# 14 ---------------------------------------------------------------------------------------


def _sparse_big_file(path: Path) -> Path:
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "w": {"dtype": "F32", "shape": [2**30], "data_offsets": [0, 4 * 2**30]},
        }  # fmt: skip
    ).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + 4 * 2**30)  # sparse: 4 GiB claimed, nothing on disk
    return path


def test_out_of_memory_under_an_address_space_limit_is_one_line(tmp_path):
    path = _sparse_big_file(tmp_path / "big.safetensors")
    code = """
        import resource, sys
        import hatinspect
        from hatinspect.checkpoints import read_tensors
        resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))
        for opener in (hatinspect.open_checkpoint, lambda p: read_tensors(p, ["w"])):
            try:
                opener(sys.argv[1])
            except hatinspect.CheckpointError as exc:
                print("ERR", exc)
    """
    done = run_python(code, path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ERR") == 2 and "memory" in done.stdout, done.stdout


def test_cli_prints_one_line_for_out_of_memory(tmp_path):
    path = _sparse_big_file(tmp_path / "big.safetensors")
    code = """
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))
        from hatinspect.cli.app import main
        sys.argv = ["hatinspect", "info", sys.argv[1]]
        main()
    """
    done = run_python(code, path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "memory" in done.stderr


# 10, 11: torch files --------------------------------------------------------------------------


def torch_zip(obj) -> bytes:
    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


def replace_record(data: bytes, suffix: str, content: bytes | None = None, deflate=False):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename.endswith(suffix) and content is not None:
                body = content
            method = zipfile.ZIP_DEFLATED if deflate and info.filename.endswith(suffix) else 0
            dst.writestr(info.filename, body, compress_type=method)
    return out.getvalue()


def open_in_subprocess(paths, memory=2**29, timeout=180) -> dict[str, str]:
    """Open each path in one fresh interpreter limited to ``memory`` bytes more address
    space than it starts with: file name -> "LOADED" or "ERR <message>"."""
    code = """
        import resource, sys
        import hatinspect, hatinspect.importers.dispatch
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]),) * 2)
        for path in sys.argv[2:]:
            try:
                hatinspect.open_checkpoint(path)
                print("LOADED", flush=True)
            except hatinspect.CheckpointError as exc:
                print("ERR", exc, flush=True)
    """
    done = run_python(code, memory, *paths, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(zip([Path(p).name for p in paths], done.stdout.splitlines(), strict=True))


def _with_key(key_opcodes: bytes) -> bytes:
    """A plain pickle of ``{<key>: 1}``."""
    return b"\x80\x02}" + key_opcodes + b"s."


def _in_torch_zip(key_opcodes: bytes) -> bytes:
    """A torch zip whose pickle has an extra ``<key>: 1`` entry."""
    pickled = pickle.dumps({"w": 1}, protocol=2)
    hostile = pickled[:3] + key_opcodes + b"K\x01s" + pickled[3:]
    return replace_record(torch_zip({"w": torch.ones(2)}), "data.pkl", hostile)


DEEP_KEY = b")" + b"\x85" * 1_000_000  # ((((),),),...) a million deep
SHARED_KEY = b")q\x00" + b"".join(  # t_i = (t_{i-1}, t_{i-1}) through the memo: 2^80 leaves
    b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i]) for i in range(1, 80)
)


def _stride_0_claim() -> bytes:
    state, _ = original_hat_state()
    state["c1.weight"] = torch.zeros(1).expand(2**33).reshape(2**31, 4, 1, 1)
    return torch_zip(state)


def _zip_bomb() -> bytes:
    return replace_record(torch_zip(original_hat_state()[0]), "data/0", bytes(2**26), True)


TINY_HOSTILE = {  # name -> (bytes, what the refusal says)
    "stride-0-claim.pt": (_stride_0_claim, "claims"),
    "zip-bomb.pt": (_zip_bomb, "inflate"),
    "deep-key-plain.pt": (lambda: _with_key(DEEP_KEY + b"K\x01"), "refused to load"),
    "deep-key-zip.pt": (lambda: _in_torch_zip(DEEP_KEY), "refused to load"),
    "shared-key-plain.pt": (lambda: _with_key(SHARED_KEY + b"K\x01"), "refused to load"),
    "shared-key-zip.pt": (lambda: _in_torch_zip(SHARED_KEY), "refused to load"),
}


def test_a_zip_appended_to_a_legacy_pickle_is_never_unpickled(tmp_path):
    """What a file is gets decided once, from its first bytes: a legacy torch pickle with
    a torch zip appended is scanned as the pickle, so its zip (nesting 500 deep here, past
    the scan's limit) must not be loaded as if the scan had seen it."""
    legacy = io.BytesIO()
    torch.save({"w": fractions.Fraction(1, 2)}, legacy, _use_new_zipfile_serialization=False)
    path = tmp_path / "legacy-then-zip.pt"
    path.write_bytes(legacy.getvalue() + _in_torch_zip(b")" + b"\x85" * 500))
    assert zipfile.is_zipfile(path)  # the zip's directory ends the file
    refused(path, "refused to load")


BIG = 16 * 2**20  # bytes of the large valid files
MEMORY_BOUND = 6 * BIG + 256 * 2**20  # docs/checkpoint-format.md: 6 x size + 256 MiB


def _big_torch_file(path: Path) -> None:
    state, _ = original_hat_state()
    state["big.weight"] = torch.randn(BIG // 4)
    torch_save(path, state)


def _big_native_file(path: Path) -> None:
    tensors = native_tensors(LAYERS, MASKS)
    tensors["other.big"] = np.ones(BIG // 4, np.float32)
    write_native(path, LAYERS, MASKS, tensors=tensors)


@pytest.fixture(scope="module")
def tiny_hostile_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    paths = []
    for name, (build, _) in TINY_HOSTILE.items():
        paths.append(folder / name)
        paths[-1].write_bytes(build())
        assert paths[-1].stat().st_size < 2**21  # tiny files ...
    for name, build in (("big.pt", _big_torch_file), ("big.safetensors", _big_native_file)):
        paths.append(folder / name)
        build(paths[-1])
        assert BIG <= paths[-1].stat().st_size < BIG + 2**16
    return open_in_subprocess(paths, memory=MEMORY_BOUND)  # ... in the documented bound


@pytest.mark.parametrize("name", ["big.pt", "big.safetensors"])
def test_valid_files_open_within_the_documented_memory_bound(tiny_hostile_results, name):
    assert tiny_hostile_results[name] == "LOADED"


@pytest.mark.parametrize("name", list(TINY_HOSTILE))
def test_tiny_files_claiming_huge_objects_are_refused_fast_in_bounded_memory(
    tiny_hostile_results, name
):
    # classes 10 (stride-0 claims, zip bombs) and 11 (hangs and crashes unpickling)
    out = tiny_hostile_results[name]
    assert out.startswith("ERR") and TINY_HOSTILE[name][1] in out, out


def test_a_record_declared_deflated_but_stored_is_refused(tmp_path):
    # a valid file first, read so that torch has a buffer to reuse
    good = torch_zip(original_hat_state()[0])
    data = bytearray(good)
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    for at in (info.header_offset + 8, _central_entry(data, info.filename) + 10):
        data[at : at + 2] = (8).to_bytes(2, "little")  # method: deflated
    path = tmp_path / "stored.pt"
    path.write_bytes(bytes(data))
    (tmp_path / "good.pt").write_bytes(good)
    hatinspect.open_checkpoint(tmp_path / "good.pt")
    refused(path)


def _central_entry(data: bytes, name: str) -> int:
    at = data.index(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    return at


def test_a_record_with_a_wrong_crc_is_refused(tmp_path):
    data = bytearray(torch_zip(original_hat_state()[0]))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    data[start] ^= 0xFF  # the storage's first byte: the CRC no longer matches
    path = tmp_path / "crc.pt"
    path.write_bytes(bytes(data))
    refused(path, "CRC")


def test_a_local_header_naming_another_record_is_refused(tmp_path):
    # the records are checked where the local headers say; a header that names another
    # record than the directory's entry would have two readers see different files
    data = bytearray(torch_zip(original_hat_state()[0]))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    name_at = info.header_offset + 30
    assert data[name_at : name_at + len(info.filename)] == info.filename.encode()
    data[name_at + len(info.filename) - 1] = ord("9")  # .../data/0 -> .../data/9
    path = tmp_path / "renamed.pt"
    path.write_bytes(bytes(data))
    refused(path, "local header disagrees")


def test_huge_integers_in_a_pickle_are_refused(tmp_path):
    digits = 10**3000
    raw = digits.to_bytes((digits.bit_length() + 8) // 8, "little", signed=True)
    path = tmp_path / "long.pt"
    path.write_bytes(b"\x80\x02}X\x01\x00\x00\x00a\x8b" + len(raw).to_bytes(4, "little") + raw
                     + b"s.")  # fmt: skip
    refused(path, "refused to load")


def test_checkpoints_nest_far_less_than_the_pickle_depth_limit(tmp_path):
    nested = {"state_dict": original_hat_state()[0], "loops": {"a": {"b": {"c": [[[1]]]}}}}
    path = torch_save(tmp_path / "lightning.ckpt", nested)
    assert hatinspect.open_checkpoint(path).source == "original-hat"


# 5, 8, 9: foreign files ---------------------------------------------------------------------


def _original(**changes):
    state = {"c.weight": torch.randn(4, 3), "ec.weight": torch.randn(2, 4)}
    state.update(changes)
    return state


def _hatinspect_pt(**changes):
    backbone = hat_mlp(tasks=(0, 1))
    payload = {
        "state_dict": backbone.state_dict(),
        "masks": {t: dict(m) for t, m in backbone.masks.items()},
        "backbone": type(backbone).__name__,
        "config": dict(backbone.config),
    }
    payload.update(changes)
    return payload


def _config(**changes):
    return {**hat_mlp(tasks=()).config, **changes}


@pytest.mark.parametrize(
    "name, payload, message",
    [
        # sparse tensors are rebuilt by a torch global that is refused before loading
        ("sparse", lambda: _original(**{"ec.weight": torch.randn(2, 4).to_sparse()}), "refused"),
        ("meta", lambda: _original(**{"c.weight": torch.empty(4, 3, device="meta")}), "dense"),
        (
            "quantized",
            lambda: _original(
                **{"c.weight": torch.quantize_per_tensor(torch.randn(4, 3), 0.1, 0, torch.qint8)}
            ),
            "quantized",
        ),  # fmt: skip
        ("complex", lambda: _original(**{"c.weight": torch.randn(4, 3).cfloat()}), "complex"),
        (
            "int weight",
            lambda: _original(**{"c.weight": torch.ones(4, 3, dtype=torch.int64)}),
            "not floating point",
        ),  # fmt: skip
        ("masks None", lambda: _hatinspect_pt(masks={0: {"fc/0": None}}), "not a tensor"),
        ("masks str", lambda: _hatinspect_pt(masks={0: {"fc/0": "1"}}), "not a tensor"),
        (
            "masks ragged",
            lambda: _hatinspect_pt(masks={0: {"fc/0": [[1], [1, 0]]}}),
            "not a tensor",
        ),  # fmt: skip
        ("masks dict", lambda: _hatinspect_pt(masks={0: {"fc/0": {}}}), "not a tensor"),
        ("input_dim -1", lambda: _hatinspect_pt(config=_config(input_dim=-1)), "input_dim"),
        ("input_dim 2^62", lambda: _hatinspect_pt(config=_config(input_dim=2**62)), "input_dim"),
        ("heads tensor", lambda: _hatinspect_pt(heads=torch.ones(3, 3)), "not a mapping"),
        ("task -1", lambda: _hatinspect_pt(task_id=-1), "task_id"),
        ("task True", lambda: _hatinspect_pt(task_id=True), "task_id"),
    ],
)
def test_foreign_files_with_unusable_contents_are_one_line_errors(tmp_path, name, payload, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized and meta tensors warn when saved/loaded
        path = torch_save(tmp_path / "f.pt", payload())
        refused(path, message)


def test_fp8_embeddings_and_flags_are_read(tmp_path):
    state = _original(**{"ec.weight": torch.tensor([[1.0, -1, 2, -2], [-1, 1, -2, 2]])})
    state["ec.weight"] = state["ec.weight"].to(torch.float8_e4m3fn)
    checkpoint = hatinspect.open_checkpoint(torch_save(tmp_path / "fp8.pt", state))
    assert checkpoint.masks[1]["c"].tolist() == [0, 1, 0, 1]
    flags = torch.tensor([1.0, 0.0, 1.0]).to(torch.float8_e5m2)
    hat_cl = {"f.weight": torch.randn(4, 3), "f.masker._task_trained": flags}
    hat_cl |= {f"f.masker.attention.{t}": torch.ones(4) for t in range(3)}
    assert hatinspect.open_checkpoint(torch_save(tmp_path / "hc.pt", hat_cl)).task_ids == (0, 2)


HUGE_TASK = "9" * 5000
BAD_TASK_NUMBERS = [HUGE_TASK, str(2**31), "99999999999", "01"]  # 01: str(t) never writes it


def _hat_cl_with(key: str) -> dict:
    state = {"f.weight": torch.randn(4, 3), "f.masker._task_trained": torch.tensor([True])}
    return state | {"f.masker.attention.0": torch.ones(4), key: torch.ones(4)}


def _clarena_with(key: str) -> dict:
    return {
        "backbone.fc.0.weight": torch.randn(4, 3),
        "backbone.task_embedding_t.fc/0.weight": torch.randn(1, 4),
        "heads.heads.2.weight": torch.ones(2, 4),
        key: torch.ones(2, 4),
    }


def _native_with(path, key: str) -> Path:
    tensors = native_tensors(LAYERS, MASKS) | {key: np.ones(3, dtype=np.float32)}
    return write_native(path, LAYERS, MASKS, tensors=tensors)


# every key that carries a task number, in the layout that reads it
NUMBERED_KEYS = {
    "hat-cl attention": "f.masker.attention.{}",
    "hat-cl norm": "f.bn.{}.running_mean",
    "clarena head": "heads.heads.{}.weight",
    "native task norm": "backbone.bn.per_task.{}.weight",
}


def _file_with_key(folder: Path, layout: str, number: str) -> Path:
    key = NUMBERED_KEYS[layout].format(number)
    if layout.startswith("native"):
        return _native_with(folder / "n.safetensors", key)
    state = _clarena_with(key) if layout.startswith("clarena") else _hat_cl_with(key)
    return torch_save(folder / "f.pt", state)


@pytest.mark.parametrize("number", BAD_TASK_NUMBERS, ids=["5000 digits", "2^31", "11 digits", "01"])
@pytest.mark.parametrize("layout", list(NUMBERED_KEYS))
def test_a_key_whose_task_number_is_no_task_id_is_refused_naming_it(tmp_path, layout, number):
    # these keys were read as if absent (10-digit patterns) or raised ValueError (int())
    text = refused(_file_with_key(tmp_path, layout, number), "not a task id in 0..2147483647")
    assert "carries task number" in text and shown(number) in text


@pytest.mark.parametrize(
    "digits, task", [("0", 0), ("7", 7), (str(fmt.MAX_TASK_ID), fmt.MAX_TASK_ID)]
)
def test_task_numbers_every_layout_writes_are_read(tmp_path, digits, task):
    hat_cl = _hat_cl_with(f"f.masker.attention.{digits}")
    hat_cl["f.masker._task_trained"] = torch.tensor([True] + [False] * 6 + [task == 7])
    assert 0 in hatinspect.open_checkpoint(torch_save(tmp_path / "a.pt", hat_cl)).task_ids
    clarena = _clarena_with(f"heads.heads.{digits}.weight")
    expected = (max(task, 2),)  # the newest head names the embedding's task
    assert hatinspect.open_checkpoint(torch_save(tmp_path / "c.pt", clarena)).task_ids == expected
    assert fmt.parse_task_id(digits) == task
    assert [fmt.parse_task_id(d) for d in ("", "-1", "1.0", "\u0663", " 1", "00")] == [None] * 6


@pytest.mark.parametrize(
    "entry, value",
    [
        ("task_id", torch.tensor([1, 2])),  # `task_id or 0` raised: Boolean value of Tensor
        ("task_id", torch.tensor(1)),
        ("task_id", [1]),  # unhashable type: 'list'
        ("task_id", 1.0),
        ("task_id", "1"),
        ("backbone", torch.tensor(1)),  # was read as an unknown backbone
        ("config", torch.ones(3)),  # was read as no config
        ("config", [("input_dim", 6)]),
    ],
    ids=["tensor", "0-d tensor", "list", "float", "str", "backbone tensor", "config tensor",
         "config list"],
)  # fmt: skip
@pytest.mark.parametrize("with_masks", [True, False], ids=["masks", "embedding only"])
def test_a_hatinspect_pt_entry_of_the_wrong_type_is_refused(tmp_path, entry, value, with_masks):
    payload = _hatinspect_pt(**{entry: value})
    if not with_masks:
        del payload["masks"]
    refused(torch_save(tmp_path / "f.pt", payload), f"'{entry}' must be")


@pytest.mark.parametrize("value", [torch.tensor(3), [3], 3.0, {"a": 3}, torch.ones(2)], ids=str)
@pytest.mark.parametrize("entry", ["input_dim", "hidden_dims", "output_dim"])
def test_a_config_number_of_the_wrong_type_is_refused(tmp_path, entry, value):
    value = [value] if entry == "hidden_dims" else value  # an item of the list
    payload = _hatinspect_pt(config=_config(**{entry: value}))
    text = refused(torch_save(tmp_path / "f.pt", payload))
    # a list is a config value (hidden_dims): the backbone's constructor refuses it
    assert f"config entry {entry!r}" in text or "cannot rebuild 'HATMaskMLP'" in text, text


@pytest.mark.parametrize(
    "opcodes",
    [b"](K\x01K\x02e", b"G" + struct.pack(">d", 3.0), b"\x88"],
    ids=["list", "float", "True"],
)
def test_a_saved_model_whose_task_id_is_no_integer_is_refused(tmp_path, opcodes):
    # the modules' task_id (3) as another type was read as no task id at all
    data = (PEERS / "clarena_hat_mlp.pth").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        pickled = archive.read(name)
    ops = list(pickletools.genops(pickled))
    key = next(i for i, (_, arg, _) in enumerate(ops) if arg == "task_id")
    memo = ops[key + 1][1]  # the key is memoised, then fetched for every module's task_id
    keys = [key + 1] + [
        i for i, (op, arg, _) in enumerate(ops) if op.name == "LONG_BINGET" and arg == memo
    ]
    values = [(ops[i + 1][2], ops[i + 2][2]) for i in keys]  # the opcode after each key
    assert len(values) == 3 and all(pickled[a:b] == b"K\x03" for a, b in values)
    for start, end in reversed(values):
        pickled = pickled[:start] + opcodes + pickled[end:]
    path = tmp_path / "saved.pth"
    path.write_bytes(replace_record(data, "data.pkl", pickled))
    refused(path, "'task_id' must be an integer in 0..2147483647 or None")


def _quantized(shape=(4, 3)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates its quantized constructors
        return torch.quantize_per_tensor(torch.randn(shape), 0.1, 0, torch.qint8)


@pytest.mark.parametrize(
    "payload",
    [
        lambda: _clarena_with("heads.heads.1.weight") | {"backbone.fc.0.weight": _quantized()},
        lambda: _original(**{"c.weight": _quantized()}),
        lambda: torch.nn.Linear(3, 4).to(torch.float64),  # a whole pickled object
    ],
    ids=["clarena quantized", "original quantized", "saved object"],
)
def test_no_warning_escapes_while_a_foreign_file_loads(tmp_path, payload):
    # torch warned of TypedStorage and its quantized constructors, in blocks on stderr
    path = tmp_path / "f.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_save(path, payload())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError):
            hatinspect.open_checkpoint(path)
    assert [str(w.message) for w in caught] == []


def test_the_cli_prints_one_line_for_a_quantized_clarena_file(tmp_path):
    path = tmp_path / "q.pt"
    torch_save(path, _clarena_with("heads.heads.1.weight") | {"backbone.fc.0.weight": _quantized()})
    done = subprocess.run(
        [sys.executable, "-m", "hatinspect", "masks", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: {path}: holds a tensor that is not dense (quantized)"
    ]


def test_a_config_of_100000_layers_is_refused_before_building(tmp_path):
    path = torch_save(tmp_path / "deep.pt", _hatinspect_pt(config=_config(hidden_dims=[4] * 10**5)))
    refused(path, "hidden_dims")


def test_a_million_task_ids_without_masks_are_refused_without_listing_their_masks(tmp_path):
    metadata = native_metadata(LAYERS, MASKS)
    metadata[fmt.TASK_IDS_KEY] = json.dumps(list(range(10**6)))
    path = write_native(tmp_path / "many.safetensors", LAYERS, MASKS, metadata=metadata)
    refused(path, "no tensor 'mask.2.fc/0'")


def test_more_masks_than_any_network_has_are_refused_before_building_them(tmp_path):
    state = {"c.weight": torch.randn(1, 3), "ec.weight": torch.randn(2**18 + 1, 1)}
    refused(torch_save(tmp_path / "many-tasks.pt", state), "more masks than")


def test_a_saved_model_whose_tensor_outgrows_its_storage_is_refused_unallocated(tmp_path):
    # a whole pickled object goes through the placeholder unpickler, whose storages torch
    # would grow to whatever a tensor claims: 2^31 floats from a 4-byte record
    data = torch_zip(torch.nn.Linear(1, 1))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        pickled = archive.read(name)
    at = pickled.index(b"K\x01K\x01\x86")  # the weight's size (1, 1)
    grown = pickled[:at] + b"J\x00\x00\x00\x80K\x01\x86" + pickled[at + 5 :]
    path = tmp_path / "grown.pt"
    path.write_bytes(replace_record(data, "data.pkl", grown))
    out = open_in_subprocess([path], memory=2**29)["grown.pt"]
    assert out.startswith("ERR") and "outside its storage" in out, out


def test_a_saved_model_storage_shorter_than_it_claims_is_refused(tmp_path):
    data = torch_zip(torch.nn.Linear(4, 2))
    path = tmp_path / "short.pt"
    path.write_bytes(replace_record(data, "data/0", bytes(4)))
    refused(path, "holds other than it claims")


@pytest.mark.parametrize(
    "config",
    [{"input_dim": -1}, {"input_dim": 2**62}, {"hidden_dims": [4] * 10**5}, {"x": {"y": 1}}],
    ids=["negative", "huge", "100000 layers", "nested"],
)
def test_a_native_config_no_backbone_could_have_is_refused_at_open(tmp_path, config):
    metadata = native_metadata(LAYERS, MASKS)
    metadata[fmt.CONFIG_KEY] = json.dumps(config)
    path = write_native(tmp_path / "config.safetensors", LAYERS, MASKS, metadata=metadata)
    refused(path, f"config entry {next(iter(config))!r} holds no usable value")


def test_a_native_config_a_backbone_has_opens(tmp_path):
    metadata = native_metadata(LAYERS, MASKS)
    metadata[fmt.CONFIG_KEY] = json.dumps({"input_dim": 4, "hidden_dims": [3, 2], "bias": True})
    path = write_native(tmp_path / "config.safetensors", LAYERS, MASKS, metadata=metadata)
    assert hatinspect.open_checkpoint(path).layer_names == [layer.name for layer in LAYERS]


FINDINGS = FIXTURES / "fuzz-findings"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # it opened, then convert refused it: what opens must convert
        ("clarena_saved_model_huge_task_id.pth", "'task_id' must be an integer in 0"),
        # these raised TypeError and ZeroDivisionError
        ("clarena_saved_model_buffer_names_a_tensor.pth", "malformed buffer names"),
        ("state_dict_layer_of_zero_units.pt", "whole multiple of the 0 units"),
    ],
)
def test_fuzz_findings_are_refused_in_one_line_when_opened(name, message):
    with pytest.raises(hatinspect.CheckpointError, match=message) as refused:
        hatinspect.open_checkpoint(FINDINGS / name)
    assert "\n" not in str(refused.value)
