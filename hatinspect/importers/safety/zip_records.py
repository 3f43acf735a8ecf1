"""A torch zip's records read in full and checked against its directory: the pickles'
sizes and CRCs before torch's reader sees them, the tensors' records in a thread while
torch reads them and before anything uses them. Nothing in a record runs here."""

from __future__ import annotations

import struct
import threading
import zipfile
import zlib
from pathlib import Path

from hatinspect.importers.safety.limits import INFLATION, SLACK
from hatinspect.model.errors import CheckpointError, reason, shown

CHUNK = 2**20  # bytes read at a time: memory stays flat whatever a record's size
LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature .. extra length, 30 bytes

# what reading a damaged zip directory or record raises
DAMAGED_ZIP = (
    zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError, OSError,
    zlib.error,
)  # fmt: skip


DOS_DIR = 0x10  # the MS-DOS "directory" bit of a zip record's external attributes


def read_zip_records(path: Path, size: int) -> tuple[list, list]:
    """The directory and local headers checked, the pickles read and CRC-checked, other
    compressed records too: ``([(pickle name, bytes)], [(stored record, its start)])``."""
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            infos = archive.infolist()
            _check_directory(path, infos, size)
            starts = [_check_local_header(path, raw, info) for info in infos]
            pickles, stored = [], []
            for info, start in zip(infos, starts, strict=True):
                is_pickle = info.filename.endswith(".pkl")
                if info.compress_type != zipfile.ZIP_STORED:
                    data = _read_deflated(path, archive, info)
                elif is_pickle:
                    raw.seek(start)
                    data = raw.read(info.file_size)
                    _check_stored(path, info, data)
                else:
                    stored.append((info, start))
                    continue
                if is_pickle:
                    pickles.append((info.filename.rpartition("/")[2], data))
            return pickles, stored
    except CheckpointError:
        raise
    except DAMAGED_ZIP as exc:
        if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in str(exc):
            # no end-of-archive record: the end is missing
            raise CheckpointError(
                f"{path}: truncated: a zip archive (torch.save's format) whose directory at"
                f" the end is missing ({size} bytes); the file was probably cut short"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({reason(exc, 120)})"
        ) from None


def _check_directory(path: Path, infos: list[zipfile.ZipInfo], size: int) -> None:
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise CheckpointError(f"{path}: refused to load: a zip record name appears twice")
    if any(info.flag_bits & 0x1 for info in infos):
        raise CheckpointError(f"{path}: refused to load: an encrypted zip record")
    # torch's zip reader (miniz) takes a record whose name ends in "/" or whose DOS
    # attributes say "directory" for a folder and "reads" it without writing a byte: the
    # tensor would hold whatever memory it was given
    folders = [i.filename for i in infos if i.filename.endswith("/") or i.external_attr & DOS_DIR]
    if folders:
        raise CheckpointError(
            f"{path}: refused to load: zip record {shown(folders[0])} is marked a directory"
        )
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{path}: refused to load: zip compression not stored/deflated")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CheckpointError(f"{path}: zip record {shown(info.filename)}: sizes disagree")
    inflated = sum(info.file_size for info in infos)
    if inflated > INFLATION * size + SLACK:
        raise CheckpointError(
            f"{path}: refused to load: its zip records inflate to {inflated:,} bytes,"
            f" more than {INFLATION} times the file's {size:,}"
        )


def _check_local_header(path: Path, raw, info: zipfile.ZipInfo) -> int:
    """The local header repeats the directory's method, CRC and sizes (unless a data
    descriptor follows): a reader that trusts one and a reader that trusts the other
    must see the same record. Returns where the record's data starts."""
    raw.seek(info.header_offset)
    fields = LOCAL_HEADER.unpack(raw.read(LOCAL_HEADER.size).ljust(LOCAL_HEADER.size, b"\0"))
    signature, _, flags, method, _, _, crc, csize, usize, name_length, extra_length = fields
    if signature != b"PK\x03\x04" or method != info.compress_type:
        raise CheckpointError(
            f"{path}: zip record {shown(info.filename)}: local header disagrees with directory"
        )
    sizes_known = not flags & 0x8 and csize != 0xFFFFFFFF and usize != 0xFFFFFFFF
    named = raw.read(name_length).decode("utf-8" if flags & 0x800 else "cp437", "replace")
    if named != info.orig_filename or (
        sizes_known and (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size)
    ):
        raise CheckpointError(
            f"{path}: zip record {shown(info.filename)}: local header disagrees with directory"
        )
    return info.header_offset + LOCAL_HEADER.size + name_length + extra_length


def _check_stored(path: Path, info: zipfile.ZipInfo, data: bytes) -> None:
    if len(data) != info.file_size:
        _wrong_size(path, info, len(data))
    if zlib.crc32(data) != info.CRC:
        _bad_crc(path, info)


def _bad_crc(path: Path, info: zipfile.ZipInfo):
    raise CheckpointError(
        f"{path}: not a readable PyTorch checkpoint (bad CRC-32 of zip record"
        f" {shown(info.filename)})"
    )


class RecordCheck:
    """The sizes and CRCs of a zip's stored records, checked by a thread of its own
    through one reused buffer (memory stays flat): reading and zlib let go of the
    interpreter, so the check costs no time beside ``torch.load``."""

    def __init__(self, path: Path, records: list[tuple[zipfile.ZipInfo, int]]) -> None:
        self._error: CheckpointError | None = None
        self._thread = threading.Thread(target=self._run, args=(path, records), daemon=True)
        self._thread.start()

    def _run(self, path: Path, records) -> None:
        try:
            buffer = memoryview(bytearray(CHUNK))
            with path.open("rb", buffering=0) as raw:
                for info, start in records:
                    _check_in_chunks(path, raw, buffer, info, start)
        except CheckpointError as exc:
            self._error = exc
        except (OSError, ValueError) as exc:  # the file changed or went since it was opened
            self._error = CheckpointError(
                f"{path}: not a readable PyTorch checkpoint ({reason(exc, 120)})"
            )

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _check_in_chunks(path: Path, raw, buffer: memoryview, info: zipfile.ZipInfo, start: int):
    raw.seek(start)
    crc, left = 0, info.file_size
    while left:
        count = raw.readinto(buffer[: min(left, len(buffer))])
        if not count:
            _wrong_size(path, info, info.file_size - left)
        crc, left = zlib.crc32(buffer[:count], crc), left - count
    if crc != info.CRC:
        _bad_crc(path, info)


def _read_deflated(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A compressed record read through ``zipfile``, which checks its CRC at the end."""
    keep = info.filename.endswith(".pkl")
    chunks, count = [], 0
    with archive.open(info) as record:
        while chunk := record.read(CHUNK):
            count += len(chunk)
            if count > info.file_size:
                break
            if keep:
                chunks.append(chunk)
    if count != info.file_size:
        _wrong_size(path, info, count)
    return b"".join(chunks)


def _wrong_size(path: Path, info: zipfile.ZipInfo, count: int):
    raise CheckpointError(
        f"{path}: zip record {shown(info.filename)} holds {count} bytes,"
        f" its directory says {info.file_size}"
    )
