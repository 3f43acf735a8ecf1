"""Copies of PyTorch files with one tensor's stored bytes changed, for audits to catch."""

import io
import zipfile
from pathlib import Path


def with_tensor_bytes(source: Path, old: bytes, new: bytes, target: Path) -> Path:
    """`source` written to `target` with the one storage holding `old` holding `new`
    instead: a zip file's record of those bytes, or those bytes of a legacy file."""
    if zipfile.is_zipfile(source):
        out = io.BytesIO()
        replaced = 0
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                replaced += data == old
                dst.writestr(item, new if data == old else data)
        assert replaced == 1, f"{replaced} records of {source.name} hold the bytes"
        raw = out.getvalue()
    else:
        raw = source.read_bytes()
        assert raw.count(old) == 1
        raw = raw.replace(old, new)
    target.write_bytes(raw)
    return target
