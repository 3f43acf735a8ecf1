"""Mutations of seed files: bytes, the safetensors header and each metadata field, zip
records and pickle opcodes, and a fixed list of hostile objects torch can save.

Every mutator takes ``(data, rng)`` and returns new bytes; ``make_cases`` picks mutators
deterministically from a seed, so a run is reproduced by its seed and case count.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import pickletools
import random
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator

INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x0A, ord("{"), ord("}"), ord('"'), ord("-")]
HUGE = [2**31, 2**33, 2**62, 2**64 + 1, 10**30]
HOSTILE_JSON = [
    "",
    "null",
    "true",
    "[]",
    "{}",
    "-1",
    "0",
    "1e999",
    "1.5",
    '"x\\ny"',
    "[" * 50_000 + "]" * 50_000,
    '{"a":' * 20_000 + "1" + "}" * 20_000,
    "9" * 5000,
    "[-1]",
    "[true]",
    "[0, 0]",
    "[2147483648]",
    '["0"]',
    json.dumps(list(range(3000))),
    "\u2028",
    "{",
]
HOSTILE_VALUES = [
    None, True, False, -1, 0, 1, 1.5, "", "a\nb", "x" * 300, "mask.0.fc/0", [], [0], [3],
    [-1, 2], [0, 5], [2**40, 1], [5, 0], [1] * 64, {}, {"a": 1}, 2**62, "fc/0", "fc/1",
]  # fmt: skip
# a key's task number replaced: no task id (huge, 2^31, leading zero, signed, non-ASCII
# digits) or the largest one
KEY_NUMBERS = ["9" * 5000, "9" * 11, str(2**31), str(2**31 - 1), "01", "00", "-1", "\u0663", "1e3"]
NUMBER_IN_KEY = re.compile(r"(?<![^./])[0-9]+(?![^./])")  # a dot-separated run of digits
TRAJECTORY_CASE = "trajectory-task-"  # a trajectory file's cases: read by its own reader
SAFETENSORS_DTYPES = ["BF16", "F16", "F8_E4M3", "F8_E5M2", "I64", "BOOL", "U8", "F64", "X", ""]


# --- bytes --------------------------------------------------------------------------------


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 8])):
        out[rng.randrange(len(out))] = rng.choice(INTERESTING)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def insert_bytes(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + rng.randbytes(rng.choice([1, 3, 64])) + data[at:]


def delete_range(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.choice([1, 4, 100]) :] or data[:1]


def duplicate_range(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at : at + rng.choice([8, 64, 512])] + data[at:]


BYTE_MUTATORS = [flip_bits, set_bytes, truncate, insert_bytes, delete_range, duplicate_range]


# --- safetensors ---------------------------------------------------------------------------


def _split(data: bytes) -> tuple[dict, bytes]:
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _join(header: dict, body: bytes, sort: bool = False) -> bytes:
    raw = json.dumps(header, sort_keys=sort).encode()  # sorted: safetensors' order varies
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


def metadata_field(data: bytes, rng: random.Random) -> bytes:
    header, body = _split(data)
    metadata = header["__metadata__"]
    key = rng.choice(sorted(metadata))
    if rng.random() < 0.15:
        del metadata[key]
    else:
        metadata[key] = rng.choice(HOSTILE_JSON)
    return _join(header, body)


def layer_field(data: bytes, rng: random.Random) -> bytes:
    header, body = _split(data)
    metadata = header["__metadata__"]
    layers = json.loads(metadata["hatinspect.layers"])
    record = rng.choice(layers)
    field = rng.choice(sorted(record))
    choice = rng.random()
    if choice < 0.1:
        record[field] = record["weight_key"]  # weight_key == bias_key and the like
    elif choice < 0.2:
        record["preceding"] = rng.choice(layers)["name"]  # a later layer or itself
    elif choice < 0.3:
        rng.shuffle(layers)
    elif choice < 0.35:
        del record[field]
    else:
        record[field] = rng.choice(HOSTILE_VALUES)
    metadata["hatinspect.layers"] = json.dumps(layers)
    return _join(header, body)


def tensor_entry(data: bytes, rng: random.Random) -> bytes:
    header, body = _split(data)
    key = rng.choice(sorted(k for k in header if k != "__metadata__"))
    entry = header[key]
    choice = rng.random()
    if choice < 0.3:
        entry["dtype"] = rng.choice(SAFETENSORS_DTYPES)
    elif choice < 0.6:
        entry["shape"] = rng.choice([[], [0], [0, 5], [2**33], [-1], [5, 0], [1, 1, 1, 1, 1]])
    elif choice < 0.8:
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = rng.choice([[end, begin], [begin, end + 8], [0, 0], [begin, 2**40]])
    else:
        header[rng.choice(["mask.0.x", "mask.9.fc/0", "mask.-1.fc/0", key + "\n"])] = entry
    return _join(header, body)


def retyped_tensor(data: bytes, rng: random.Random) -> bytes:
    """A consistent file whose one tensor changed dtype or shape (bf16, fp8, 0-d, empty)."""
    import torch
    from safetensors.torch import load, save

    header, _ = _split(data)
    tensors = load(data)
    key = rng.choice(sorted(tensors))
    tensor = tensors[key]
    tensors[key] = rng.choice(
        [
            lambda: tensor.to(torch.bfloat16),
            lambda: tensor.to(torch.float8_e4m3fn),
            lambda: tensor.to(torch.float8_e5m2),
            lambda: tensor.to(torch.float16),
            lambda: tensor.to(torch.int64),
            lambda: torch.tensor(1.0),
            lambda: torch.zeros(0, *tensor.shape[1:]),
            lambda: torch.zeros(*tensor.shape[:1], 0),
            lambda: torch.ones(tensor.shape, dtype=torch.float32) * 2,
        ]
    )()
    return _join(*_split(save(tensors, metadata=header["__metadata__"])), sort=True)


def _renumbered(key: str, rng: random.Random) -> str:
    """``key`` with one of its dot-separated numbers replaced by a hostile one."""
    runs = list(NUMBER_IN_KEY.finditer(key))
    if not runs:
        raise ValueError("no number in the key")
    run = rng.choice(runs)
    return key[: run.start()] + rng.choice(KEY_NUMBERS) + key[run.end() :]


def key_number(data: bytes, rng: random.Random) -> bytes:
    """A tensor key's number (a mask's or batch norm's task, a layer index) made huge."""
    header, body = _split(data)
    keys = sorted(k for k in header if k != "__metadata__" and NUMBER_IN_KEY.search(k))
    if not keys:
        raise ValueError("no numbered key")
    key = rng.choice(keys)
    header[_renumbered(key, rng)] = header.pop(key)
    return _join(header, body)


def pathctl(data: bytes, rng: random.Random) -> bytes:
    """The file as it is: the worker opens it under a name of control characters and
    hands the API paths that are none (see fuzz_worker.hostile_paths)."""
    return data


def trajectory_field(data: bytes, rng: random.Random) -> bytes:
    """A trajectory file's points or layers reordered, repeated, cut or given a hostile value."""
    header, body = _split(data)
    metadata = header["__metadata__"]
    key = rng.choice(["hatinspect.points", "hatinspect.layers"])
    values = json.loads(metadata[key])
    choice = rng.random()
    if choice < 0.2:
        values.reverse()
    elif choice < 0.4:
        values.append(values[-1])
    elif choice < 0.6:
        values.pop()
    else:
        values[rng.randrange(len(values))] = rng.choice(HOSTILE_VALUES)
    metadata[key] = json.dumps(values)
    return _join(header, body)


SAFETENSORS_MUTATORS = [metadata_field, metadata_field, layer_field, layer_field, tensor_entry,
                        retyped_tensor, key_number, pathctl]  # fmt: skip


# --- zip records ---------------------------------------------------------------------------


def rezip(data: bytes, replace: dict[str, bytes], deflate: tuple[str, ...] = ()) -> bytes:
    """The zip with some records' contents replaced (or compressed), CRCs made right."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = replace.get(info.filename, src.read(info.filename))
            record = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            method = zipfile.ZIP_DEFLATED if info.filename in deflate else zipfile.ZIP_STORED
            dst.writestr(record, content, compress_type=method)
    return out.getvalue()


def _records(data: bytes) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.infolist()


def _pickle_name(data: bytes) -> str:
    return next(i.filename for i in _records(data) if i.filename.endswith("data.pkl"))


def zip_pickle(data: bytes, rng: random.Random) -> bytes:
    name = _pickle_name(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickled = archive.read(name)
    return rezip(data, {name: mutate_pickle(pickled, rng)})


def zip_record(data: bytes, rng: random.Random) -> bytes:
    """A storage record shortened, lengthened, emptied or deflated."""
    info = rng.choice([i for i in _records(data) if not i.filename.endswith("data.pkl")])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        content = archive.read(info.filename)
    choice = rng.random()
    if choice < 0.25:
        return rezip(data, {info.filename: content[: len(content) // 2]})
    if choice < 0.5:
        return rezip(data, {info.filename: content + bytes(rng.choice([4, 4096]))})
    if choice < 0.75:
        return rezip(data, {}, deflate=(info.filename,))
    return rezip(data, {info.filename: b""})


def zip_bomb(data: bytes, rng: random.Random) -> bytes:
    """A record deflated from many zeros: a tiny file inflating a thousand times over."""
    info = rng.choice(_records(data))
    return rezip(data, {info.filename: bytes(rng.choice([2**22, 2**24]))}, (info.filename,))


def zip_header_field(data: bytes, rng: random.Random) -> bytes:
    """A local or central header's method, CRC or size changed in place (the deflated-but-
    stored record among them)."""
    out = bytearray(data)
    signature, fields = rng.choice(
        [(b"PK\x03\x04", {"method": 8, "crc": 14, "csize": 18, "usize": 22}),
         (b"PK\x01\x02", {"method": 10, "crc": 16, "csize": 20, "usize": 24})]
    )  # fmt: skip
    places = [i for i in range(len(out)) if out.startswith(signature, i)]
    at = rng.choice(places)
    field = rng.choice(sorted(fields))
    offset = at + fields[field]
    if field == "method":
        struct.pack_into("<H", out, offset, rng.choice([8, 8, 12, 99]))
    else:
        value = rng.choice([0, 1, 0xFFFFFFFF, struct.unpack_from("<L", out, offset)[0] ^ 1])
        struct.pack_into("<L", out, offset, value)
    return bytes(out)


def _zip_pickle_with(data: bytes, mutate) -> bytes:
    name = _pickle_name(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickled = archive.read(name)
    return rezip(data, {name: mutate(pickled)})


def zip_key_number(data: bytes, rng: random.Random) -> bytes:
    return _zip_pickle_with(data, lambda pickled: renumber_pickle(pickled, rng))


def zip_scalar(data: bytes, rng: random.Random) -> bytes:
    return _zip_pickle_with(data, lambda pickled: rescalar_pickle(pickled, rng))


ZIP_MUTATORS = [zip_pickle, zip_pickle, zip_pickle, zip_record, zip_header_field, zip_bomb,
                zip_key_number, zip_scalar, pathctl]  # fmt: skip


# --- pickle opcodes -----------------------------------------------------------------------


def _ops(pickled: bytes) -> list[tuple[int, int, str, object]]:
    """(start, end, opcode name, argument) of each opcode read before any damage."""
    ops, positions = [], []
    try:
        for opcode, arg, pos in pickletools.genops(pickled):
            positions.append((pos, opcode.name, arg))
    except Exception:
        pass
    for index, (pos, name, arg) in enumerate(positions):
        end = positions[index + 1][0] if index + 1 < len(positions) else len(pickled)
        ops.append((pos, end, name, arg))
    return ops


def _encode_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    if len(raw) < 256:
        return b"\x8a" + bytes([len(raw)]) + raw
    return b"\x8b" + struct.pack("<i", len(raw)) + raw


def _encode_str(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


DEEP = 100_000


def deep_key(depth: int = DEEP) -> bytes:
    """``{((((),),),...): 1}``: a key nested ``depth`` deep, as one dict entry's opcodes."""
    return b")" + b"\x85" * depth + b"K\x01"


def shared_tuple_key(levels: int = 60) -> bytes:
    """A key of 2^levels leaves built from memo re-use: t_i = (t_{i-1}, t_{i-1})."""
    out = b")q\xf0"  # () memoised at 240 (out of the seeds' way)
    for level in range(1, levels):
        memo = 240 + (level % 8)
        previous = 240 + ((level - 1) % 8)
        out += b"h" + bytes([previous]) + b"h" + bytes([previous]) + b"\x86q" + bytes([memo])
    return out + b"K\x01"


def mutate_pickle(pickled: bytes, rng: random.Random) -> bytes:
    ops = _ops(pickled)
    if len(ops) < 3:
        return flip_bits(pickled, rng)
    choice = rng.random()
    start, end, name, arg = rng.choice(ops[1:-1])
    if choice < 0.15:
        return pickled[:start] + pickled[end:]  # an opcode deleted
    if choice < 0.25:
        return pickled[:end] + pickled[start:end] + pickled[end:]  # duplicated
    if choice < 0.45:
        ints = [op for op in ops if op[2] in ("BININT", "BININT1", "BININT2", "LONG1")]
        if ints:
            start, end, _, _ = rng.choice(ints)
            value = rng.choice([-1, 0, 2**31 - 1, *HUGE, 10**5000 // 10**4000])
            return pickled[:start] + _encode_int(value) + pickled[end:]
    if choice < 0.6:
        strings = [op for op in ops if op[2] in ("BINUNICODE", "SHORT_BINUNICODE")]
        if strings:
            start, end, _, _ = rng.choice(strings)
            text = rng.choice(["", "\n", "a\nb", "x" * 5000, "9" * 5000, "os", "system",
                               "_rebuild_tensor_v2", "mask.0.fc/0", "\udc80"])  # fmt: skip
            return pickled[:start] + _encode_str(text) + pickled[end:]
    if choice < 0.7:
        globals_ = [op for op in ops if op[2] == "GLOBAL"]
        if globals_:
            start, end, _, _ = rng.choice(globals_)
            target = rng.choice(
                [
                    "posix\nsystem",
                    "builtins\neval",
                    "torch\nload",
                    "collections\nOrderedDict",
                    "torch._utils\n_rebuild_tensor",
                ]
            )
            return pickled[:start] + b"c" + target.encode() + b"\n" + pickled[end:]
    if choice < 0.85:
        # a hostile entry added to the first dict: deep key or exponential key
        dicts = [op for op in ops if op[2] in ("EMPTY_DICT",)]
        start, end, _, _ = rng.choice(dicts) if dicts else ops[1]
        key = rng.choice([deep_key(), deep_key(5000), shared_tuple_key(), shared_tuple_key(24)])
        return pickled[:end] + key + b"s" + pickled[end:]
    count = rng.choice([2**31 - 1, 2**32 - 1, 10**6])
    return pickled[:start] + b"X" + struct.pack("<I", count % 2**32) + b"abc" + pickled[start:]


# what replaces a number, a bool or None in a pickle: a list, a dict, a float, a string,
# True, None (a tensor where a scalar belongs comes from scalar_entry)
OTHER_SCALARS = [b"]K\x01a", b"](K\x01K\x02e", b"}", b"G" + struct.pack(">d", 1.5),
                 _encode_str("1"), b"\x88", b"N", _encode_int(2**40)]  # fmt: skip
SCALAR_OPS = ("BININT", "BININT1", "BININT2", "LONG1", "NEWTRUE", "NEWFALSE", "NONE")


def rescalar_pickle(pickled: bytes, rng: random.Random) -> bytes:
    """A number, bool or None of the pickle (a task id, an epoch, a size) made another type."""
    scalars = [op for op in _ops(pickled) if op[2] in SCALAR_OPS]
    if not scalars:
        raise ValueError("no scalar in the pickle")
    start, end, _, _ = rng.choice(scalars)
    return pickled[:start] + rng.choice(OTHER_SCALARS) + pickled[end:]


def renumber_pickle(pickled: bytes, rng: random.Random) -> bytes:
    """A string of the pickle with a dot-separated number (a tensor key, a task key) given
    a hostile number instead."""
    strings = [op for op in _ops(pickled) if op[2] in ("BINUNICODE", "SHORT_BINUNICODE")]
    numbered = [op for op in strings if isinstance(op[3], str) and NUMBER_IN_KEY.search(op[3])]
    if not numbered:
        raise ValueError("no numbered string in the pickle")
    start, end, _, text = rng.choice(numbered)
    return pickled[:start] + _encode_str(_renumbered(text, rng)) + pickled[end:]


def scalar_entry(data: bytes, rng: random.Random) -> bytes:
    """A file of tensors and containers, saved again with a tensor, list or other value
    where one of its scalars (task_id, epoch, a config number, a task key) belongs."""
    import torch

    payload = _torch_payload(data)
    hostile = rng.choice([lambda: torch.tensor([1, 2]), lambda: torch.tensor(1),
                          lambda: torch.ones(2, 2), lambda: [1], lambda: {"a": 1},
                          lambda: 1.5, lambda: "1", lambda: True, lambda: 2**40])()  # fmt: skip
    places = [(payload, key) for key in payload if not isinstance(payload[key], torch.Tensor)]
    for inner in ("config", "masks"):
        if isinstance(payload.get(inner), dict):
            places += [(payload[inner], key) for key in payload[inner]]
    places += [(payload, "task_id")]  # an entry the hatinspect layout reads, added
    where, key = rng.choice(places)
    if where is payload.get("masks") and rng.random() < 0.5:
        where[hostile if isinstance(hostile, int | str | float) else 7] = where.pop(key)
    else:
        where[key] = hostile
    out = io.BytesIO()
    torch.save(payload, out)
    return out.getvalue()


def _torch_payload(data: bytes) -> dict:
    import torch

    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # a whole pickled object: rescalar_pickle covers it
        raise ValueError("not a plain tensor file") from exc
    if not isinstance(payload, dict):
        raise ValueError("not a mapping")
    return payload


def legacy_key_number(data: bytes, rng: random.Random) -> bytes:
    return _legacy_with(data, lambda pickled: renumber_pickle(pickled, rng))


def legacy_scalar(data: bytes, rng: random.Random) -> bytes:
    return _legacy_with(data, lambda pickled: rescalar_pickle(pickled, rng))


def legacy_pickle(data: bytes, rng: random.Random) -> bytes:
    """One of the legacy file's leading pickles mutated (they hold the object)."""
    return _legacy_with(data, lambda pickled: mutate_pickle(pickled, rng), rng)


def _legacy_with(data: bytes, mutate, rng: random.Random | None = None) -> bytes:
    """The legacy file with its object's pickle (or, given ``rng``, any leading one) mutated."""
    stream, cut = io.BytesIO(data), []
    for _ in range(5):
        try:
            pickle.load(stream)
        except Exception:
            break
        cut.append(stream.tell())
    bounds = list(zip([0, *cut[:-1]], cut, strict=True))
    choices = bounds[3:4] or bounds or [(0, len(data))]
    start, end = rng.choice(choices) if rng else choices[0]
    return data[:start] + mutate(data[start:end]) + data[end:]


# --- hostile objects torch can save ---------------------------------------------------------


def hostile_objects() -> list[tuple[str, Callable[[], object]]]:
    """Named builders of state dicts no importer should choke on (each saved by torch)."""
    import torch

    def hat_cl(**changes):
        state = {
            "f.weight": torch.randn(4, 3),
            "f.masker.attention.0": torch.randn(4),
            "f.masker._task_trained": torch.tensor([True]),
        }
        state.update(changes)
        return state

    def original(**changes):
        state = {"c.weight": torch.randn(4, 3), "ec.weight": torch.randn(2, 4)}
        state.update(changes)
        return state

    def clarena(**changes):
        state = {
            "backbone.fc.0.weight": torch.randn(4, 3),
            "backbone.task_embedding_t.fc/0.weight": torch.randn(1, 4),
            "heads.heads.1.weight": torch.randn(2, 4),
        }
        state.update(changes)
        return state

    def full(**changes):
        # a HATMaskMLP(3, [4], 2) saved with its masks, as hatinspect's .pt layout keeps it
        state = {
            "state_dict": {
                "task_embedding_t.fc/0.weight": torch.randn(1, 4),
                "task_embedding_t.fc/1.weight": torch.randn(1, 2),
                "fc.0.weight": torch.randn(4, 3),
                "fc.0.bias": torch.randn(4),
                "fc.1.weight": torch.randn(2, 4),
                "fc.1.bias": torch.randn(2),
            },
            "masks": {0: {"fc/0": torch.ones(4), "fc/1": torch.ones(2)}},
            "backbone": "HATMaskMLP",
            "config": {
                "input_dim": 3,
                "hidden_dims": [4],
                "output_dim": 2,
                "activation_layer": "ReLU",
                "bias": True,
                "dropout": None,
                "gate": "sigmoid",
            },  # fmt: skip
        }
        state.update(changes)
        return state

    def config(**changes):
        return full()["config"] | changes

    def supsup(args=None, **changes):
        # SupSup's main.py dict, ``args`` a plain dict: its scores of the weight's shape
        state = {
            "linear.0.weight": torch.randn(4, 3, 1, 1),
            "linear.0.scores.0": torch.randn(4, 3, 1, 1),
            "linear.0.scores.1": torch.randn(4, 3, 1, 1),
        }
        state.update(changes)
        stored = {"conv_type": "MultitaskMaskConv", "sparsity": 0.5} if args is None else args
        return {"epoch": 1, "arch": "Tiny", "state_dict": state, "args": stored}

    big = torch.zeros(1).expand(2**33)
    return [
        ("sparse embedding", lambda: original(**{"ec.weight": torch.randn(2, 4).to_sparse()})),
        ("sparse weight", lambda: original(**{"c.weight": torch.randn(4, 3).to_sparse()})),
        ("meta weight", lambda: original(**{"c.weight": torch.empty(4, 3, device="meta")})),
        (
            "quantized weight",
            lambda: original(
                **{"c.weight": torch.quantize_per_tensor(torch.randn(4, 3), 0.1, 0, torch.qint8)}
            ),
        ),  # fmt: skip
        (
            "fp8 embedding",
            lambda: original(**{"ec.weight": torch.randn(2, 4).to(torch.float8_e4m3fn)}),
        ),  # fmt: skip
        (
            "fp8 flags",
            lambda: hat_cl(**{"f.masker._task_trained": torch.ones(1).to(torch.float8_e5m2)}),
        ),  # fmt: skip
        ("bf16 weights", lambda: original(**{"c.weight": torch.randn(4, 3).bfloat16()})),
        ("complex weight", lambda: original(**{"c.weight": torch.randn(4, 3, dtype=torch.cfloat)})),
        ("stride-0 claim", lambda: original(**{"c.weight": big.reshape(2**32, 2)})),
        ("stride-0 embedding", lambda: original(**{"ec.weight": torch.zeros(1).expand(2, 4)})),
        ("0-d weight", lambda: original(**{"c.weight": torch.tensor(1.0)})),
        ("zero-size weight", lambda: original(**{"c.weight": torch.zeros(4, 0)})),
        ("empty layer name", lambda: {".weight": torch.randn(4, 3), "e.weight": torch.randn(2, 4)}),
        ("huge HAT-CL task", lambda: hat_cl(**{f"f.masker.attention.{'9' * 5000}": torch.ones(4)})),
        (
            "huge CLArena head",
            lambda: clarena(**{f"heads.heads.{'9' * 5000}.weight": torch.ones(1)}),
        ),
        ("huge HAT-CL norm", lambda: hat_cl(**{f"f.bn.{'9' * 5000}.running_mean": torch.ones(4)})),
        ("HAT-CL task 2^31", lambda: hat_cl(**{f"f.masker.attention.{2**31}": torch.ones(4)})),
        ("CLArena head 01", lambda: clarena(**{"heads.heads.01.weight": torch.ones(1)})),
        ("tensor as key", lambda: {torch.ones(3): torch.ones(3)}),
        ("masks as string", lambda: full(masks="nope")),
        ("mask None", lambda: full(masks={0: {"fc/0": None, "fc/1": torch.ones(2)}})),
        ("mask dict", lambda: full(masks={0: {"fc/0": {"a": 1}, "fc/1": torch.ones(2)}})),
        ("mask ragged", lambda: full(masks={0: {"fc/0": [[1], [1, 0]], "fc/1": torch.ones(2)}})),
        ("mask key tensor", lambda: full(masks={torch.ones(2): {"fc/0": torch.ones(4)}})),
        ("task -1", lambda: full(masks={-1: {"fc/0": torch.ones(4), "fc/1": torch.ones(2)}})),
        ("task True", lambda: full(masks={True: {"fc/0": torch.ones(4), "fc/1": torch.ones(2)}})),
        ("task_id True", lambda: full(task_id=True)),
        ("task_id -1", lambda: full(task_id=-1)),
        ("task_id tensor", lambda: full(task_id=torch.tensor([1, 2]))),
        ("task_id tensor, no masks", lambda: _without_masks(full(task_id=torch.tensor([1, 2])))),
        ("task_id list, no masks", lambda: _without_masks(full(task_id=[1]))),
        ("backbone tensor", lambda: full(backbone=torch.ones(1))),
        ("config tensor", lambda: full(config=torch.ones(3))),
        ("input_dim tensor", lambda: full(config=config(input_dim=torch.tensor(3)))),
        ("hidden_dims tensor", lambda: full(config=config(hidden_dims=torch.tensor([4])))),
        ("full layout as is", lambda: full()),
        ("input_dim -1", lambda: full(config=config(input_dim=-1))),
        ("input_dim 2^62", lambda: full(config=config(input_dim=2**62))),
        ("output_dim 0", lambda: full(config=config(output_dim=0))),
        ("hidden_dims 100k", lambda: full(config=config(hidden_dims=[4] * 100_000))),
        ("hidden_dims huge", lambda: full(config=config(hidden_dims=[2**40]))),
        ("hidden_dims junk", lambda: full(config=config(hidden_dims="4"))),
        ("activation junk", lambda: full(config=config(activation_layer="os.system"))),
        ("gate junk", lambda: full(config=config(gate=["x"]))),
        ("backbone junk", lambda: full(backbone="HATMaskResNet18")),
        ("config junk", lambda: full(config={"input_dim": "x", "nope": [1]})),
        ("heads tensor", lambda: full(heads=torch.ones(3, 3))),
        ("heads junk", lambda: full(heads={"a": "b"})),
        (
            "name newline",
            lambda: original(
                **{"c\nx.weight": torch.randn(4, 3), "ec\nx.weight": torch.randn(2, 4)}
            ),
        ),  # fmt: skip
        ("nan embedding", lambda: original(**{"ec.weight": torch.full((2, 4), float("nan"))})),
        ("SupSup as is", lambda: supsup()),
        ("SupSup scores shape", lambda: supsup(**{"linear.0.scores.1": torch.randn(4, 3)})),
        (
            "SupSup scores NaN",
            lambda: supsup(**{"linear.0.scores.0": torch.full((4, 3, 1, 1), float("nan"))}),
        ),  # fmt: skip
        (
            "SupSup scores int",
            lambda: supsup(**{"linear.0.scores.0": torch.ones(4, 3, 1, 1, dtype=torch.int64)}),
        ),  # fmt: skip
        (
            "SupSup scores fp8",
            lambda: supsup(
                **{"linear.0.scores.0": torch.randn(4, 3, 1, 1).to(torch.float8_e4m3fn)}
            ),
        ),  # fmt: skip
        (
            "SupSup scores sparse",
            lambda: supsup(**{"linear.0.scores.0": torch.randn(4, 3, 1, 1).to_sparse()}),
        ),  # fmt: skip
        (
            "SupSup scores stride-0",
            lambda: supsup(
                **{
                    "linear.0.weight": big.reshape(2**31, 4, 1, 1),
                    "linear.0.scores.0": big.reshape(2**31, 4, 1, 1),
                }
            ),
        ),  # fmt: skip
        ("SupSup sparsity 2", lambda: supsup({"conv_type": "MultitaskMaskConv", "sparsity": 2})),
        ("SupSup sparsity nan", lambda: supsup({"sparsity": float("nan")})),
        ("SupSup sparsity tensor", lambda: supsup({"sparsity": torch.tensor(0.5)})),
        ("SupSup no sparsity", lambda: supsup({"conv_type": "MultitaskMaskConv"})),
        ("SupSup args tensor", lambda: supsup(torch.ones(2))),
        ("SupSup conv_type junk", lambda: supsup({"conv_type": ["x"], "sparsity": 0.5})),
        (
            "SupSup er_sparsity 2-d",
            lambda: supsup(
                {"sparsity": 0.5, "er_sparsity": True},
                **{
                    "linear.0.weight": torch.randn(4, 3),
                    "linear.0.scores.0": torch.randn(4, 3),
                    "linear.0.scores.1": torch.randn(4, 3),
                },
            ),
        ),  # fmt: skip
        ("SupSup task hole", lambda: supsup(**{"linear.0.scores.5": torch.randn(4, 3, 1, 1)})),
        (
            "SupSup task 2^31",
            lambda: {"w.weight": torch.randn(2, 2), f"w.scores.{2**31}": torch.randn(2, 2)},
        ),  # fmt: skip
        (
            "SupSup huge task",
            lambda: {"w.weight": torch.randn(2, 2), f"w.scores.{'9' * 5000}": torch.randn(2, 2)},
        ),  # fmt: skip
        ("SupSup no weight", lambda: {"w.scores.0": torch.randn(2, 2)}),
        ("SupSup 1-d weight", lambda: {"w.weight": torch.randn(2), "w.scores.0": torch.randn(2)}),
        (
            "SupSup half prefixed",
            lambda: supsup(**{"module.linear.0.scores.0": torch.randn(4, 3, 1, 1)}),
        ),  # fmt: skip
        (
            "bad preceding flow",
            lambda: {
                "conv2x.0.conv1.weight": torch.randn(6, 5, 3, 3),
                "task_embedding_t.conv1.weight": torch.randn(1, 4),
                "conv1.weight": torch.randn(4, 3, 3, 3),
                "task_embedding_t.conv2x/0/conv1.weight": torch.randn(1, 6),
            },
        ),  # fmt: skip
    ]


def _without_masks(payload: dict) -> dict:
    payload.pop("masks")
    return payload


# --- cases ---------------------------------------------------------------------------------


COMPOUND_SUFFIXES = (".pertask.npy",)  # a WSN run's masks: the name says which part


def split_case_name(name: str) -> tuple[str, str]:
    """``(stem, suffix)`` of a seed's name, the suffix kept whole in its cases' names."""
    compound = next((s for s in COMPOUND_SUFFIXES if name.endswith(s)), None)
    if compound:
        return name[: -len(compound)], compound
    stem, ext = name.rsplit(".", 1)
    return stem, "." + ext


def gzipped_pickle(data: bytes, rng: random.Random) -> bytes:
    """A ``.pkz`` log (a gzipped pickle) with its pickle mutated, gzipped again."""
    return gzip.compress(mutate_pickle(gzip.decompress(data), rng), mtime=0)


def kind_of(name: str) -> str:
    if TRAJECTORY_CASE in name:
        return "trajectory"
    if name.endswith(".pkz"):
        return "pkz"
    if name.endswith(".safetensors"):
        return "safetensors"
    return "legacy" if "legacy" in name else "zip"


MUTATORS = {
    "safetensors": SAFETENSORS_MUTATORS + BYTE_MUTATORS,
    "trajectory": [
        metadata_field,
        trajectory_field,
        trajectory_field,
        tensor_entry,
        retyped_tensor,
        pathctl,
    ]
    + BYTE_MUTATORS,  # fmt: skip
    "pkz": [gzipped_pickle, gzipped_pickle, gzipped_pickle] + BYTE_MUTATORS,
    "zip": ZIP_MUTATORS + [scalar_entry] + BYTE_MUTATORS,
    "legacy": [legacy_pickle, legacy_pickle, legacy_key_number, legacy_scalar, pathctl]
    + BYTE_MUTATORS,
}


def make_cases(seeds: dict[str, bytes], count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """``count`` (case name, bytes) pairs, the same for the same ``seeds`` and ``seed``:
    the seeds themselves (named ``seed-``: each must load), the hostile objects once
    each, then mutations of the seeds in turn."""
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    names = sorted(seeds)
    produced = 0
    for name in names[:count]:
        produced += 1
        yield f"{produced:06d}-seed-{name}", seeds[name]
    for label, build in hostile_objects():
        if produced < count:
            out = io.BytesIO()
            with warnings.catch_warnings():  # quantized tensors are deprecated
                warnings.simplefilter("ignore")
                torch.save(build(), out)
            produced += 1
            yield f"{produced:06d}-object-{label.replace(' ', '_')}.pt", out.getvalue()
    index = 0
    while produced < count:
        name = names[index % len(names)]
        index += 1
        mutator = rng.choice(MUTATORS[kind_of(name)])
        data = seeds[name]
        try:
            mutated = mutator(data, random.Random(rng.getrandbits(64)))
            if rng.random() < 0.2:  # a second mutation now and then
                second = rng.choice(BYTE_MUTATORS)
                mutated = second(mutated, random.Random(rng.getrandbits(64)))
        except (zipfile.BadZipFile, KeyError, ValueError, IndexError, StopIteration):
            continue  # a mutator that does not apply to this seed
        produced += 1
        stem, suffix = split_case_name(name)
        yield f"{produced:06d}-{stem}-{mutator.__name__}{suffix}", mutated
