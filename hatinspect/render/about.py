"""What a file is, as rows of (what, value): shared by ``info`` and the report."""

from __future__ import annotations

import json

from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.names import (
    HPARAMS_KEY,
    IMPORTANCES_KEY,
    PROTECTION_KEY,
    TITLES,
    UNLEARNED_KEY,
    UPDATE_NORMS_KEY,
)
from hatinspect.native.format import ALGORITHM_KEY, hyperparameters, named_algorithm, protection_of

# metadata shown in rows of their own (or, for the update norms, in a table of their own)
SHOWN_APART = frozenset(
    {
        ALGORITHM_KEY,
        HPARAMS_KEY,
        IMPORTANCES_KEY,
        PROTECTION_KEY,
        UNLEARNED_KEY,
        UPDATE_NORMS_KEY,
        "accuracy",
    }
)
PROTECTION_WORDS = {
    "hard": "bit-identical protection",
    "soft": "soft protection (adjustment rate)",
    "none": "no protection",
    "frozen": "the backbone frozen (every weight bit-identical)",
}


def task_list(checkpoint: Checkpoint) -> str:
    unlearned = set(checkpoint.unlearned)
    tasks = [f"{t} (unlearned)" if t in unlearned else str(t) for t in checkpoint.task_ids]
    return ", ".join(tasks) or "(none)"


def algorithm_rows(metadata) -> list[tuple[str, str]]:
    """The algorithm, how it protects earlier tasks, and its hyperparameters."""
    name = named_algorithm(metadata)
    if not name:
        return []
    protection = PROTECTION_WORDS.get(protection_of(metadata), "")
    rows = [("algorithm", ", ".join(filter(None, [TITLES.get(name, name), protection])))]
    hparams = hyperparameters(metadata)
    if hparams:
        lines = (f"{key} = {json.dumps(value)}" for key, value in sorted(hparams.items()))
        rows.append(("hyperparameters", "\n".join(lines)))
    return rows


def other_metadata(metadata) -> list[tuple[str, str]]:
    """The rest of the user metadata, sorted by key."""
    return sorted((k, v) for k, v in metadata.items() if k not in SHOWN_APART)


def update_norms(checkpoint: Checkpoint) -> dict[str, dict[str, float]]:
    """AmnesiacHAT's stored parameter updates: task -> layer -> L2 norm; {} for others."""
    try:
        norms = json.loads(checkpoint.metadata.get(UPDATE_NORMS_KEY, "{}"))
    except (TypeError, ValueError):
        return {}
    return norms if isinstance(norms, dict) else {}
