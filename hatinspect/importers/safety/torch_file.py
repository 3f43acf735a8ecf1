"""Checking a PyTorch file before ``torch.load`` sees it: a torch zip's records
(``zip_records``) and every pickle in it (``pickle_opcodes``); a legacy file's pickles one
after another. What the loaded objects claim is ``tensor_claims``'s."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from hatinspect.importers.safety.pickle_opcodes import GlobalNames, scan_pickle, scan_stream
from hatinspect.importers.safety.zip_records import RecordCheck, read_zip_records

LEGACY_PICKLES = 5  # torch's legacy format: magic, protocol, sys info, object, storage keys


@dataclass(frozen=True)
class CheckedFile:
    """What ``check_torch_file`` found: the globals the file's pickles name, for the caller
    to judge, and the check of a zip's data records, which goes on in a thread."""

    globals: tuple[str, ...] = ()
    records: RecordCheck | None = None

    @property
    def zipped(self) -> bool:
        """Whether the file was checked as a torch zip (by its first bytes)."""
        return self.records is not None

    def wait(self) -> None:
        """Raise what the check of the data records found, once it is done."""
        if self.records is not None:
            self.records.wait()


def check_torch_file(path: Path) -> CheckedFile:
    """Refuse a file whose zip records or pickles no checkpoint has; ``CheckpointError``.
    A zip's pickles are checked before this returns; its data records' CRCs in a thread
    (``CheckedFile.wait``), while torch reads them: nothing in them runs."""
    size = path.stat().st_size
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        names = GlobalNames()
        pickles, stored = read_zip_records(path, size)
        for name, data in pickles:
            scan_pickle(path, data, name, names)
        # started after the scan, which it would slow down (both want the interpreter at
        # every chunk), and beside torch.load, which waits on the same reads
        return CheckedFile(tuple(names.sorted()), RecordCheck(path, stored))
    with path.open("rb") as f:
        data = f.read()  # the file's whole size, which torch.load reads too
    stream, names = io.BytesIO(data), GlobalNames()
    for _ in range(LEGACY_PICKLES):
        if stream.tell() >= len(data):
            break
        scan_stream(path, stream, "pickle", names)
    return CheckedFile(tuple(names.sorted()))
