"""The native checkpoint format: tensor key names, metadata keys and their encoding.

This module is the one place these names live; ``docs/checkpoint-format.md`` describes
them for readers in other languages. Everything here is pure Python: no file access,
no torch. Decoding problems raise ``ValueError`` with a message that the reader
prefixes with the file's path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from hatinspect.model.checkpoint import Covers, LayerInfo
from hatinspect.model.errors import shown
from hatinspect.model.names import HARD, HPARAMS_KEY, PROTECTION_KEY, PROTECTIONS, SOFT, SOURCES

FORMAT_VERSION = 2  # the newest version this reader reads
UNITS_VERSION = 1  # what a file of masks of units is written as: every reader reads it
PARAMETERS_VERSION = 2  # masks of weights, bit-packed: a reader of version 1 refuses it
SUFFIX = ".safetensors"

# Tensor key prefixes. Layer names use "/" and never ".", so a mask key splits cleanly.
BACKBONE_PREFIX = "backbone."  # + the backbone's state_dict key
HEADS_PREFIX = "heads."  # + the heads' state_dict key
OTHER_PREFIX = "other."  # + a converted file's tensors that belong to neither
MASK_PREFIX = "mask."  # + "<task id>.<layer name>": (units,) uint8, 0 or 1
MASK_DTYPES = ("U8", "BOOL")  # safetensors dtype names accepted for a mask; U8 is written
# + "<task id>.<layer name>": (ceil(weights / 8),) U8, the weight-shaped mask's bits packed
# in row-major order, little-endian bit order (model.bits), the padding bits 0
PACKED_PREFIX = "pmask."
# a per-task batch norm's tensor: backbone.<module path>.per_task.<task id>.<field>
TASK_NORM_KEY = re.compile(
    r"^backbone\.(?P<module>.+)\.per_task\.(?P<task>[0-9]+)\.(?P<field>\w+)$"
)

# __metadata__ keys (values are strings; structured values are JSON).
FORMAT_KEY = "format"  # always "pt": the tensors come from PyTorch
FORMAT_VALUE = "pt"
VERSION_KEY = "hatinspect.version"  # FORMAT_VERSION as a decimal string
BACKBONE_KEY = "hatinspect.backbone"  # class name, e.g. "HATMaskResNet18"
CONFIG_KEY = "hatinspect.config"  # JSON object of constructor arguments, or null
LAYERS_KEY = "hatinspect.layers"  # JSON list of layer records in network order
TASK_IDS_KEY = "hatinspect.task_ids"  # JSON list of the stored tasks' ids, ascending
TASK_ID_KEY = "hatinspect.task_id"  # JSON: the backbone's current task id, or null
SOURCE_KEY = "hatinspect.source"  # "hatinspect" or the format a file was converted from
NOTES_KEY = "hatinspect.notes"  # JSON list of caveats about what could be recovered
INFERRED_KEY = "hatinspect.preceding_inferred"  # JSON list of layers whose preceding is inferred
COVERS_KEY = "hatinspect.covers"  # "parameters" (version 2): masks of weights; absent: units
COVERS = tuple(map(str, Covers))
# the version key of a trajectory file (native.trajectory_file), never of a checkpoint
TRAJECTORY_KEY = "hatinspect.trajectory"
USER_PREFIX = "user."  # + a user metadata key; value a string or JSON text
# User metadata keys hatinspect itself writes and reads (without the prefix).
RUN_ID_KEY = "run_id"  # the same in every checkpoint of one training run
ALGORITHM_KEY = "algorithm"  # one of ALGORITHMS


LAYER_FIELDS = ("name", "units", "weight_shape", "weight_key", "bias_key", "preceding")
BIAS_MASKED = "bias_masked"  # optional: true where a mask of weights covers the bias too
REQUIRED_KEYS = (VERSION_KEY, BACKBONE_KEY, LAYERS_KEY, TASK_IDS_KEY)
MAX_TASK_ID = 2**31 - 1  # task ids are non-negative and fit an int32
# The longest JSON header safetensors writes or reads (its crate's MAX_HEADER_SIZE): the
# one bound on a native file's counts (tensors, layers, tasks), since each takes bytes of
# it. Reading it holds a few times its size in memory (docs/checkpoint-format.md).
MAX_HEADER_BYTES = 100_000_000
# safetensors dtype names accepted for weights and biases (floating point only)
WEIGHT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


@dataclass(frozen=True)
class Header:
    """Everything ``__metadata__`` says about a checkpoint."""

    backbone: str
    config: dict | None  # None when the file holds no hatinspect backbone to rebuild
    layers: tuple[LayerInfo, ...]
    task_ids: tuple[int, ...]
    source: str = "hatinspect"
    task_id: int | None = None
    notes: tuple[str, ...] = ()
    user: Mapping[str, str] = field(default_factory=dict)
    covers: Covers = Covers.UNITS  # what a mask's entries are


def task_norm_keys(keys: Iterable[str]) -> dict[int, tuple[str, ...]]:
    """Task id -> the tensor keys of that task's own batch norms, sorted."""
    found: dict[int, list[str]] = {}
    for key in keys:
        # a file may hold 100,000 masks: the plain test first, the pattern for the few left
        if ".per_task." in key and (match := TASK_NORM_KEY.match(key)):
            found.setdefault(key_task_id(key, match["task"]), []).append(key)
    return {task: tuple(sorted(names)) for task, names in sorted(found.items())}


def mask_key(task_id: int, layer: str) -> str:
    return f"{MASK_PREFIX}{task_id}.{layer}"


def packed_key(task_id: int, layer: str) -> str:
    """The key of a task's mask of weights, stored as packed bits."""
    return f"{PACKED_PREFIX}{task_id}.{layer}"


def named_algorithm(metadata) -> str:
    """The algorithm a file's user metadata names, lower case; "" when it names none."""
    return str(metadata.get(ALGORITHM_KEY, "")).strip('"').lower()


def protection_of(metadata) -> str:
    """How the file's algorithm treats what earlier tasks use: "hard", "soft", "none", or
    "" when the file names no known algorithm."""
    stated = str(metadata.get(PROTECTION_KEY, "")).strip('"').lower()
    return stated if stated in (HARD, SOFT) else PROTECTIONS.get(named_algorithm(metadata), "")


def hyperparameters(metadata) -> dict:
    """The algorithm's hyperparameters an import recorded; {} when there are none."""
    try:
        value = json.loads(metadata.get(HPARAMS_KEY, "{}"))
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def encode_header(header: Header) -> dict[str, str]:
    """The ``__metadata__`` mapping (string -> string) for ``header``."""
    metadata = {
        FORMAT_KEY: FORMAT_VALUE,
        VERSION_KEY: str(UNITS_VERSION if header.covers == Covers.UNITS else PARAMETERS_VERSION),
        BACKBONE_KEY: header.backbone,
        CONFIG_KEY: json.dumps(header.config),
        LAYERS_KEY: json.dumps([_layer_record(layer) for layer in header.layers]),
        TASK_IDS_KEY: json.dumps(sorted(header.task_ids)),
        TASK_ID_KEY: json.dumps(header.task_id),
        SOURCE_KEY: header.source,
        NOTES_KEY: json.dumps(list(header.notes)),
    }
    inferred = [layer.name for layer in header.layers if layer.preceding_inferred]
    if inferred:
        metadata[INFERRED_KEY] = json.dumps(inferred)
    if header.covers != Covers.UNITS:  # a file of masks of units stays as version 1 wrote it
        metadata[COVERS_KEY] = _covers(header.covers, PARAMETERS_VERSION)
    metadata.update({USER_PREFIX + key: value for key, value in encode_user(header.user).items()})
    for key, value in metadata.items():
        if not (text(key) and (value == "" or text(value))):
            raise ValueError(f"metadata {shown(key)} is not text UTF-8 can encode")
    return metadata


def encode_user(metadata: Mapping | None) -> dict[str, str]:
    """User metadata as strings: a string as is, anything else as JSON text."""
    encoded = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise ValueError(f"metadata keys must be strings, got {shown(key)}")
        try:
            encoded[key] = value if isinstance(value, str) else json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata {key!r} is not JSON-serialisable: {exc}") from None
    return encoded


def decode_header(metadata: Mapping[str, str] | None) -> Header:
    """Parse and check ``__metadata__``; ``ValueError`` says what is missing or malformed."""
    if not metadata:
        raise ValueError("no hatinspect metadata in the header (not a hatinspect checkpoint)")
    if TRAJECTORY_KEY in metadata:
        raise ValueError("a trajectory file (one task's recorded gates), not a checkpoint")
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {', '.join(map(repr, missing))}")
    version = _check_version(metadata[VERSION_KEY])
    layers = _mark_inferred(
        decode_layers(_json(metadata, LAYERS_KEY)), _optional(metadata, INFERRED_KEY, list) or []
    )
    covers = _covers(metadata.get(COVERS_KEY, "units"), version)
    masked = next((layer.name for layer in layers if layer.bias_masked), None)
    if masked is not None and covers == Covers.UNITS:
        raise ValueError(f"layer {shown(masked)} has {BIAS_MASKED} in a file of masks of units")
    return Header(
        backbone=metadata[BACKBONE_KEY],
        config=check_config(_optional(metadata, CONFIG_KEY, dict), layers=len(layers)),
        layers=layers,
        task_ids=_task_ids(_json(metadata, TASK_IDS_KEY)),
        source=_source(metadata.get(SOURCE_KEY, "hatinspect")),
        task_id=_current_task(_optional(metadata, TASK_ID_KEY, int)),
        notes=_notes(_optional(metadata, NOTES_KEY, list) or []),
        user={
            k[len(USER_PREFIX) :]: v
            for k, v in sorted(metadata.items())
            if k.startswith(USER_PREFIX)
        },
        covers=covers,
    )


# Entries a config list may hold where no layer count bounds it (an import, checked before
# its backbone is built): building costs ~13 KB and 0.3 ms an entry (an MLP layer's modules,
# without weights), so 2^14 of them stay within ~210 MiB and ~5 s.
MAX_CONFIG_ITEMS = 2**14


def check_config(config: Mapping | None, layers: int | None = None) -> Mapping | None:
    """``config`` when it holds arguments a backbone could have: sizes in ``0..2^31-1``,
    short strings, lists of these, nothing nested deeper; ``ValueError`` if not.

    Each list entry may build a layer (``hidden_dims``): a list holds at most ``layers``
    entries, the layers the file describes (whose records pay for it), or
    ``MAX_CONFIG_ITEMS`` where that count is not known."""
    most = MAX_CONFIG_ITEMS if layers is None else layers
    for key, value in (config or {}).items():
        items = value if isinstance(value, list | tuple) else [value]
        fits = len(items) <= most and all(
            item is None
            or type(item) in (bool, float)
            or (type(item) is int and 0 <= item <= MAX_TASK_ID)
            or (type(item) is str and len(item) <= 256)
            for item in items
        )
        if not (isinstance(key, str) and fits):
            raise ValueError(f"config entry {shown(key)} holds no usable value")
    return config


def decode_layers(records) -> tuple[LayerInfo, ...]:
    """Layer records (JSON) -> ``LayerInfo``s, checking types, sizes and references."""
    if not isinstance(records, list) or not records:
        raise ValueError(f"{LAYERS_KEY!r} must be a non-empty list of layer records")
    layers = tuple(_layer(record, index) for index, record in enumerate(records))
    check_layers(layers)
    return layers


def check_layers(layers: tuple[LayerInfo, ...]) -> None:
    """What every checkpoint's layers satisfy, native or imported; ``ValueError`` if not.

    Each layer has a non-empty name, a weight of >= 2 positive dimensions whose first is
    ``units``, tensor keys of its own, and a preceding layer earlier in the list whose
    units can feed its inputs.
    """
    if not layers:
        raise ValueError("no weighted layers")
    names, keys = set(), set()
    for layer in layers:
        _check_layer(layer)
        if layer.name in names:
            raise ValueError(f"layer {shown(layer.name)} is listed twice")
        owned = {layer.weight_key, layer.bias_key} - {None}
        if layer.bias_key == layer.weight_key or owned & keys:
            raise ValueError(f"layer {shown(layer.name)}: its tensors are another's")
        names.add(layer.name)
        keys |= owned
    check_data_flow(layers)


def check_data_flow(layers: tuple[LayerInfo, ...]) -> None:
    """Each ``preceding`` is an earlier layer whose units feed the layer's inputs: as many
    as its input channels, or a whole divisor of a linear layer's inputs after a flatten."""
    by_name: dict[str, LayerInfo] = {}
    for layer in layers:
        if layer.preceding is not None:
            source = by_name.get(layer.preceding)
            if source is None:
                raise ValueError(
                    f"layer {shown(layer.name)}: unknown preceding layer"
                    f" {shown(layer.preceding)} (not an earlier layer)"
                )
            flattened = len(layer.weight_shape) == 2 and len(source.weight_shape) > 2
            if layer.fan_in % source.units if flattened else layer.fan_in != source.units:
                raise ValueError(
                    f"layer {shown(layer.name)} has {layer.fan_in} inputs, which"
                    f" {source.units} units of its preceding layer {shown(source.name)}"
                    " cannot feed"
                )
        by_name[layer.name] = layer


def _check_layer(layer: LayerInfo) -> None:
    where = f"layer {shown(layer.name)}"
    if not text(layer.name):
        raise ValueError(f"a layer name must be a non-empty string, got {shown(layer.name)}")
    shape = layer.weight_shape
    if not (isinstance(shape, tuple) and len(shape) >= 2 and all(_positive(d) for d in shape)):
        raise ValueError(f"{where}: weight_shape must be >= 2 positive integers, got {shape}")
    if not _positive(layer.units) or layer.units != shape[0]:
        raise ValueError(f"{where}: units must equal weight_shape[0] ({shape[0]})")
    if not text(layer.weight_key):
        raise ValueError(f"{where}: weight_key must be a non-empty string")
    for key in (layer.bias_key, layer.preceding):
        if key is not None and not text(key):
            raise ValueError(f"{where}: bias_key and preceding must be strings or null")
    if layer.bias_masked and layer.bias_key is None:
        raise ValueError(f"{where}: its masks cover a bias it does not have")


def text(value) -> bool:
    """A non-empty string that UTF-8 can encode (safetensors keys and JSON must be)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_task_ids(values) -> tuple[int, ...]:
    """Task ids as stored: distinct integers in ``0..MAX_TASK_ID``; ``ValueError`` if not."""
    if not all(is_task_id(t) for t in values):
        bad = next(t for t in values if not is_task_id(t))
        raise ValueError(f"task id {shown(bad)} is not an integer in 0..{MAX_TASK_ID}")
    if len(set(values)) != len(values):
        raise ValueError("a task is listed twice")
    return tuple(sorted(values))


def is_task_id(value) -> bool:
    return type(value) is int and 0 <= value <= MAX_TASK_ID


def parse_task_id(digits: str) -> int | None:
    """The task id ``digits`` spell as every layout writes one in a key (``str(t)``: ASCII
    digits, no leading zero, ``0..MAX_TASK_ID``); None for any other text."""
    canonical = digits.isascii() and digits.isdigit() and (digits == "0" or digits[0] != "0")
    if not canonical or len(digits) > len(str(MAX_TASK_ID)):  # int() of 5,000 digits raises
        return None
    return int(digits) if is_task_id(int(digits)) else None


def key_task_id(key: str, digits: str) -> int:
    """The task id in ``key`` (its ``digits``); ``ValueError`` naming the key if none."""
    task = parse_task_id(digits)
    if task is None:
        raise ValueError(
            f"tensor {shown(key)} carries task number {shown(digits)}, not a task id in"
            f" 0..{MAX_TASK_ID}"
        )
    return task


def _mark_inferred(layers: tuple[LayerInfo, ...], names: list) -> tuple[LayerInfo, ...]:
    known = {layer.name for layer in layers if layer.preceding is not None}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"{INFERRED_KEY!r} names {shown(unknown[0])}, no layer with a preceding layer"
        )
    return tuple(replace(layer, preceding_inferred=layer.name in names) for layer in layers)


def _layer_record(layer: LayerInfo) -> dict:
    record = {name: getattr(layer, name) for name in LAYER_FIELDS}
    record["weight_shape"] = list(layer.weight_shape)
    if layer.bias_masked:  # only then: the files of every other layout stay as they were
        record[BIAS_MASKED] = True
    return record


def _layer(record, index: int) -> LayerInfo:
    where = f"layer record {index}"
    if type(record) is not dict or set(record) - {BIAS_MASKED} != set(LAYER_FIELDS):
        raise ValueError(
            f"{where} must be an object with keys {', '.join(LAYER_FIELDS)}"
            f" (and {BIAS_MASKED} in a file of masks of weights)"
        )
    if record.get(BIAS_MASKED, True) is not True:
        raise ValueError(f"{where}: {BIAS_MASKED} must be true where present")
    if BIAS_MASKED in record and record["bias_key"] is None:
        raise ValueError(f"{where}: {BIAS_MASKED} on a layer without bias")
    shape = record["weight_shape"]
    if not (isinstance(shape, list) and len(shape) >= 2 and all(_positive(d) for d in shape)):
        raise ValueError(f"{where}: weight_shape must be a list of >= 2 positive integers")
    if not _positive(record["units"]) or record["units"] != shape[0]:
        raise ValueError(f"{where}: units must equal weight_shape[0] ({shown(shape[0])})")
    for key in ("name", "weight_key"):
        if not isinstance(record[key], str) or not record[key]:
            raise ValueError(f"{where}: {key} must be a non-empty string")
    for key in ("bias_key", "preceding"):
        if record[key] is not None and not isinstance(record[key], str):
            raise ValueError(f"{where}: {key} must be a string or null")
    return LayerInfo(**{**record, "weight_shape": tuple(shape)})


def _positive(value) -> bool:
    return type(value) is int and value > 0


def _check_version(text: str) -> int:
    if not (text.isdigit() and text.isascii() and len(text) < 10):
        raise ValueError(f"malformed format version {shown(text)}")
    if int(text) > FORMAT_VERSION:
        raise ValueError(
            f"format version {text} is newer than this hatinspect reads ({FORMAT_VERSION});"
            " upgrade hatinspect"
        )
    return int(text)


def _covers(value, version: int) -> Covers:
    """What the masks cover; masks of weights need the version that packs them."""
    if value not in COVERS:
        raise ValueError(f"{COVERS_KEY!r} is {shown(value)}; expected one of {', '.join(COVERS)}")
    if value != Covers.UNITS and version < PARAMETERS_VERSION:
        raise ValueError(
            f"{COVERS_KEY!r} is {value!r}, which format version {version} cannot hold"
            f" (masks of weights need version {PARAMETERS_VERSION})"
        )
    return Covers(value)


def _json(metadata: Mapping[str, str], key: str):
    try:
        return json.loads(metadata[key])
    except (TypeError, ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise ValueError(f"metadata {key!r} is not valid JSON") from None


def _optional(metadata: Mapping[str, str], key: str, kind: type):
    value = _json(metadata, key) if key in metadata else None
    if value is not None and (type(value) is not kind):
        raise ValueError(f"metadata {key!r} must be a JSON {kind.__name__} or null")
    return value


def _task_ids(value) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{TASK_IDS_KEY!r} must be a list of task ids")
    try:
        return check_task_ids(value)
    except ValueError as exc:
        raise ValueError(f"{TASK_IDS_KEY!r}: {exc}") from None


def _current_task(value: int | None) -> int | None:
    if value is not None and not is_task_id(value):
        raise ValueError(f"{TASK_ID_KEY!r} must be an integer in 0..{MAX_TASK_ID} or null")
    return value


def _notes(value: list) -> tuple[str, ...]:
    if not all(note == "" or text(note) for note in value):
        raise ValueError(f"{NOTES_KEY!r} must be a list of strings")
    return tuple(value)


def _source(value: str) -> str:
    if value not in SOURCES:
        raise ValueError(f"unknown source {shown(value)}; expected one of {', '.join(SOURCES)}")
    return value
