"""Machine output: each result as a JSON document (`"schema": 1`) or CSV rows, raw numbers only.

Each result type registers its own `record` and `csv_rows` beside its definition, so this
module knows none of them. The JSON keys are a public contract that scripts rely on: add
keys, never rename them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from functools import singledispatch

SCHEMA = 1


def to_json(result, checkpoints: Sequence = ()) -> str:
    """The JSON document of ``result``, with the ``notes`` of the checkpoints it came from
    and, per layer, whether its preceding layer is inferred."""
    document = {"schema": SCHEMA, **record(result)}
    if "notes" not in document:
        document["notes"] = list(dict.fromkeys(n for c in checkpoints for n in c.notes))
    if getattr(result, "MARKS_INFERRED", False):  # a result whose layers use the data flow
        _mark_inferred(document, {layer.name: layer for c in checkpoints for layer in c.layers})
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _mark_inferred(document: dict, layers: dict) -> None:
    """``preceding_inferred`` beside each layer a document names (its layers, or its layer)."""
    for entry in document.get("layers", []):
        if isinstance(entry, dict) and entry.get("name") in layers:
            entry.setdefault("preceding_inferred", layers[entry["name"]].preceding_inferred)
    if isinstance(document.get("layer"), str) and document["layer"] in layers:
        document["preceding_inferred"] = layers[document["layer"]].preceding_inferred


def to_csv(result, **options) -> str:
    return csv_text(result, **options)


@singledispatch
def csv_text(result, **options) -> str:
    """A result's CSV: its `csv_rows`, unless its type writes its own text."""
    header, rows = csv_rows(result, **options)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def csv_line(fields: list) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


@singledispatch
def record(result) -> dict:
    """The JSON document of a result, without the schema key."""
    raise TypeError(f"no JSON record for {type(result).__name__}")


@singledispatch
def csv_rows(result, **options) -> tuple[list[str], list[list]]:
    """(header, rows) of a result as one flat table."""
    raise TypeError(f"no CSV rows for {type(result).__name__}")


def fields_of(item, keys: list[str]) -> dict:
    return dict(zip(keys, values_of(item, keys), strict=True))


def values_of(item, keys: list[str]) -> list:
    return [finite(getattr(item, key)) for key in keys]


def finite(value):
    """JSON has no NaN or infinity: such a float (say, a change to NaN) becomes null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def document(result, checkpoints) -> dict:
    """The command's JSON document of `result`, without the schema key."""
    document = json.loads(to_json(result, checkpoints))
    del document["schema"]
    return document
