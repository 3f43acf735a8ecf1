"""What commands share around their work: opening their inputs (notes to stderr),
checking their outputs are free, writing results and figures."""

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hatinspect import api
from hatinspect.cli.errors import fail
from hatinspect.cli.heavy import heavy_imports
from hatinspect.cli.options import Format, MaskRule, Source
from hatinspect.render.files import check_writable
from hatinspect.render.stderr import detail, note, say, verbosity

if TYPE_CHECKING:
    from hatinspect.model.checkpoint import Checkpoint


def load(
    path: Path,
    source: Source | None = None,
    task_id: int | None = None,
    mask_rule: MaskRule | None = None,
    mask_threshold: float | None = None,
) -> "Checkpoint":
    """Open a checkpoint (the one seam to the reader) and show its caveats on stderr."""
    from hatinspect.checkpoints import open_checkpoint

    if path.is_dir():
        raise fail(*_pick_a_file(path))
    started = time.perf_counter()
    with heavy_imports():  # a PyTorch file imports torch
        checkpoint = open_checkpoint(
            path, _value(source), task_id, mask_rule=_value(mask_rule),
            mask_threshold=mask_threshold,
        )  # fmt: skip
    _describe(checkpoint, time.perf_counter() - started)
    for caveat in checkpoint.notes:
        note(caveat)
    return checkpoint


def _describe(checkpoint: "Checkpoint", seconds: float | None = None) -> None:
    """What ``-v`` says of an opened file: its size, what read it, how long it took."""
    if not verbosity.get().verbose:
        return
    path = Path(checkpoint.path)
    size = f"{path.stat().st_size:,} bytes" if path.is_file() else "a folder"
    reader = _reader(path, checkpoint.source)
    detail(
        f"{path}: {size}, read by {reader} (a {checkpoint.source} checkpoint, "
        f"{checkpoint.backbone}, {len(checkpoint.layers)} layers)"
        + ("" if seconds is None else f" in {seconds:.2f} s")
    )


def _reader(path: Path, source: str) -> str:
    """What read the file: the native reader, the .pkz logs' reader or an importer."""
    from hatinspect.analysis.hat_logs import is_hat_log
    from hatinspect.native.reader import sniff

    if path.is_file() and is_hat_log(path):
        return "the .pkz logs' reader"
    if path.is_file() and sniff(path) == "safetensors":
        return "the native reader"
    return f"the {source} importer"


def _pick_a_file(folder: Path) -> tuple[str, str]:
    """A folder given where one checkpoint is read: which file to pick instead."""
    from hatinspect.analysis.runs import RUN_FILE

    suffixes = (".safetensors", ".pt", ".pth", ".ckpt")
    files = sorted(f for f in folder.iterdir() if f.suffix in suffixes and f.is_file())
    numbered = sorted((int(m[1]), f) for f in files if (m := RUN_FILE.fullmatch(f.name)))
    if numbered:
        last = numbered[-1][1]
        return (f"{folder} is a run folder; this command reads one checkpoint of it",
                f"pick one, e.g. {last} (the last task's)")  # fmt: skip
    if files:
        return (
            f"{folder} is a folder; this command reads one checkpoint",
            f"pick one, e.g. {files[-1]}",
        )
    return f"{folder} is a folder with no checkpoint in it", "give a checkpoint file"


def _value(choice):
    return choice.value if choice else None


def load_run(
    path: Path,
    source: Source | None = None,
    task_id: int | None = None,
    mask_rule: MaskRule | None = None,
    mask_threshold: float | None = None,
):
    """A run folder (its files checked to agree), a CLArena output folder or its acc.csv,
    the original HAT code's .pkz logs, or one checkpoint; notes on stderr."""
    from hatinspect.analysis.hat_logs import is_hat_log

    if not path.is_dir() and path.name != "acc.csv" and not is_hat_log(path):
        return load(path, source, task_id, mask_rule, mask_threshold)
    started = time.perf_counter()
    with heavy_imports():  # a run of PyTorch files imports torch
        run = api.open_run(path, _value(source), task_id, _value(mask_rule), mask_threshold)
    detail(f"{path}: {len(run.checkpoints)} file(s) in {time.perf_counter() - started:.2f} s")
    for checkpoint in run.checkpoints:
        _describe(checkpoint)
    for caveat in run.final.notes:
        note(caveat)
    return run


def emit(
    result,
    fmt: Format,
    checkpoints: tuple = (),
    width: int | None = None,
    **options,
) -> None:
    """Write a result to stdout; `checkpoints` give JSON its notes, `options` shape the
    table and CSV views, `width` the table alone."""
    from hatinspect.model import records
    from hatinspect.render import runs, tables, trajectory  # noqa: F401  (each registers its views)
    from hatinspect.render.layout import print_tables

    if fmt is Format.json:
        sys.stdout.write(records.to_json(result, checkpoints))
    elif fmt is Format.csv:
        sys.stdout.write(records.to_csv(result, **options))
    else:
        print_tables(result, width=width, **options)


def write_output(write, result, path: Path | None, *options, **keywords) -> None:
    """``write(result, path, ...)`` when a path is given, then say so on stderr."""
    if path is not None:
        write(result, path, *options, **keywords)
        say(f"wrote {path}")


def figure_look(dpi: int, cmap: str | None, figsize: str | None, title: str | None):
    from hatinspect.render.figures import Look, parse_figsize

    return Look(parse_figsize(figsize) if figsize else None, title, cmap, dpi)


def outputs_free(force: bool, inputs: tuple[Path, ...], **outputs) -> None:
    """Each output (keyed by its option, ``heatmap`` for ``--heatmap``, an argument in
    capitals: ``DST``; a path, a tuple of paths or None) writable: else a usage error
    naming what the user typed and what to do."""
    from hatinspect.render.files import OutputRefused

    for key, paths in outputs.items():
        option = key if key.isupper() else "--" + key.replace("_", "-")
        for path in paths if isinstance(paths, tuple) else (paths,):
            if path is None:
                continue
            try:
                check_writable(path, force, inputs)
            except OutputRefused as exc:
                raise fail(str(exc), exc.hint.format(option=option), code=2) from None
