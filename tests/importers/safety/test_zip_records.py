"""The zip records torch would misread are refused before it reads them."""

from __future__ import annotations

import struct

import pytest

torch = pytest.importorskip("torch")

from support.checkpoint_factories import original_hat_state  # noqa: E402

import hatinspect  # noqa: E402


def _central_headers(data: bytes):
    """(offset, name) of each central directory header."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (length,) = struct.unpack_from("<H", data, at + 28)
        yield at, data[at + 46 : at + 46 + length].decode()
        at = data.find(b"PK\x01\x02", at + 46 + length)


@pytest.mark.parametrize("attributes", [0x10, 0xFF])
def test_a_record_marked_a_directory_is_refused(tmp_path, attributes):
    # torch's reader "reads" a directory without writing a byte: a tensor of stale memory
    path = tmp_path / "marked.pt"
    torch.save(original_hat_state(n_tasks=2)[0], path)
    data = bytearray(path.read_bytes())
    at, name = next((at, name) for at, name in _central_headers(data) if name.endswith("/data/1"))
    struct.pack_into("<I", data, at + 38, attributes)  # the external attributes
    path.write_bytes(bytes(data))
    with pytest.raises(hatinspect.CheckpointError, match="marked a directory"):
        hatinspect.open_checkpoint(path)
