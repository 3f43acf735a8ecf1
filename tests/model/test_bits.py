"""Packed bits of masks of weights: the bit order, padding and popcounts against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
from support.weight_masks import loop_packed

from hatinspect.model import bits


@pytest.mark.parametrize("size", [1, 7, 8, 9, 63, 64, 65, 200, 1001])
def test_packing_follows_the_documented_bit_order_and_round_trips(size):
    mask = (np.random.default_rng(size).random(size) < 0.5).astype(np.uint8)
    packed = bits.pack(mask)
    assert packed.dtype == np.uint8 and len(packed) == bits.packed_size(size) == -(-size // 8)
    assert packed.tobytes() == loop_packed(mask).tobytes()
    assert bits.unpack(packed, (size,)).tolist() == mask.tolist()


def test_entry_8k_plus_i_is_bit_i_of_byte_k():
    mask = np.zeros(20, dtype=np.uint8)
    mask[[3, 8, 19]] = 1
    assert bits.pack(mask).tolist() == [1 << 3, 1 << 0, 1 << 3]


@pytest.mark.parametrize("size", [1, 5, 8, 13, 16, 21])
def test_padding_mask_keeps_only_the_bits_that_hold_entries(size):
    last = loop_packed(np.ones(size, dtype=np.uint8))[-1]
    assert bits.padding_mask(size) == last


@pytest.mark.parametrize("table", [False, True], ids=["bitwise_count", "table"])
@pytest.mark.parametrize("width", [0, 1, 7, 8, 15, 16, 17, 100])
def test_popcounts_count_every_set_bit(monkeypatch, table, width):
    if table:
        monkeypatch.setattr(bits, "_HAS_BITWISE_COUNT", False)
    elif not bits._HAS_BITWISE_COUNT:
        pytest.skip("numpy < 2 has no bitwise_count")
    rows = np.random.default_rng(width).integers(0, 256, (3, width), dtype=np.uint8)
    expected = [sum(bin(int(v)).count("1") for v in row) for row in rows]
    assert bits.popcounts(rows).tolist() == expected
    assert bits.popcount(rows[0]) == expected[0]
    # a strided slice of a wider array counts the same
    wide = np.zeros((3, width + 5), dtype=np.uint8)
    wide[:, 2 : 2 + width] = rows
    assert bits.popcounts(wide[:, 2 : 2 + width]).tolist() == expected


def test_packed_masks_unpack_each_mask_when_asked():
    shapes = {"a": (2, 5), "b": (3, 3)}
    dense = {t: {n: np.arange(np.prod(s)).reshape(s) % (t + 2) == 0 for n, s in shapes.items()}
             for t in (4, 9)}  # fmt: skip
    reads = []

    def read(tasks, layer, start, stop, out=None):
        assert out is None  # unpacking a mask asks for a fresh array
        reads.append((tuple(tasks), layer, start, stop))
        return np.array([bits.pack(dense[t][layer])[start:stop] for t in tasks])

    masks = bits.PackedMasks((4, 9), shapes, read)
    assert list(masks) == [4, 9] and len(masks) == 2 and list(masks[9]) == ["a", "b"]
    assert not reads  # nothing read before a mask is asked for
    for task in (4, 9):
        for name, shape in shapes.items():
            got = masks[task][name]
            assert got.dtype == np.uint8 and got.shape == shape and not got.flags.writeable
            assert got.tolist() == dense[task][name].astype(np.uint8).tolist()
    with pytest.raises(KeyError):
        masks[5]
    with pytest.raises(KeyError):
        masks[4]["c"]


@pytest.mark.parametrize("table", [False, True], ids=["bitwise_count", "table"])
@pytest.mark.parametrize("width", [1, 8, 13, 64])
def test_shared_counts_are_each_pairs_common_bits(monkeypatch, table, width):
    if table:
        monkeypatch.setattr(bits, "_HAS_BITWISE_COUNT", False)
    elif not bits._HAS_BITWISE_COUNT:
        pytest.skip("numpy < 2 has no bitwise_count")
    rows = np.random.default_rng(width).integers(0, 256, (5, width + 1), dtype=np.uint8)
    for chosen in (rows[:, :width], rows[:, 1:]):  # views whose rows are not contiguous
        assert bits.shared_counts(chosen).tolist() == _loop_shared(chosen)


def _loop_shared(rows):
    def both(a, b):
        return sum(bin(int(x) & int(y)).count("1") for x, y in zip(a, b, strict=True))

    return [[both(a, b) for b in rows] for a in rows]


@pytest.mark.parametrize("table", [False, True], ids=["bitwise_count", "table"])
def test_shared_counts_add_up_blocks_of_any_width(monkeypatch, table):
    """Blocks of 16, 13 (a part word, copied into the padded buffer) and 1 byte, the
    buffers made once for the widest: the sums are those of the rows joined."""
    if table:
        monkeypatch.setattr(bits, "_HAS_BITWISE_COUNT", False)
    elif not bits._HAS_BITWISE_COUNT:
        pytest.skip("numpy < 2 has no bitwise_count")
    rows = np.random.default_rng(3).integers(0, 256, (7, 30), dtype=np.uint8)
    pairs = bits.SharedCounts(7, 16)
    for start, stop in ((0, 16), (16, 29), (29, 30)):
        pairs.add(rows[:, start:stop])
    assert pairs.total().tolist() == _loop_shared(rows)
    one = bits.SharedCounts(1, 3)
    one.add(rows[:1, :3])
    assert one.total().tolist() == _loop_shared(rows[:1, :3])


@pytest.mark.parametrize("table", [False, True], ids=["bitwise_count", "table"])
def test_shared_counts_keep_each_part_of_a_block_to_its_scope(monkeypatch, table):
    """A block of three parts (scopes 2, 0, 1, each from a word; the last a part word),
    then a block of one part of scope 2: each scope's counts are those of its bytes."""
    if table:
        monkeypatch.setattr(bits, "_HAS_BITWISE_COUNT", False)
    elif not bits._HAS_BITWISE_COUNT:
        pytest.skip("numpy < 2 has no bitwise_count")
    rows = np.random.default_rng(5).integers(0, 256, (4, 29), dtype=np.uint8)
    more = np.random.default_rng(6).integers(0, 256, (4, 11), dtype=np.uint8)
    pairs = bits.SharedCounts(4, 32, scopes=3)
    pairs.add(rows, [(0, 2), (16, 0), (24, 1)])
    pairs.add(more, [(0, 2)])
    assert pairs.total(0).tolist() == _loop_shared(rows[:, 16:24])
    assert pairs.total(1).tolist() == _loop_shared(rows[:, 24:])
    both = np.concatenate([rows[:, :16], more], axis=1)
    assert pairs.total(2).tolist() == _loop_shared(both)


@pytest.mark.parametrize("parts", [[(8, 0)], [(0, 0), (12, 1)], [(0, 0), (16, 1), (8, 2)],
                                   [(0, 0), (8, 1), (8, 2)]])  # fmt: skip
def test_parts_not_starting_on_words_in_order_are_refused(parts):
    pairs = bits.SharedCounts(2, 32, scopes=3)
    with pytest.raises(ValueError, match="whole words in order"):
        pairs.add(np.zeros((2, 32), dtype=np.uint8), parts)
