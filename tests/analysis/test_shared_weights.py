"""Pair counts over blocks that hold several layers (analysis/shared_weights.py): the plan
of blocks, and counts in one thread or several equal to each pair's common weights counted
from the dense masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.weight_masks import LAYERS, dense_checkpoint, random_masks, write_packed

import hatinspect
from hatinspect.analysis import packed, shared_weights
from hatinspect.model.bits import WORD


@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=12),
    width=st.integers(1, 12).map(lambda words: words * WORD),
)
def test_blocks_lay_every_byte_once_in_order_on_words(sizes, width):
    blocks = shared_weights.plan_blocks(sizes, width)
    pieces = [piece for block in blocks for piece in block]
    for layer, size in enumerate(sizes):  # each layer's bytes, in order, without a gap
        mine = [(p.start, p.stop) for p in pieces if p.layer == layer]
        assert mine[0][0] == 0 and mine[-1][1] == size
        assert all(a[1] == b[0] for a, b in zip(mine, mine[1:], strict=False))
    assert [p.layer for p in pieces] == sorted(p.layer for p in pieces)
    for block in blocks:
        assert block and block[0].at == 0 and block[-1].end <= width
        for before, after in zip(block, block[1:], strict=False):
            assert after.at == before.end  # side by side, each from a word
        assert all(p.at % WORD == 0 and 0 < p.stop - p.start <= width for p in block)
    # a block is closed only when its next piece does not fit
    for block, after in zip(blocks, blocks[1:], strict=False):
        assert block[-1].end + after[0].end > width


def test_small_layers_share_a_block_and_a_big_one_spans_several():
    blocks = shared_weights.plan_blocks([5, 3, 40, 8, 9], 16)
    assert [[(p.layer, p.start, p.stop, p.at) for p in block] for block in blocks] == [
        [(0, 0, 5, 0), (1, 0, 3, 8)],
        [(2, 0, 16, 0)],
        [(2, 16, 32, 0)],
        [(2, 32, 40, 0), (3, 0, 8, 8)],
        [(4, 0, 9, 0)],  # 9 bytes take two words: no room beside layer 3
    ]


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("block", [8, 24, 56, 4 * 2**20])
@pytest.mark.parametrize("stored", ["dense", "native"])
def test_pair_counts_are_each_pairs_common_weights(tmp_path, monkeypatch, workers, block, stored):
    """Blocks of one word a task row up to one block for every layer; the buffers reused
    from block to block (a piece's padding zeroed) in each of 1, 2 or 3 threads."""
    monkeypatch.setattr(packed, "WORKERS", workers)
    monkeypatch.setattr(shared_weights, "PAIR_BYTES", block)
    tasks = (0, 2, 3, 7)
    masks = random_masks(tasks=tasks, seed=block + workers, density=0.4)
    checkpoint = (
        dense_checkpoint(masks)
        if stored == "dense"
        else hatinspect.open_checkpoint(write_packed(tmp_path / "m.safetensors", masks))
    )
    got = shared_weights.shared_weights(checkpoint, LAYERS, (7, 0, 3))
    for layer, counts in zip(LAYERS, got, strict=True):
        dense = np.stack([masks[t][layer.name].reshape(-1).astype(np.int64) for t in (7, 0, 3)])
        assert counts.tolist() == (dense @ dense.T).tolist()


def test_no_tasks_or_no_layers_count_nothing():
    checkpoint = dense_checkpoint(random_masks(tasks=(0, 1), seed=1, density=0.5))
    assert shared_weights.shared_weights(checkpoint, LAYERS[:1], ())[0].shape == (0, 0)
    assert shared_weights.shared_weights(checkpoint, (), (0, 1)) == []
