"""Writing output files safely: known extensions, no silent overwrite, never half-written."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from hatinspect.model.errors import HatinspectError
from hatinspect.native.atomic import write_atomically

FIGURE_FORMATS = ("png", "svg", "pdf")


class OutputRefused(HatinspectError):
    """An output that cannot be written where the user asked, known before any work: a
    usage error, with what to do instead (`hint`)."""

    def __init__(self, message: str, hint: str = "choose another {option}") -> None:
        super().__init__(message)
        self.hint = hint


class OutputExists(OutputRefused):
    """The output file is already there and overwriting it was not asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path} already exists", "pass --force to overwrite it, or choose another {option}"
        )


def output_format(path: Path, formats: Collection[str]) -> str:
    """The format named by `path`'s extension; ValueError when it is not one of `formats`."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ValueError(
            f"{path.name}: the extension must be one of {', '.join('.' + f for f in formats)}"
        )
    return suffix


class OutputIsInput(OutputRefused):
    """The output path names a file the command reads: never written, even with --force."""


def check_writable(path: Path, force: bool, inputs: Collection[Path] = ()) -> None:
    """Refuse, as `OutputRefused`, an output that is an input, exists without `force`, or
    whose folder is missing, a file or read-only."""
    for source in inputs:
        if _same_file(path, Path(source)):
            raise OutputIsInput(f"{path} is an input of this command", "write to another file")
    if path.exists() and not force:
        raise OutputExists(path)
    folder = path.parent
    if not folder.exists():
        raise OutputRefused(
            f"cannot write {path}: folder {folder} does not exist",
            "create it, or choose another {option}",
        )
    if not folder.is_dir():
        raise OutputRefused(f"cannot write {path}: {folder} is a file, not a folder")
    if _read_only(folder):
        raise OutputRefused(f"cannot write {path}: folder {folder} is read-only")


def _read_only(folder: Path) -> bool:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except (OSError, AttributeError):  # no statvfs (Windows): ask access() alone
        pass
    return not os.access(folder, os.W_OK | os.X_OK)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def save_measure(result, path: Path) -> None:
    """Write a LayerMeasure's weight- and bias-shaped measures (float32) as safetensors,
    streamed a block of rows at a time: memory stays flat whatever the layer's size."""
    import numpy as np
    from safetensors import safe_open

    from hatinspect.native.blocks import write_stream

    tensors = {"weight": (np.float32, result.weight_shape, result.weight_blocks())}
    if result.bias_shape is not None:
        tensors["bias"] = (np.float32, result.bias_shape, [result.bias])
    metadata = {
        "format": "np",
        "checkpoint": result.checkpoint,
        "layer": result.layer,
        "of": result.of,
        "aggregation": result.aggregation,
    }
    shapes = {name: tuple(shape) for name, (_, shape, _) in tensors.items()}

    def verify(temporary: str) -> None:
        with safe_open(temporary, framework="numpy") as f:
            back = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        if back != shapes:
            raise HatinspectError(f"{path}: the written measures did not read back intact")

    write_atomically(path, lambda tmp: write_stream(tmp, tensors, metadata), verify)
