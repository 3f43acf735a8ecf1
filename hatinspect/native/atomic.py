"""Writing a file so that it is never half-written: into a temporary file beside it,
synced, checked, then renamed over it. A failure leaves what was there before."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hatinspect.model.errors import HatinspectError

FILE_MODE = 0o644  # mkstemp creates 0600; what hatinspect writes is meant to be shared


def write_atomically(
    path: Path,
    write: Callable[[str], None],
    verify: Callable[[str], None] | None = None,
    error: type[HatinspectError] = HatinspectError,
) -> None:
    """``write(temporary)`` in ``path``'s folder, ``verify(temporary)`` while the disk
    catches up, then ``os.replace`` over ``path`` and sync the folder, so that the rename
    survives a crash. Errors are said of ``path``, never of the temporary file: an
    ``OSError`` as ``error``, a ``HatinspectError`` as itself."""
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as exc:  # the folder is missing, a file or read-only: say it of `path`
        raise error(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    os.close(handle)
    try:
        write(temporary)
        with syncing(temporary):
            if verify is not None:
                verify(temporary)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
        fsync_folder(path.parent)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise error(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    except HatinspectError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise type(exc)(str(exc).replace(temporary, str(path))) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def syncing(path: str) -> Iterator[None]:
    """``fsync`` of ``path`` in a thread while the block runs (waiting on the disk leaves
    the interpreter free); its error, if any, is raised on leaving."""
    failed: list[OSError] = []

    def sync() -> None:
        try:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=sync, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failed:
        raise failed[0]


def fsync_folder(folder: Path) -> None:
    """Sync a folder's entries where the system can (not on Windows, nor some file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
