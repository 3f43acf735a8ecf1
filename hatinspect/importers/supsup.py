"""SupSup (Wortsman et al., "Supermasks in Superposition", ``RAIVNLab/supsup``): the dict
its ``main.py`` saves (``epoch``, ``arch``, ``state_dict``, ``best_acc1``, ``curr_acc1``
and ``args``, the pickled ``argparse.Namespace``), read from the unpickler's placeholders
(zip or legacy), or a bare ``state_dict`` of the same keys.

Every masked module ``<m>`` keeps a random, frozen ``<m>.weight`` and one float
``<m>.scores.<t>`` of the weight's shape per task t = 0, 1, ... (``models/modules.py``);
``nn.DataParallel`` (their ``--multigpu``) prefixes every key with ``module.``. The state
dict does not say how scores become a mask; the module class, ``args.conv_type``, does:

- ``topk`` (``MultitaskMaskConv``): ``GetSubnet(scores.abs(), sparsity)``
  keeps the ``numel - int((1 - sparsity) * numel)`` largest ``|scores|``; of equal
  scores at the boundary the later entries (in row-major order) are kept, as a stable
  sort keeps them and their ``torch.sort`` does on the CPU for small tensors (on larger
  ones and on a GPU it is not stable: a note names the masks where such a tie decides).
  ``sparsity`` is ``args.sparsity``, one value for every module, or with
  ``args.er_sparsity`` ``min(0.5, sparsity * (out + in) / weight.numel())`` (``main.py``'s
  ER budget).
- ``sign`` (``FastMultitaskMaskConv``, ``StackedFastMultitaskMaskConv``, the notebook's
  ``MultitaskMaskLinear``): ``GetSubnetFast(scores)`` keeps ``scores >= 0``.

``mask_rule`` chooses one; without it the file's ``args.conv_type`` does, else ``topk``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import Tensor

from hatinspect.importers.common import Imported, frozen, imported_checkpoint, numpy_of
from hatinspect.importers.flow import infer_flow
from hatinspect.importers.pickled_modules import with_metadata
from hatinspect.importers.safety.unpickler import Placeholder
from hatinspect.model.checkpoint import Covers, LayerInfo
from hatinspect.model.errors import CheckpointError, shown
from hatinspect.model.names import HPARAMS_KEY, MASK_RULES, SIGN, TOPK
from hatinspect.native import format as fmt

NAME = "supsup"
SCORES = re.compile(r"^(?P<module>.+)\.scores\.(?P<task>[0-9]+)$")
PARALLEL = "module."  # nn.DataParallel's prefix
RULE_OF_CLASS = {
    "MultitaskMaskConv": TOPK,
    "FastMultitaskMaskConv": SIGN,
    "StackedFastMultitaskMaskConv": SIGN,
    "MultitaskMaskLinear": SIGN,  # mnist.ipynb's GetSubnet is scores >= 0
}
HPARAMS = ("model", "conv_type", "sparsity", "er_sparsity", "num_tasks", "train_weight_tasks")


def holds(payload) -> bool:
    """SupSup's dict (a ``state_dict`` beside ``args``) or a bare state dict, whose tensors
    include ``<module>.scores.<t>``."""
    state = _state_or_none(payload)
    return state is not None and any(
        fmt.text(key) and SCORES.match(key) and isinstance(value, Tensor)
        for key, value in state.items()
    )


def detects(state, extra) -> bool:  # tried as a whole object (`holds`) before any state_dict
    return False


def read(path: Path, state, extra, task_id=None) -> Imported:
    raise CheckpointError(f"{path}: no SupSup scores (<module>.scores.<task>) in this file")


def tensors(path: Path, payload) -> dict[str, Tensor]:
    """The state dict, without DataParallel's ``module.`` prefix."""
    state = _state_or_none(payload)
    for key, value in state.items():
        if not (fmt.text(key) and isinstance(value, Tensor)):
            raise CheckpointError(f"{path}: state_dict entry {shown(key)} is not a named tensor")
    if state and all(key.startswith(PARALLEL) for key in state):
        return {key.removeprefix(PARALLEL): value for key, value in state.items()}
    return dict(state)


def import_object(
    path: Path, payload, source: str | None, task_id: int | None, mask_rule: str | None = None
) -> Imported:
    if source not in (None, NAME):
        raise CheckpointError(f"{path}: a SupSup file; source={shown(source)} does not apply")
    if task_id is not None:
        raise CheckpointError(f"{path}: a SupSup file numbers its tasks; no task id applies")
    if mask_rule is not None and mask_rule not in MASK_RULES:
        raise CheckpointError(
            f"{path}: unknown mask rule {shown(mask_rule)}; expected one of {', '.join(MASK_RULES)}"
        )
    state, args = tensors(path, payload), _args(payload)
    scores, notes = _without_heads(_scores(path, state), args)
    rule, why = _rule(path, args, mask_rule)
    layers = _layers(path, state, scores)
    sparsities = _sparsities(path, args, layers) if rule == TOPK else {}
    tasks = sorted(next(iter(scores.values())))
    masks, tied = _masks(state, layers, tasks, sparsities)
    notes = [_rule_note(rule, why, args, sparsities), *notes, *_tie_notes(tied), *_trained(args)]
    native = {key: fmt.OTHER_PREFIX + key for key in state}
    imported = imported_checkpoint(
        path, NAME, _backbone(payload), layers, masks, notes, state, native,
        covers=Covers.PARAMETERS,
    )  # fmt: skip
    hparams = {k: args[k] for k in HPARAMS if _plain(args.get(k))}
    hparams["mask_rule"] = rule
    return with_metadata(imported, {fmt.ALGORITHM_KEY: NAME, HPARAMS_KEY: json.dumps(hparams)})


def _masks(state, layers, tasks, sparsities) -> tuple[dict, list[str]]:
    """Task -> layer -> mask (top-k where a sparsity is given, else scores >= 0), and the
    masks whose top-k boundary falls among equal scores."""
    masks, tied = {}, []
    for task in tasks:
        masks[task] = {}
        for layer in layers:
            values = numpy_of(state[_score_key(layer, task)])
            if layer.name not in sparsities:
                masks[task][layer.name] = frozen(values >= 0)
                continue
            magnitudes, sparsity = np.abs(values), sparsities[layer.name]
            masks[task][layer.name] = frozen(top_k(magnitudes, sparsity))
            if boundary_tied(magnitudes, sparsity):
                tied.append(f"{layer.name}, task {task}")
    return masks, tied


def _without_heads(scores: dict, args: dict) -> tuple[dict, list[str]]:
    """With ``args.individual_heads`` the last layer built is ``IndividualHeads``
    (models/builder.py), whose scores are its tasks' own weights: left out, and said."""
    if args.get("individual_heads") is not True or len(scores) < 2:
        return scores, []
    head = list(scores)[-1]
    note = (
        f"args.individual_heads: the scores of {head}, the last layer, are its tasks' own"
        " weights (IndividualHeads), not a mask; the layer is not read"
    )
    return {module: tasks for module, tasks in scores.items() if module != head}, [note]


def _trained(args: dict) -> list[str]:
    trained = args.get("train_weight_tasks")
    if type(trained) is not int or trained == 0:
        return []
    when = "with every task" if trained < 0 else f"during the first {trained} task(s)"
    return [
        f"args.train_weight_tasks is {trained}: the weights were trained {when}, not frozen"
        " from the start as SupSup's are"
    ]


def _plain(value) -> bool:
    """A value JSON keeps as is: text, a bool, an int or a finite float."""
    return type(value) in (str, bool, int) or (type(value) is float and math.isfinite(value))


# --- the file's parts ------------------------------------------------------------------


def _state_or_none(payload):
    if not isinstance(payload, Mapping):
        return None
    state = payload.get("state_dict", payload)
    return state if isinstance(state, Mapping) else None


def _args(payload) -> dict:
    """``args`` as a dict: the Namespace's attributes (a placeholder's state) or a dict."""
    args = payload.get("args") if "state_dict" in payload else None
    if isinstance(args, Placeholder):
        args = args.__dict__.get("state")
    return dict(args) if isinstance(args, Mapping) else {}


def _backbone(payload) -> str:
    arch = payload.get("arch") if "state_dict" in payload else None
    return arch if fmt.text(arch) and arch else "unknown"


def _scores(path: Path, state) -> dict[str, set[int]]:
    """Module -> the task ids of its scores; every module the same tasks 0..n-1."""
    found: dict[str, set[int]] = {}
    for key in state:
        if match := SCORES.match(key):
            digits = match["task"]
            if len(digits) > len(str(fmt.MAX_TASK_ID)) or int(digits) > fmt.MAX_TASK_ID:
                raise CheckpointError(
                    f"{path}: {shown(key)} names a task above {fmt.MAX_TASK_ID}, the most a"
                    " file may hold"
                )
            found.setdefault(match["module"], set()).add(int(digits))
    tasks = next(iter(found.values()))
    for module, ids in found.items():
        if ids != tasks:
            raise CheckpointError(
                f"{path}: {module} has the scores of tasks {_listed(ids)}, another module"
                f" those of tasks {_listed(tasks)}"
            )
    if tasks != set(range(len(tasks))):
        raise CheckpointError(
            f"{path}: the scores are of tasks {_listed(tasks)}, not 0..{len(tasks) - 1}"
            " (a task's scores are missing)"
        )
    return found


def _listed(ids) -> str:
    return ", ".join(map(str, sorted(ids)))


def _score_key(layer: LayerInfo, task: int) -> str:
    return f"{layer.weight_key.removesuffix('.weight')}.scores.{task}"


def _layers(path: Path, state, scores) -> tuple[LayerInfo, ...]:
    layers = []
    for module, tasks in scores.items():
        weight = state.get(module + ".weight")
        if weight is None or weight.dim() < 2:
            raise CheckpointError(f"{path}: {module} has scores but no weight of a layer's shape")
        for task in sorted(tasks):
            score = state[f"{module}.scores.{task}"]
            if not score.dtype.is_floating_point or tuple(score.shape) != tuple(weight.shape):
                raise CheckpointError(
                    f"{path}: {module}.scores.{task} is not a floating-point tensor of its"
                    f" weight's shape {tuple(weight.shape)}"
                )
            if np.isnan(numpy_of(score)).any():
                raise CheckpointError(f"{path}: {module}.scores.{task} contains NaN")
        bias = module + ".bias" if module + ".bias" in state else None
        layers.append(
            LayerInfo(module.replace(".", "/"), weight.shape[0], tuple(weight.shape),
                      module + ".weight", bias, None)
        )  # fmt: skip
    try:
        return infer_flow(path, layers)
    except CheckpointError:
        return tuple(layers)


# --- the rule --------------------------------------------------------------------------


def _rule(path: Path, args: dict, chosen: str | None) -> tuple[str, str]:
    """The rule and why: chosen, the module class ``args.conv_type`` names, or topk."""
    conv_type = args.get("conv_type")
    if chosen is not None:
        implied = RULE_OF_CLASS.get(conv_type)
        if implied is not None and implied != chosen:
            return chosen, f"chosen; args.conv_type {conv_type} implies {implied}"
        return chosen, "chosen"
    if conv_type is None:
        return TOPK, "no args.conv_type names the module class; topk assumed"
    if not fmt.text(conv_type) or conv_type not in RULE_OF_CLASS:
        raise CheckpointError(
            f"{path}: args.conv_type is {shown(conv_type)}, not a SupSup mask module"
            f" ({', '.join(RULE_OF_CLASS)}); pass a mask rule to choose one"
        )
    return RULE_OF_CLASS[conv_type], f"args.conv_type is {conv_type}"


def _sparsities(path: Path, args: dict, layers) -> dict[str, float]:
    """Layer -> the fraction of weights its top-k mask keeps."""
    sparsity = args.get("sparsity")
    if type(sparsity) not in (int, float) or not 0 < sparsity <= 1:
        raise CheckpointError(
            f"{path}: the top-k rule needs args.sparsity, the fraction of weights kept, in"
            f" (0, 1]; the file has {shown(sparsity)}"
        )
    if args.get("er_sparsity") is not True:
        return {layer.name: float(sparsity) for layer in layers}
    out = {}
    for layer in layers:
        shape = layer.weight_shape
        out[layer.name] = min(0.5, sparsity * (shape[0] + shape[1]) / math.prod(shape))
    return out


def top_k(magnitudes: np.ndarray, sparsity: float) -> np.ndarray:
    """``GetSubnet``: the lowest ``int((1 - sparsity) * numel)`` entries of a stable sort
    are 0, the rest 1."""
    flat = magnitudes.reshape(-1)
    dropped = int((1 - sparsity) * flat.size)
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[:dropped]] = False
    return keep.reshape(magnitudes.shape)


def boundary_tied(magnitudes: np.ndarray, sparsity: float) -> bool:
    """Whether equal values straddle the top-k boundary: the last dropped and the first
    kept entry of the sort are equal, so which of them are kept is the sort's choice."""
    flat = magnitudes.reshape(-1)
    dropped = int((1 - sparsity) * flat.size)
    if not 0 < dropped < flat.size:
        return False
    low, high = np.partition(flat, (dropped - 1, dropped))[[dropped - 1, dropped]]
    return bool(low == high)


def _tie_notes(tied: list[str]) -> list[str]:
    if not tied:
        return []
    shown_ = ", ".join(tied[:3]) + (f" and {len(tied) - 3} more" if len(tied) > 3 else "")
    return [
        f"top-k ties: equal |scores| straddle the boundary in {len(tied)} mask(s) ({shown_});"
        " of the equal ones the later entries are kept, as a stable sort keeps them (their"
        " torch.sort is stable on the CPU for small tensors only, so their code may keep"
        " others, as many)"
    ]


def _rule_note(rule: str, why: str, args: dict, sparsities: dict[str, float]) -> str:
    if rule == SIGN:
        return f"SupSup masks weights (sign rule, {why}): a weight is used where its score is >= 0"
    if args.get("er_sparsity") is True:
        each = ", ".join(f"{name} {value:.4g}" for name, value in list(sparsities.items())[:4])
        more = f" and {len(sparsities) - 4} more" if len(sparsities) > 4 else ""
        kept = (
            f"a per-layer fraction (args.er_sparsity, from args.sparsity {args['sparsity']:g}:"
            f" {each}{more})"
        )
    else:
        kept = f"the fraction args.sparsity = {next(iter(sparsities.values())):g}"
    return (
        f"SupSup masks weights (top-k rule, {why}): a weight is used where its |score| is"
        f" among the largest, {kept} of each layer's weights"
    )
