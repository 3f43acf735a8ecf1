"""Which layout a PyTorch file is in, and its import through that layout's module.

A layout is a module with ``NAME``, ``detects(state, extra)`` and ``read(path, state, extra,
task_id)``; `LAYOUTS` lists them in the order they are tried. A new layout is one module
and one line here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hatinspect.importers import (
    avalanche_packnet,
    clarena,
    clarena_wsn,
    hat_cl,
    hatinspect_pt,
    original_hat,
    original_packnet,
    piggyback,
    supsup,
    wsn_authors,
)
from hatinspect.importers.common import Imported, numpy_of
from hatinspect.importers.payload import load_payload, unwrap
from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.importers.saved_models import import_saved_model, saved_model_state
from hatinspect.model.errors import CheckpointError
from hatinspect.native import format as fmt

# in the order they are tried
LAYOUTS = (
    hatinspect_pt,
    hat_cl,
    clarena,
    original_hat,
    avalanche_packnet,
    original_packnet,
    piggyback,
    supsup,
    wsn_authors,
)
# dicts around a whole pickled network (``holds``, ``import_object``, ``tensors``), tried
# before any state_dict layout; their legacy (pre-zip) files are unpickled inertly too
WHOLE_OBJECTS = (original_packnet, piggyback, supsup)
BY_NAME = {layout.NAME: layout for layout in LAYOUTS}
ONE_TASK_SOURCES = ("clarena", "hatinspect")
# how a layout's masks are made from real values, where the caller may choose: the keyword
# of its import_object, and what the choice applies to
RULES = {
    "mask_rule": (supsup.NAME, "--mask-rule (mask_rule=)", "SupSup files"),
    "mask_threshold": (
        piggyback.NAME,
        "--mask-threshold (mask_threshold=)",
        "Piggyback's training checkpoints",
    ),
}


def import_checkpoint(
    path: str | Path,
    source: str | None = None,
    task_id: int | None = None,
    *,
    mask_rule: str | None = None,
    mask_threshold: float | None = None,
) -> Imported:
    """Read a PyTorch file in one of the known layouts (``source`` forces one);
    ``task_id`` names the task of a file that holds one task's embedding; ``mask_rule``
    (SupSup: "topk" or "sign") and ``mask_threshold`` (Piggyback) replace the rule the
    file implies for binarising its scores."""
    path = Path(path)
    rules = {k: v for k, v in (("mask_rule", mask_rule), ("mask_threshold", mask_threshold))
             if v is not None}  # fmt: skip
    if source is not None and source not in BY_NAME:
        known = ", ".join(fmt.SOURCES)
        raise CheckpointError(f"{path}: unknown source {source!r}; expected one of {known}")
    if wsn_authors.is_run_file(path):  # a run's files, found by their names
        refuse_rules(path, wsn_authors.NAME, rules)
        return wsn_authors.import_run(path, source, task_id)
    payload = load_payload(path, whole_object)
    if (layout := whole_object(payload)) is not None:
        refuse_rules(path, layout.NAME, rules)
        return layout.import_object(path, payload, source, task_id, **rules)
    if clarena_wsn.is_wsn(payload) or isinstance(payload, Placeholder):
        refuse_rules(path, "clarena", rules)  # a saved model stores its binary masks
    if clarena_wsn.is_wsn(payload):
        return clarena_wsn.import_wsn(path, payload, source, task_id)
    if isinstance(payload, Placeholder):
        return import_saved_model(path, payload, source, task_id)
    state, extra = unwrap(path, payload)
    source = source or detect(path, state, extra)
    refuse_rules(path, source, rules)
    if task_id is not None and source not in ONE_TASK_SOURCES:
        raise CheckpointError(
            f"{path}: a {source} file records its tasks; a task id applies only to a file"
            " with one task's embedding (clarena, hatinspect)"
        )
    return BY_NAME[source].read(path, state, extra, task_id)


def refuse_rules(path: Path, layout: str | None, rules: dict) -> None:
    """A rule chosen for a layout other than the one it applies to is refused."""
    for keyword in rules:
        applies_to, choice, files = RULES[keyword]
        if layout != applies_to:
            what = f"a {layout} file" if layout else "another kind of file"
            raise CheckpointError(f"{path}: {choice} applies to {files} only; this is {what}")


def whole_object(payload):
    """The layout of ``WHOLE_OBJECTS`` that holds ``payload``, or None."""
    return next((layout for layout in WHOLE_OBJECTS if layout.holds(payload)), None)


def detect(path: Path, state, extra) -> str:
    """The layout a state_dict is in, from its tensor names and the entries beside it."""
    for layout in LAYOUTS:
        if layout.detects(state, extra):
            return layout.NAME
    raise CheckpointError(
        f"{path}: no HAT masks found (no task embeddings e<layer>/task_embedding_t and no"
        " HAT-CL masker.attention); pass a source to choose a layout"
    )


def read_torch_tensors(path: str | Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Named tensors of a PyTorch file's state_dict, as numpy arrays."""
    path = Path(path)
    if wsn_authors.is_run_file(path):
        return _named(path, wsn_authors.run_state(path), keys)
    payload = load_payload(path, whole_object)
    if (layout := whole_object(payload)) is not None:
        state = layout.tensors(path, payload)
    elif isinstance(payload, Placeholder):
        state = saved_model_state(path, payload)
    else:
        state, _ = unwrap(path, payload)
    return _named(path, state, keys)


def _named(path: Path, state, keys: list[str]) -> dict[str, np.ndarray]:
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(f"{path}: no tensor {missing[0]!r}")
    return {key: numpy_of(state[key]) for key in keys}
