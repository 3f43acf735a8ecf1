"""Writing output files safely: known extensions, no silent overwrite, never half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path

from hatinspect.model.errors import HatinspectError

FIGURE_FORMATS = ("png", "svg", "pdf")
FILE_MODE = 0o644  # mkstemp creates 0600; figures and exports are meant to be shared


class OutputExists(HatinspectError):
    """The output file is already there and overwriting it was not asked for."""


def output_format(path: Path, formats: Collection[str]) -> str:
    """The format named by `path`'s extension; ValueError when it is not one of `formats`."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ValueError(
            f"{path.name}: the extension must be one of {', '.join('.' + f for f in formats)}"
        )
    return suffix


class OutputIsInput(HatinspectError):
    """The output path names a file the command reads: never written, even with --force."""


def check_writable(path: Path, force: bool, inputs: Collection[Path] = ()) -> None:
    for source in inputs:
        if _same_file(path, Path(source)):
            raise OutputIsInput(f"{path} is an input of this command; write to another file")
    if path.exists() and not force:
        raise OutputExists(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise HatinspectError(f"cannot write {path}: folder {path.parent} does not exist")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(temporary_path)` in `path`'s folder, then move the result over `path`."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except OSError as exc:  # said of the file asked for, never of the temporary one
        Path(temporary).unlink(missing_ok=True)
        raise HatinspectError(
            f"cannot write {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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

    def write_and_verify(temporary: str) -> None:
        write_stream(temporary, tensors, metadata)
        with safe_open(temporary, framework="numpy") as f:
            back = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        if back != shapes:
            raise HatinspectError(f"{path}: the written measures did not read back intact")

    write_atomically(path, write_and_verify)
