"""A PyTorch file, checked and loaded inertly, as a state dict and the entries beside it."""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from hatinspect.importers.safety.tensor_claims import check_tensors
from hatinspect.importers.safety.torch_file import CheckedFile, check_torch_file
from hatinspect.importers.safety.unpickler import (
    load_legacy_object,
    load_saved_object,
    pickle_globals,
    refuse_globals,
)
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.progress import reading
from hatinspect.native import format as fmt


def load_payload(path: Path, whole=None):
    """The file's object. Its pickle's globals are checked first (``refused_globals``);
    a file of tensors and containers loads with ``torch.load(weights_only=True)``, a whole
    pickled object (a ``torch.save`` zip) with the placeholder unpickler, and so does a
    legacy file whose object ``whole(obj)`` accepts (a layout's whole pickled network)."""
    checked = check_torch_file(path)  # zip records and pickles no checkpoint has, first
    try:
        payload = load_checked(path, checked, whole)
    except CheckpointError:
        checked.wait()  # a damaged record is what to report first
        raise
    checked.wait()
    check_tensors(path, payload, path.stat().st_size)
    return payload


def load_checked(path: Path, checked: CheckedFile, whole=None):
    refuse_globals(path, checked.globals)  # every pickle's, as check_torch_file scanned them
    try:
        with warnings.catch_warnings():
            # What torch warns of while it rebuilds a file's tensors is its own API (the
            # deprecated TypedStorage, quantized constructors, a plain pickle's protocol),
            # never what the file holds: that is checked after loading (check_tensors,
            # the importers) and refused or noted there. So every warning is silenced.
            warnings.simplefilter("ignore")
            # a file object, not the path: torch.load treats a path by its suffix
            with reading(path, f"loading {path.name}") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not checked.zipped:  # what the scan took it for, never a second guess
            legacy = legacy_object(path, whole)
            if legacy is not None:
                return legacy
            raise CheckpointError(f"{path}: refused to load: {refusal(path, exc)}") from None
        with warnings.catch_warnings():  # the same warnings, from the same rebuilding
            warnings.simplefilter("ignore")
            return load_saved_object(path)
    except Exception as exc:  # torch.load raises many types on damaged data; all mean "unreadable"
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def legacy_object(path: Path, whole):
    """The object of a legacy file, unpickled inertly, when ``whole`` accepts it; else None."""
    if whole is None:
        return None
    try:
        with warnings.catch_warnings():  # torch's own API, as in load_checked
            warnings.simplefilter("ignore")
            obj = load_legacy_object(path)
    except CheckpointError:
        return None
    return obj if whole(obj) else None


def unwrap(path: Path, payload) -> tuple[dict[str, Tensor], dict]:
    """``(state_dict, other entries)``; Lightning's ``{"state_dict": ...}`` is unwrapped."""
    if not isinstance(payload, Mapping):
        raise CheckpointError(
            f"{path}: holds a {type(payload).__name__}, not a state_dict; save the weights"
            " with torch.save(model.state_dict(), ...) and inspect that file"
        )
    if isinstance(payload.get("state_dict"), Mapping):
        extra = {key: value for key, value in payload.items() if key != "state_dict"}
        state = payload["state_dict"]
    else:
        state, extra = payload, {}
    return named_tensors(path, "state_dict", state), extra


def named_tensors(path: Path, what: str, tensors) -> dict[str, Tensor]:
    if not isinstance(tensors, Mapping):
        raise CheckpointError(f"{path}: {what} is a {type(tensors).__name__}, not a mapping")
    for key, value in tensors.items():
        if not (fmt.text(key) and isinstance(value, Tensor)):
            raise CheckpointError(f"{path}: {what} entry {shown(key)} is not a named tensor")
    return dict(tensors)


def refusal(path: Path, exc: Exception) -> str:
    names = unsafe_globals(path, exc)
    if names:
        return (
            f"it needs {', '.join(names)}, not only tensors and containers; save the weights"
            " with torch.save(model.state_dict(), ...) and inspect that file"
        )
    return f"not a plain tensor checkpoint ({torch_reason(exc)})"


def unsafe_globals(path: Path, exc: Exception) -> list[str]:
    found = re.findall(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return sorted(set(found))
    try:  # opcodes only, never executed; a damaged pickle names nothing
        return [name for name in pickle_globals(path.read_bytes()) if name != "<unknown>"]
    except Exception:
        return []


def torch_reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if "Unsupported" in line or "Trying to load" in line]
    return (detail or lines or [type(exc).__name__])[0][:200]
