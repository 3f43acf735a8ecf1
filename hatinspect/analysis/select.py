"""Choosing a checkpoint's tasks by id and layers by glob; errors list what exists."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.errors import HatinspectError

_LISTED = 12  # names shown in an error before the list is cut short


def select_tasks(checkpoint: Checkpoint, tasks: Iterable[int] | None = None) -> tuple[int, ...]:
    """The chosen task ids in the checkpoint's order; all of them when none are given."""
    wanted = set(tasks or ())
    if not wanted:
        return checkpoint.task_ids
    missing = sorted(wanted - set(checkpoint.task_ids))
    if missing:
        raise HatinspectError(
            f"no task {', '.join(map(str, missing))} in {checkpoint.path}; "
            f"its tasks are {_listing(map(str, checkpoint.task_ids))}"
        )
    return tuple(task for task in checkpoint.task_ids if task in wanted)


def select_layers(
    checkpoint: Checkpoint, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[LayerInfo, ...]:
    """Layers (network order) matching any `include` glob and no `exclude` glob.

    Globs use shell rules on the "/"-separated names, so `*` also crosses "/". A pattern
    that matches nothing is an error, since it is almost always a typo.
    """
    names = checkpoint.layer_names
    chosen = set(_matching(names, include, checkpoint.path)) if include else set(names)
    chosen -= set(_matching(names, exclude, checkpoint.path))
    if not chosen:
        raise HatinspectError(f"the layer patterns leave no layer of {checkpoint.path}")
    return tuple(layer for layer in checkpoint.layers if layer.name in chosen)


def require_unit_masks(checkpoint: Checkpoint, analysis: str) -> None:
    """Refuse, in one line, an analysis that reasons about units on masks that cover
    parameters (they say nothing of which units a task uses)."""
    if checkpoint.covers != Covers.UNITS:
        raise HatinspectError(
            f"{checkpoint.path}: its masks cover {checkpoint.covers}, not units;"
            f" {analysis} reads masks of units"
        )


def require_weights(checkpoint: Checkpoint, analysis: str) -> None:
    """Refuse, in one line, an analysis that reads weights on a checkpoint that has none
    (one made of training logs alone)."""
    if not checkpoint.weights_known:
        raise HatinspectError(
            f"{checkpoint.path}: {NO_WEIGHTS}; {analysis} reads weights ({READ_BY_LOGS})"
        )


NO_WEIGHTS = "the logs hold no weights"
READ_BY_LOGS = "info, masks, capacity, overlap, trajectory, compare and report read the logs"


def find_layer(checkpoint: Checkpoint, name: str) -> LayerInfo:
    """One layer: called `name`, or PyTorch's dotted spelling of it (`conv5x.0.conv2`),
    or the only one a glob matches (as `--layer` globs elsewhere); the error suggests
    near names, or lists the matches when a glob matches several."""
    names = set(checkpoint.layer_names)
    for candidate in (name, name.replace(".", "/")):
        if candidate in names:
            return checkpoint.layer(candidate)
    hits = [layer for layer in checkpoint.layers if fnmatchcase(layer.name, name)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise HatinspectError(
            f"layer pattern {name!r} matches {len(hits)} layers of {checkpoint.path} "
            f"({_listing(layer.name for layer in hits)}); give one"
        )
    raise HatinspectError(_unknown_layer(name, checkpoint))


def _matching(names: list[str], patterns: Sequence[str], path: str) -> list[str]:
    found = []
    for pattern in patterns:
        hits = [name for name in names if fnmatchcase(name, pattern)]
        if not hits:
            raise HatinspectError(
                f"layer pattern {pattern!r} matches no layer of {path}; "
                f"its layers are {_listing(names)}"
            )
        found += hits
    return found


def _unknown_layer(name: str, checkpoint: Checkpoint) -> str:
    near = difflib.get_close_matches(name, checkpoint.layer_names, n=3)
    guess = f"did you mean {' or '.join(map(repr, near))}? " if near else ""
    return (
        f"no layer {name!r} in {checkpoint.path}; {guess}"
        f"its layers are {_listing(checkpoint.layer_names)}"
    )


def _listing(names: Iterable[str]) -> str:
    names = list(names)
    if not names:
        return "(none)"
    shown = ", ".join(names[:_LISTED])
    if len(names) <= _LISTED:
        return shown
    return f"{shown}, ... ({len(names)} in all; `hatinspect info` lists them)"
