"""Whole objects in torch's legacy format, unpickled inertly: storages bounded by the
file's size, filled from the bytes after the pickles, each holding what it claims."""

from __future__ import annotations

import io
import pickle

import pytest

torch = pytest.importorskip("torch")

from hatinspect.importers.safety.unpickler import (  # noqa: E402
    LEGACY_MAGIC,
    LEGACY_VERSION,
    Placeholder,
    load_legacy_object,
)
from hatinspect.model.errors import CheckpointError  # noqa: E402

SYS_INFO = {"protocol_version": LEGACY_VERSION, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}  # fmt: skip


class Stored:
    """Stands for a storage: the pickler writes ``pid`` for it, as torch's _legacy_save."""

    def __init__(self, pid):
        self.pid = pid


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Stored) else None


def _legacy(obj, keys, data: bytes, header=(LEGACY_MAGIC, LEGACY_VERSION, SYS_INFO)) -> bytes:
    out = io.BytesIO()
    for item in header:
        pickle.dump(item, out, protocol=2)
    _Pickler(out, protocol=2).dump(obj)
    pickle.dump(keys, out, protocol=2)
    out.write(data)
    return out.getvalue()


def _storage(numel, key="0"):
    return Stored(("storage", torch.FloatStorage, key, "cuda:0", numel, None))


class _Rebuilt:
    """Pickles as ``_rebuild_tensor(storage, 0, size, (1,))``, as torch 0.2 pickled tensors."""

    def __init__(self, storage, size):
        self.args = (storage, 0, (size,), (1,))

    def __reduce__(self):
        return torch._utils._rebuild_tensor, self.args


def test_a_storage_is_filled_from_the_bytes_after_the_pickles(tmp_path):
    values = torch.arange(4, dtype=torch.float32)
    raw = (4).to_bytes(8, "little") + values.numpy().tobytes()
    path = tmp_path / "ok.pt"
    path.write_bytes(_legacy({"w": _Rebuilt(_storage(4), 4)}, ["0"], raw))
    assert load_legacy_object(path)["w"].tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("obj", "keys", "data", "message"),
    [
        ({"w": _Rebuilt(_storage(4), 4)}, ["0"], (4).to_bytes(8, "little") + b"\0" * 8,
         "holds other than it claims"),
        ({"w": _Rebuilt(_storage(4), 4)}, ["0"], (5).to_bytes(8, "little") + b"\0" * 16,
         "holds other than it claims"),
        ({"w": _Rebuilt(_storage(2**40), 4)}, ["0"], b"", "claims more than the file holds"),
        ({"w": _Rebuilt(_storage(-1), 4)}, ["0"], b"", "claims more than the file holds"),
        ({"w": _Rebuilt(_storage(4), 9)}, ["0"], (4).to_bytes(8, "little") + b"\0" * 16,
         "reaches outside its storage"),
        ({"w": _Rebuilt(_storage(4), 4)}, ["1"], b"", "do not match the storages named"),
        ({"w": _Rebuilt(_storage(4), 4), "v": _Rebuilt(_storage(2), 2)}, ["0"], b"",
         "named with two sizes"),
    ],
    ids=["short data", "other count", "huge claim", "negative claim", "view outside",
         "keys differ", "two sizes"],
)  # fmt: skip
def test_a_storage_that_holds_other_than_it_claims_is_refused(tmp_path, obj, keys, data, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(_legacy(obj, keys, data))
    with pytest.raises(CheckpointError, match=message) as error:
        load_legacy_object(path)
    assert "\n" not in str(error.value)


def test_another_header_is_not_a_legacy_file(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(_legacy({}, [], b"", header=(1, LEGACY_VERSION, SYS_INFO)))
    with pytest.raises(CheckpointError, match="not a legacy torch.save file"):
        load_legacy_object(path)


def test_classes_are_placeholders_and_module_sources_are_never_compiled(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 1))
    path = tmp_path / "net.pt"
    torch.save({"model": net}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert b"class Sequential" in data  # torch saved the class's source beside it
    model = load_legacy_object(path)["model"]
    assert isinstance(model, Placeholder) and model.global_name.endswith("Sequential")
