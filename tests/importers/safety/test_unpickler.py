"""Pickles that would run code are refused by name, before anything of them is used."""

from __future__ import annotations

import builtins
import importlib
import os
import pickle
import runpy
import subprocess

import pytest
import torch

import hatinspect
from hatinspect.importers.safety.unpickler import pickle_globals, refused_globals

MARKER = "pwned"


class Planted:
    """Pickles as a call of ``function(*args)``, which loading the file would make."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


# one planted call per family of globals that can run code or touch the system
FAMILIES = {
    "os.system": (os.system, f"touch {MARKER}"),
    "subprocess": (subprocess.call, ["touch", MARKER]),
    "eval": (builtins.eval, f"open({MARKER!r}, 'w')"),
    "exec": (builtins.exec, f"open({MARKER!r}, 'w')"),
    "__import__": (builtins.__import__, "os"),
    "getattr": (builtins.getattr, "x", "upper"),
    "importlib": (importlib.import_module, "os"),
    "pickle.loads": (pickle.loads, b"."),
    "torch.load": (torch.load, MARKER),
    "runpy": (runpy.run_path, MARKER),
}
# the name the refusal gives, as the pickle spells the global
NAMES = {
    "os.system": ("os.system", "posix.system"),
    "subprocess": ("subprocess.call",),  # "commands.call" in the protocol 2 pickle
    "eval": ("builtins.eval", "__builtin__.eval"),
    "exec": ("builtins.exec", "__builtin__.exec"),
    "__import__": ("builtins.__import__", "__builtin__.__import__"),
    "getattr": ("builtins.getattr", "__builtin__.getattr"),
    "importlib": ("importlib.import_module",),
    "pickle.loads": ("_pickle.loads", "pickle.loads"),
    "torch.load": ("torch.serialization.load", "torch.load"),
    "runpy": ("runpy.run_path",),
}


def _planted_model(family: str) -> dict:
    """A CLArena-like saved object with the call planted deep in its graph."""
    function, *args = FAMILIES[family]
    return {
        "backbone": {"masks": {1: {"fc/0": torch.ones(3)}}, "hooks": [Planted(function, *args)]},
        "state_dict": {"fc.0.weight": torch.zeros(3, 2)},
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_a_planted_global_is_refused_by_name_and_never_runs(tmp_path, monkeypatch, family):
    monkeypatch.chdir(tmp_path)
    torch.save(_planted_model(family), "model.pth")
    with pytest.raises(hatinspect.CheckpointError) as error:
        hatinspect.open_checkpoint("model.pth")
    message = str(error.value)
    assert "model.pth" in message and "refused" in message
    assert any(name in message for name in NAMES[family]), message
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_plain_pickles_are_scanned_too(tmp_path, monkeypatch, protocol):
    monkeypatch.chdir(tmp_path)
    with open("model.pkl", "wb") as f:
        pickle.dump({"x": Planted(os.system, f"touch {MARKER}")}, f, protocol=protocol)
    with pytest.raises(hatinspect.CheckpointError, match=r"(os|posix)\.system"):
        hatinspect.open_checkpoint("model.pkl")
    assert not (tmp_path / MARKER).exists()


def test_globals_named_through_the_memo_are_found():
    # protocol 4 names a global by two strings; the second use comes from the memo
    data = pickle.dumps([Planted(os.system, "a"), Planted(os.system, "b")], protocol=4)
    assert {"posix.system"} <= set(pickle_globals(data)) or {"os.system"} <= set(
        pickle_globals(data)
    )
    assert "<unknown>" not in pickle_globals(data)


def test_refusals_are_sorted_and_deterministic():
    names = ["subprocess.call", "builtins.eval", "collections.OrderedDict", "os.system"]
    assert refused_globals(names) == ["builtins.eval", "os.system", "subprocess.call"]
    assert refused_globals(reversed(names)) == refused_globals(names)
    assert refused_globals(["torch._utils._rebuild_tensor_v2", "functools.partial"]) == []


def test_the_refusal_text_is_the_same_every_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    obj = [Planted(subprocess.call, ["x"]), Planted(os.system, "x"), Planted(eval, "1")]
    torch.save(obj, "many.pth")
    messages = set()
    for _ in range(3):
        with pytest.raises(hatinspect.CheckpointError) as error:
            hatinspect.open_checkpoint("many.pth")
        messages.add(str(error.value))
    (message,) = messages
    named = message.split("names ")[1].split(", which")[0].split(", ")
    assert named == sorted(named) and len(named) == 3


def test_a_plain_pickle_is_refused_by_the_scan_itself(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Planted(subprocess.call, ["x"]), protocol=2))
    with pytest.raises(hatinspect.CheckpointError, match=r"refused: it names subprocess\.call"):
        hatinspect.open_checkpoint(path)


def test_an_unknown_string_escape_warns_nothing(tmp_path, monkeypatch, recwarn):
    # protocol 0's STRING opcode with "\E": codecs.escape_decode warns while scanning
    monkeypatch.chdir(tmp_path)
    (tmp_path / "escape.pt").write_bytes(b"\x80\x02S'\\E'\n.")
    with pytest.raises(hatinspect.CheckpointError):
        hatinspect.open_checkpoint("escape.pt")
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
