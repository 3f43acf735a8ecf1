"""HAT's promise checked on files: parameters protected before a task, compared after it.

Two checkpoints are compared only when they can be: the same network, BEFORE's tasks all
stored in AFTER with the same masks, and (where both files carry one) the same run id.
The rule then depends on the algorithm the metadata names: HAT (and an unknown algorithm)
must leave protected parameters bit-identical; AdaHAT updates them softly by design, so
its drift is reported and passes unless asked to be strict; a tolerance applies to any.

The weights are read one block at a time (`hatinspect.native.blocks`), so the memory used
does not grow with the files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from hatinspect.analysis.capacity import inputs_per_unit
from hatinspect.analysis.packed import owned_spans, same_masks
from hatinspect.analysis.select import NO_WEIGHTS, READ_BY_LOGS
from hatinspect.model.bits import BIT_ORDER, popcount
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, HatinspectError
from hatinspect.model.names import (
    FROZEN,
    MASKS_ONLY_KEY,
    READ_ALGORITHMS,
    SOFT,
    TITLES,
    UNLEARNED_KEY,
    UPDATE_NORMS_KEY,
)
from hatinspect.model.progress import track
from hatinspect.model.records import csv_rows, fields_of, record, values_of
from hatinspect.model.result import Result
from hatinspect.native.blocks import (
    Entry,
    TensorFile,
    as_bits,
    as_float64,
    dtype_name,
    row_blocks,
    stored_name,
)
from hatinspect.native.format import RUN_ID_KEY, named_algorithm, parse_task_id, protection_of
from hatinspect.native.reader import existing_file, read_native_tensors, sniff

# (path, keys) -> those tensors as numpy arrays
TensorReader = Callable[[str, list[str]], dict[str, np.ndarray]]

# How a report decides; each is the JSON's "rule".
BIT_IDENTICAL = "bit-identical"  # no protected parameter may change at all
TOLERANCE = "tolerance"  # no protected parameter may change by more than the tolerance
DRIFT = "drift"  # AdaHAT: changes are reported, not judged
NOTHING_PROTECTED = "nothing protected"  # no masks: fine-tuning, or no task stored yet
NO_MASKS = "no masks: nothing is protected"


class AuditRefused(HatinspectError):
    """The two files cannot be compared: one of the checks before the audit failed."""


@dataclass(frozen=True)
class LayerAudit:
    name: str
    protected: int  # parameters BEFORE's cumulative mask protects
    changed: int  # of those, not bit-identical in AFTER
    max_abs_change: float  # over the changed ones; 0 when none changed
    mean_abs_change: float  # over the changed ones; 0 when none changed


@dataclass(frozen=True)
class AuditReport(Result):
    before: str
    after: str
    tasks: tuple[int, ...]  # BEFORE's tasks, whose units are protected
    layers: tuple[LayerAudit, ...]
    algorithm: str = "unknown"  # from the metadata: one of READ_ALGORITHMS, or unknown
    rule: str = BIT_IDENTICAL
    tolerance: float | None = None  # the largest change allowed under the tolerance rule
    notes: tuple[str, ...] = ()  # the files' caveats, and what could not be checked (run ids)
    soft: bool = False  # the algorithm moves protected parameters by design (AdaHAT's family)

    @property
    def protected(self) -> int:
        return sum(layer.protected for layer in self.layers)

    @property
    def changed(self) -> int:
        return sum(layer.changed for layer in self.layers)

    @property
    def max_abs_change(self) -> float:
        return max((layer.max_abs_change for layer in self.layers), default=0.0, key=_nan_high)

    @property
    def ok(self) -> bool:
        if self.rule == BIT_IDENTICAL:
            return self.changed == 0
        if self.rule == TOLERANCE:
            change = self.max_abs_change
            return not math.isnan(change) and change <= self.tolerance
        return True


def verdict(report: AuditReport) -> str:
    """The audit's outcome in one sentence, worded alike by every view (the audit command,
    the report): what changed, measured against the rule of the files' algorithm."""
    if report.rule == NOTHING_PROTECTED:
        return f"{NO_MASKS} ({_why_unprotected(report)})."
    if not report.ok:
        return f"FAILED: {failure(report)}."
    if report.rule == DRIFT:
        return (
            f"{_title(report)} drift: {_moved(report)} (max |change| "
            f"{report.max_abs_change:.3g}); {_title(report)} updates them softly by design, so "
            "this passes (--strict to require bit-identity)."
        )
    if report.rule == TOLERANCE:
        return (
            f"OK: {_moved(report)}, by up to {report.max_abs_change:.3g}, "
            f"within the tolerance {report.tolerance:g}."
        )
    return f"OK: all {report.protected:,} protected parameters are bit-identical."


def verdict_tone(report: AuditReport) -> str:
    """How the verdict reads at a glance: "pass", "drift" (AdaHAT's drift, which passes),
    "fail", or "none" (nothing was protected)."""
    if report.rule == NOTHING_PROTECTED:
        return "none"
    if not report.ok:
        return "fail"
    return "drift" if report.rule == DRIFT and report.changed else "pass"


def failure(report: AuditReport) -> str:
    """What a failed audit measured, against what its rule allows."""
    if report.rule == TOLERANCE:
        return (
            f"{_moved(report)}, by up to {report.max_abs_change:.3g}, "
            f"over the tolerance {report.tolerance:g}"
        )
    return f"{_moved(report)}, where {_bit_identity_by(report)} requires them bit-identical"


def _moved(report: AuditReport) -> str:
    return f"{report.changed:,} of {report.protected:,} protected parameters changed"


def _bit_identity_by(report: AuditReport) -> str:
    """Who asks for bit-identity: HAT, --strict on AdaHAT, or HAT's rule by default."""
    if report.soft:
        return "--strict"
    if report.algorithm in TITLES:
        return _title(report)
    return "HAT's rule (no known algorithm named)"


def _title(report: AuditReport) -> str:
    return TITLES.get(report.algorithm, report.algorithm)


def _why_unprotected(report: AuditReport) -> str:
    if report.algorithm == "finetuning":
        return "a fine-tuning run"
    return "the earlier file stores no task"


def audit(
    before: Checkpoint,
    after: Checkpoint,
    *,
    strict: bool = False,
    tolerance: float | None = None,
    read_tensors: TensorReader = read_native_tensors,
) -> AuditReport:
    """Compare the parameters BEFORE protects with AFTER, after checking they are
    comparable (`AuditRefused` says which check failed).

    A native file is read in blocks; `read_tensors(path, keys)` loads what cannot be:
    a PyTorch checkpoint's tensors (``hatinspect.checkpoints.read_tensors`` knows both
    kinds) and the tasks' own batch norms.
    """
    if before.covers != after.covers:
        raise AuditRefused(f"the masks of {before.path} and {after.path} cover different things")
    for checkpoint in (before, after):
        if checkpoint.metadata.get(MASKS_ONLY_KEY) == "true":
            raise AuditRefused(f"{checkpoint.path} holds masks only, no weights: nothing to audit")
        if not checkpoint.weights_known:
            raise AuditRefused(
                f"{checkpoint.path}: {NO_WEIGHTS}: nothing to audit ({READ_BY_LOGS})"
            )
    pairs = [(layer, _counterpart(layer, after)) for layer in before.layers]
    inputs = (note for checkpoint in (before, after) for note in checkpoint.notes)
    frozen = protection_of(before.metadata) == FROZEN  # Piggyback: every backbone weight
    notes = tuple(dict.fromkeys((*inputs, *_check_comparable(before, after, frozen))))
    algorithm = _algorithm(before, after)
    rule = _rule(algorithm, strict, tolerance, before)
    report = AuditReport(
        before.path,
        after.path,
        _protecting(before, after),
        (),
        algorithm,
        rule,
        tolerance,
        (*notes, *_unlearning_notes(before, after)),
        protection_of(before.metadata) == SOFT,
    )
    if rule == NOTHING_PROTECTED:
        return report
    # what AFTER still keeps learned: a task unlearned in between protects nothing
    kept = replace(before, metadata={**before.metadata, UNLEARNED_KEY: json.dumps(
        sorted({*before.unlearned, *after.unlearned}))})  # fmt: skip
    old_keys, new_keys = _keys(layer for layer, _ in pairs), _keys(twin for _, twin in pairs)
    old_file = _open(before.path, old_keys, read_tensors)
    with old_file as old, _open(after.path, new_keys, read_tensors) as new:
        read = track(pairs, "audit", unit="bytes", size=lambda pair: _bytes(*pair, old, new))
        if before.covers == Covers.PARAMETERS:  # each weight an earlier task's mask keeps
            tasks = kept.retained_task_ids
            if frozen:  # every backbone weight, as if one task owned them all
                kept, tasks = replace(before, masks={0: _everything(before)}, task_ids=(0,)), (0,)
            layers = tuple(_audit_owned(layer, twin, kept, tasks, old, new) for layer, twin in read)
        else:
            cumulative = kept.cumulative_mask()
            layers = tuple(
                _audit_layer(layer, twin, _protection(before, layer, cumulative), old, new)
                for layer, twin in read
            )
    # the stored tasks' batch norms: not those of one still training
    tasks = [task for task in before.task_ids if task in before.task_norms]
    return replace(report, layers=layers + _audit_task_norms(before, after, tasks, read_tensors))


# --- before comparing ------------------------------------------------------------------


def _bytes(layer: LayerInfo, twin: LayerInfo, old, new) -> int:
    """The bytes of a layer's weight and bias in both files: what auditing it reads."""
    return sum(
        tensors.entry(key).nbytes
        for tensors, info in ((old, layer), (new, twin))
        for key in (info.weight_key, info.bias_key)
        if key is not None
    )


def _audit_task_norms(
    before: Checkpoint, after: Checkpoint, tasks: list[int], read_tensors: TensorReader
) -> tuple[LayerAudit, ...]:
    """Each task's own batch norms (parameters and running statistics) never change again;
    every task's are read in one pass over each file."""
    for task in tasks:
        missing = sorted(set(before.task_norms[task]) - set(after.task_norms.get(task, ())))
        if missing:
            raise CheckpointError(
                f"{after.path} has no {missing[0]!r}: task {task}'s batch norm, in the earlier file"
            )
    keys = [key for task in tasks for key in before.task_norms[task]]
    if not keys:
        return ()
    old, new = read_tensors(before.path, keys), read_tensors(after.path, keys)
    return tuple(_task_norm_audit(task, before.task_norms[task], old, new) for task in tasks)


def _task_norm_audit(task: int, keys, old: dict, new: dict) -> LayerAudit:
    changes = np.concatenate([_bit_changes(key, old[key], new[key]) for key in keys])
    return LayerAudit(
        name=f"batch norm of task {task}",
        protected=sum(int(old[key].size) for key in keys),
        changed=int(changes.size),
        max_abs_change=float(changes.max()) if changes.size else 0.0,
        mean_abs_change=float(changes.mean()) if changes.size else 0.0,
    )


def _bit_changes(key: str, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """|new - old| (float64) of the entries whose stored bytes differ."""
    if old.shape != new.shape or old.dtype != new.dtype:
        raise CheckpointError(f"{key}: {old.dtype}{list(old.shape)} in one checkpoint and "
                              f"{new.dtype}{list(new.shape)} in the other")  # fmt: skip
    a, b = (np.ascontiguousarray(np.atleast_1d(values)) for values in (old, new))
    differs = as_bits(a) != as_bits(b)
    return np.abs(b[differs].astype(np.float64) - a[differs].astype(np.float64)).ravel()


def _counterpart(layer: LayerInfo, after: Checkpoint) -> LayerInfo:
    try:
        twin = after.layer(layer.name)
    except KeyError:
        raise CheckpointError(
            f"{after.path} has no layer {layer.name}, which the "
            "earlier checkpoint has: not the same network"
        ) from None
    if (twin.weight_shape, twin.has_bias, twin.bias_masked) != (
        layer.weight_shape,
        layer.has_bias,
        layer.bias_masked,
    ):
        raise CheckpointError(
            f"layer {layer.name} differs in shape between the checkpoints: "
            f"{layer.weight_shape} and {twin.weight_shape}"
        )
    return twin


def _everything(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """A frozen backbone protects every weight of every layer, whichever task masks it."""
    return {layer.name: np.ones(layer.weight_shape, np.uint8) for layer in checkpoint.layers}


def _check_comparable(before: Checkpoint, after: Checkpoint, frozen: bool) -> tuple[str, ...]:
    """Refuse two files of different runs, swapped files and files whose masks disagree
    (not for a frozen backbone: each file may hold another task's masks); the notes say
    what could not be checked."""
    runs = [checkpoint.metadata.get(RUN_ID_KEY) for checkpoint in (before, after)]
    if all(runs) and runs[0] != runs[1]:
        raise AuditRefused(
            f"not the same run: {before.path} has run id {runs[0]}, {after.path} has {runs[1]}"
        )
    if frozen:
        return _no_run_ids(before, after, runs)
    stored = set(after.task_ids)
    missing = [task for task in before.task_ids if task not in stored]
    if missing:
        raise AuditRefused(
            f"{after.path} lacks task {', '.join(map(str, missing))} of {before.path}: "
            "BEFORE must be the earlier checkpoint (are the two swapped?)"
        )
    for task in before.task_ids:
        for layer in before.layers:
            if not same_masks(before, after, task, layer):
                raise AuditRefused(
                    f"task {task}'s mask of layer {layer.name} differs between "
                    f"{before.path} and {after.path}: not the same run"
                )
    return _no_run_ids(before, after, runs)


def _no_run_ids(before: Checkpoint, after: Checkpoint, runs) -> tuple[str, ...]:
    return tuple(
        f"{checkpoint.path} carries no run id: that both files come from one run is not checked"
        for checkpoint, run in zip((before, after), runs, strict=True)
        if not run
    )


def _protecting(before: Checkpoint, after: Checkpoint) -> tuple[int, ...]:
    """BEFORE's tasks that AFTER still keeps learned."""
    undone = {*before.unlearned, *after.unlearned}
    return tuple(task for task in before.task_ids if task not in undone)


def _unlearning_notes(before: Checkpoint, after: Checkpoint) -> list[str]:
    """What became of the tasks unlearned between the files: their stored updates should
    be gone from AFTER, and their units are no longer protected."""
    notes = []
    updates = _update_tasks(after)
    for task in sorted(set(after.unlearned) - set(before.unlearned)):
        if updates is None:
            state = "AFTER records no parameter updates to check"
        elif task in updates:
            state = "AFTER still stores its parameter update: it was not removed"
        else:
            state = "its stored parameter update is removed from AFTER"
        notes.append(f"task {task} was unlearned between the files ({state}); "
                     "its units are not protected")  # fmt: skip
    return notes


def _update_tasks(checkpoint: Checkpoint) -> set[int] | None:
    try:
        norms = json.loads(checkpoint.metadata[UPDATE_NORMS_KEY])
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(norms, dict):
        return None
    tasks = (parse_task_id(task) for task in norms if isinstance(task, str))
    return {task for task in tasks if task is not None}


def _algorithm(before: Checkpoint, after: Checkpoint) -> str:
    named = {named_algorithm(checkpoint.metadata) for checkpoint in (before, after)} - {""}
    if len(named) > 1:
        raise AuditRefused(f"the checkpoints name different algorithms: {', '.join(sorted(named))}")
    algorithm = named.pop() if named else "unknown"
    return algorithm if algorithm in READ_ALGORITHMS else "unknown"


def _rule(algorithm: str, strict: bool, tolerance: float | None, before: Checkpoint) -> str:
    if algorithm == "finetuning" or not before.retained_task_ids:
        return NOTHING_PROTECTED
    if tolerance is not None:
        return TOLERANCE
    return DRIFT if protection_of(before.metadata) == SOFT and not strict else BIT_IDENTICAL


def _keys(layers) -> list[str]:
    return [key for layer in layers for key in (layer.weight_key, layer.bias_key) if key]


def _open(path: str, keys: list[str], read_tensors: TensorReader):
    if sniff(existing_file(path)) == "torch":  # a pickle cannot be read in blocks
        return InMemory(read_tensors(path, keys))
    return TensorFile(path)


class InMemory:
    """Tensors held in memory behind `TensorFile`'s reading interface (`entry`, `read`),
    dtypes named as safetensors names them, so that either side compares with the other."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self._tensors = {key: np.ascontiguousarray(value) for key, value in tensors.items()}

    def __enter__(self):
        return self

    def __exit__(self, *_exc) -> None:
        self._tensors = {}

    def entry(self, key: str) -> Entry:
        array = self._tensors[key]
        return Entry(stored_name(array.dtype), array.shape, 0, array.nbytes)

    def read(self, key: str, first: int, count: int) -> np.ndarray:
        return self._tensors[key].reshape(-1)[first : first + count]


# --- comparing -------------------------------------------------------------------------


def _protection(checkpoint: Checkpoint, layer: LayerInfo, cumulative) -> tuple[np.ndarray, ...]:
    """(rows, columns) bool: the protected output units, and inputs (all for a first layer)."""
    rows = cumulative[layer.name].astype(bool)
    if layer.preceding is None:
        return rows, np.ones(layer.fan_in, dtype=bool)
    source = checkpoint.layer(layer.preceding)
    return rows, np.repeat(cumulative[source.name].astype(bool), inputs_per_unit(layer, source))


class _Tally:
    """Running count, sum and maximum of the absolute changes found so far."""

    def __init__(self) -> None:
        self.count, self.total, self.max = 0, 0.0, 0.0

    def add(self, changes: np.ndarray) -> None:
        if changes.size:
            self.count += int(changes.size)
            self.total += float(changes.sum())
            self.max = float(np.maximum(self.max, changes.max()))  # NaN stays NaN


def _audit_layer(layer, twin, protection, old, new) -> LayerAudit:
    rows, columns = protection
    tally = _Tally()
    _compare(layer.name, old, new, layer.weight_key, twin.weight_key, rows, columns, tally)
    used_rows = int(rows.sum())
    protected = used_rows * int(columns.sum()) * layer.kernel_size
    if layer.has_bias:
        _compare(layer.name, old, new, layer.bias_key, twin.bias_key, rows, None, tally)
        protected += used_rows
    return LayerAudit(
        name=layer.name,
        protected=protected,
        changed=tally.count,
        max_abs_change=tally.max,
        mean_abs_change=tally.total / tally.count if tally.count else 0.0,
    )


def _audit_owned(layer, twin, checkpoint: Checkpoint, tasks, old, new) -> LayerAudit:
    """Masks of weights: every weight (and, where the masks cover it, bias) one of
    `checkpoint`'s `tasks` keeps, compared a block at a time, the union of their masks taken
    on packed bits; blocks owning none are not read. Biases no mask covers are not
    protected."""
    entry = _same_entry(layer.name, old, new, layer.weight_key, twin.weight_key)
    dtypes = {layer.weight_key: entry.dtype}
    if layer.bias_masked:
        dtypes[layer.bias_key] = _same_entry(
            layer.name, old, new, layer.bias_key, twin.bias_key
        ).dtype
    tally, protected = _Tally(), 0
    for first, count, union in owned_spans(checkpoint, layer, tasks, entry.itemsize):
        owned = popcount(union)
        if not owned:
            continue
        protected += owned
        keeps = np.unpackbits(union, count=count, bitorder=BIT_ORDER).view(bool)
        if not layer.bias_masked:
            parts = [(layer.weight_key, twin.weight_key, first, keeps)]
        else:
            parts = _weight_and_bias(layer, twin, first, keeps)
        for old_key, new_key, start, kept in parts:
            a, b = old.read(old_key, start, kept.size), new.read(new_key, start, kept.size)
            where = np.flatnonzero((as_bits(a) != as_bits(b)) & kept)
            if where.size:
                dtype = dtypes[old_key]
                tally.add(np.abs(as_float64(b[where], dtype) - as_float64(a[where], dtype)))
    return LayerAudit(
        name=layer.name,
        protected=protected,
        changed=tally.count,
        max_abs_change=tally.max,
        mean_abs_change=tally.total / tally.count if tally.count else 0.0,
    )


def _weight_and_bias(layer: LayerInfo, twin: LayerInfo, first: int, keeps: np.ndarray):
    """A span of a mask whose rows hold each unit's weights, then its bias, as two reads:
    (old key, new key, first element, which elements are kept) of the weight and the bias."""
    per_row = layer.weights_per_unit + 1
    entries = first + np.arange(keeps.size)
    rows, columns = np.divmod(entries, per_row)
    is_bias = columns == layer.weights_per_unit
    out = []
    for old_key, new_key, chosen, index in (
        (layer.weight_key, twin.weight_key, ~is_bias, rows * layer.weights_per_unit + columns),
        (layer.bias_key, twin.bias_key, is_bias, rows),
    ):
        if not chosen.any():
            continue
        positions = index[chosen]  # increasing and without gaps within a span
        kept = np.zeros(positions[-1] - positions[0] + 1, dtype=bool)
        kept[positions - positions[0]] = keeps[chosen]
        out.append((old_key, new_key, int(positions[0]), kept))
    return out


def _same_entry(name, old, new, old_key, new_key):
    """The tensor's entry in the earlier file, checked to have its dtype and shape in both."""
    entry, other = old.entry(old_key), new.entry(new_key)
    if (entry.dtype, entry.shape) != (other.dtype, other.shape):
        raise CheckpointError(
            f"layer {name}: a tensor is {dtype_name(entry.dtype)}{list(entry.shape)} in one "
            f"checkpoint and {dtype_name(other.dtype)}{list(other.shape)} in the other"
        )
    return entry


def _compare(name, old, new, old_key, new_key, rows, columns, tally: _Tally) -> None:
    """Tally |new - old| of the protected entries of one tensor whose bits differ, a block
    of rows at a time; blocks with no protected entry are not read."""
    entry = _same_entry(name, old, new, old_key, new_key)
    dtype, shape = entry.dtype, entry.shape
    if columns is None:
        columns = np.ones(1, dtype=bool)
    width, kernel = columns.size, math.prod(shape[2:])
    for r0, r1, c0, c1 in row_blocks(shape, entry.itemsize):
        protected_rows, protected_columns = rows[r0:r1], columns[c0:c1]
        if not (protected_rows.any() and protected_columns.any()):
            continue
        first, count = (r0 * width + c0) * kernel, (r1 - r0) * (c1 - c0) * kernel
        a, b = old.read(old_key, first, count), new.read(new_key, first, count)
        differs = as_bits(a) != as_bits(b)
        if not differs.any():  # the usual case under HAT: one pass, nothing more to do
            continue
        differs = differs.reshape(r1 - r0, c1 - c0, kernel)
        differs &= protected_rows[:, None, None] & protected_columns[None, :, None]
        where = np.flatnonzero(differs)
        if where.size:
            tally.add(np.abs(as_float64(b[where], dtype) - as_float64(a[where], dtype)))


def _nan_high(value: float) -> float:
    return math.inf if math.isnan(value) else value


# machine output (JSON record, CSV rows)

AUDIT_KEYS = ["name", "protected", "changed", "max_abs_change", "mean_abs_change"]


@record.register
def _(report: AuditReport) -> dict:
    return {
        "before": report.before,
        "after": report.after,
        "tasks": list(report.tasks),
        "notes": list(report.notes),
        "algorithm": report.algorithm,
        "soft_protection": report.soft,
        "rule": report.rule,
        "tolerance": report.tolerance,
        "ok": report.ok,
        "verdict": verdict(report),  # the audit command's and the report's sentence
        "protected": report.protected,
        "changed": report.changed,
        "layers": [fields_of(layer, AUDIT_KEYS) for layer in report.layers],
    }


@csv_rows.register
def _(report: AuditReport) -> tuple[list[str], list[list]]:
    return AUDIT_KEYS, [values_of(layer, AUDIT_KEYS) for layer in report.layers]
