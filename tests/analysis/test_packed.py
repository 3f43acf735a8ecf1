"""Counts over masks of weights on packed bits (analysis/packed.py, and capacity, overlap,
masks and audit through it) against plain loops over the dense masks, for masks an importer
holds (dense) and masks a native file holds (packed, read on demand), in blocks of every size."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support.weight_masks import (
    LAYERS,
    dense_checkpoint,
    packed_tensors,
    random_masks,
    write_packed,
)

import hatinspect
from hatinspect.analysis import packed, shared_weights
from hatinspect.analysis.audit import audit
from hatinspect.analysis.capacity import capacity
from hatinspect.analysis.masks import summarise_masks
from hatinspect.analysis.overlap import overlap
from hatinspect.model import bits
from hatinspect.model.checkpoint import LayerInfo
from hatinspect.model.errors import CheckpointError

TASKS = (0, 1, 2, 3, 5)


@pytest.fixture(params=["dense", "native"])
def opened(request, tmp_path):
    masks = random_masks(tasks=TASKS, seed=11, density=0.3)
    if request.param == "dense":
        return dense_checkpoint(masks), masks
    return hatinspect.open_checkpoint(write_packed(tmp_path / "w.safetensors", masks)), masks


@pytest.fixture(params=[None, 8, 24, 40], ids=["one block", "8 B", "24 B", "40 B"])
def block(request, monkeypatch):
    """The bytes of a block: small ones cut every layer into many blocks."""
    if request.param:
        monkeypatch.setattr(packed, "BLOCK_BYTES", request.param)
        monkeypatch.setattr(shared_weights, "PAIR_BYTES", request.param)
    return request.param


def _weights(masks, task, layer):
    return [int(v) for v in masks[task][layer.name].reshape(-1)]


def _union(masks, tasks, layer):
    """Per weight of ``layer``, 1 when any of ``tasks`` keeps it."""
    union = [0] * packed.entries(layer)
    for task in tasks:
        union = [a | b for a, b in zip(union, _weights(masks, task, layer), strict=True)]
    return union


def test_row_spans_cover_every_row_once_on_byte_boundaries(block):
    for layer, tasks in itertools.product(LAYERS, (1, 3, 40)):
        spans = list(packed.row_spans(layer, tasks))
        per_row = packed.entries(layer) // layer.units
        assert [s.first for s in spans] == [0, *(s.last for s in spans[:-1])]
        assert spans[-1].last == layer.units
        for span in spans:
            assert span.start * 8 == span.first * per_row  # starts on a byte
            assert span.stop == -(-span.last * per_row // 8)


def test_capacity_counts_every_weight_and_unit_as_a_loop_does(opened, block):
    checkpoint, masks = opened
    report = capacity(checkpoint)
    owned_after = 0
    for t, step in enumerate(report.by_task):
        earlier = TASKS[:t]
        new = reused = new_units = reused_units = 0
        for layer in LAYERS:
            mine, seen = _weights(masks, step.task, layer), _union(masks, earlier, layer)
            new += sum(m and not s for m, s in zip(mine, seen, strict=True))
            reused += sum(m and s for m, s in zip(mine, seen, strict=True))
            per_row = len(mine) // layer.units
            for row in range(layer.units):
                cut = slice(row * per_row, (row + 1) * per_row)
                if any(mine[cut]):
                    new_units += not any(seen[cut])
                    reused_units += any(seen[cut])
        owned_after += new
        assert (step.new_params, step.reused_params) == (new, reused)
        assert (step.new_units, step.reused_units) == (new_units, reused_units)
        assert step.params_protected == owned_after
    for usage, layer in zip(report.layers, LAYERS, strict=True):
        union = _union(masks, TASKS, layer)
        assert (usage.params, usage.params_protected) == (len(union), sum(union))
        rows = np.array(union).reshape(layer.units, -1)
        assert usage.units_used == sum(any(row) for row in rows.tolist())
    assert report.total.params_protected == owned_after


def test_overlap_counts_shared_weights_of_every_pair(opened, block):
    checkpoint, masks = opened
    report = overlap(checkpoint, tasks=(1, 3, 5))
    chosen = (1, 3, 5)
    network = np.zeros((3, 3), dtype=int)
    for scope, layer in zip(report.layers, LAYERS, strict=True):
        for (a, ta), (b, tb) in itertools.product(enumerate(chosen), repeat=2):
            both = sum(
                x and y
                for x, y in zip(_weights(masks, ta, layer), _weights(masks, tb, layer), strict=True)
            )
            assert scope.shared[a, b] == both
            network[a, b] += both
        assert scope.units == packed.entries(layer)
    assert report.network.shared.tolist() == network.tolist()
    sizes = np.diag(network)
    union = sizes[:, None] + sizes[None, :] - network
    np.testing.assert_allclose(report.network.jaccard, network / union)
    assert report.entries == "weights"


# one layer of 3 x 67 = 201 weights: no whole number of 64-bit words (nor bytes)
ODD = (LayerInfo("odd", 3, (3, 67), "backbone.odd.weight", None, None),)


@pytest.mark.parametrize("count", [1, 2, 33, 70])
def test_overlap_of_one_task_or_many_on_a_layer_of_no_whole_words(tmp_path, block, count):
    """Pair counts where the last word of each block is part padding: with one task (the
    diagonal only), two, and more tasks than a block has rows of whole words (70: more
    than a word has bits)."""
    tasks = tuple(range(count))
    masks = random_masks(ODD, tasks=tasks, seed=count, density=0.6)
    path = write_packed(tmp_path / f"odd{count}.safetensors", masks, ODD)
    # dense 0/1 rows multiplied in int64: each pair's common weights, counted apart
    dense = np.stack([masks[t]["odd"].reshape(-1).astype(np.int64) for t in tasks])
    expected = (dense @ dense.T).tolist()
    for checkpoint in (dense_checkpoint(masks, ODD), hatinspect.open_checkpoint(path)):
        assert overlap(checkpoint).layers[0].shared.tolist() == expected
        assert overlap(checkpoint).network.shared.tolist() == expected


def test_padding_bits_set_on_disk_count_for_no_pair(tmp_path):
    """A packed mask whose bits past the last weight are set (as a careless writer leaves
    them): the reader refuses the file, and counts of rows given straight to the pair
    counter see only the bytes they are given."""
    masks = random_masks(ODD, tasks=(0, 1), seed=4, density=1.0)
    tensors = packed_tensors(masks, ODD)
    for task in (0, 1):
        tensors[f"pmask.{task}.odd"] = tensors[f"pmask.{task}.odd"].copy()
        tensors[f"pmask.{task}.odd"][-1] |= 0xFF  # 201 = 25 * 8 + 1: 7 padding bits set
    path = write_packed(tmp_path / "padded.safetensors", masks, ODD, tensors=tensors)
    with pytest.raises(CheckpointError, match="padding"):
        overlap(hatinspect.open_checkpoint(path))
    rows = np.stack([tensors[f"pmask.{t}.odd"] for t in (0, 1)])
    assert bits.shared_counts(rows).tolist() == [[208, 208], [208, 208]]  # 26 full bytes
    assert bits.shared_counts(rows[:, :-1]).tolist() == [[200, 200], [200, 200]]


def test_the_masks_table_counts_each_task_and_how_many_keep_each_weight(opened, block):
    checkpoint, masks = opened
    report = summarise_masks(checkpoint, tasks=(0, 2, 3, 5))
    chosen = (0, 2, 3, 5)
    for summary, layer in zip(report.layers, LAYERS, strict=True):
        columns = list(zip(*(_weights(masks, t, layer) for t in chosen), strict=True))
        assert summary.units == len(columns)
        assert summary.active == {t: sum(_weights(masks, t, layer)) for t in chosen}
        assert summary.cumulative == sum(any(c) for c in columns)
        assert summary.histogram == tuple(
            sum(sum(c) == k for c in columns) for k in range(len(chosen) + 1)
        )
        # drawn from the dense rows, unpacked only when asked for
        assert summary.matrix.tolist() == [_weights(masks, t, layer) for t in chosen]


def test_more_tasks_than_a_count_plane_holds(tmp_path, block):
    """Bit-sliced counters across 2^k boundaries: 1, 2, 3, 4, 7, 8 and 9 tasks."""
    for count in (1, 2, 3, 4, 7, 8, 9):
        masks = random_masks(tasks=tuple(range(count)), seed=count, density=0.7)
        report = summarise_masks(dense_checkpoint(masks))
        for summary, layer in zip(report.layers, LAYERS, strict=True):
            columns = list(zip(*(_weights(masks, t, layer) for t in range(count)), strict=True))
            expected = tuple(sum(sum(c) == k for c in columns) for k in range(count + 1))
            assert summary.histogram == expected


def test_the_audit_of_owned_weights_finds_exactly_the_weights_that_moved(tmp_path, block):
    from support.weight_masks import packed_tensors

    before_masks = random_masks(tasks=(0, 1), seed=2)
    after_masks = {**before_masks, **random_masks(tasks=(2,), seed=9)}
    before = write_packed(tmp_path / "b.safetensors", before_masks)
    tensors = packed_tensors(after_masks)
    moved = 0
    for layer in LAYERS:
        old = packed_tensors(before_masks)[layer.weight_key]
        new = old.copy()
        flat = new.reshape(-1)
        flat[::3] += 1.0  # every third weight moves
        tensors[layer.weight_key] = new
        owned = _union(before_masks, (0, 1), layer)
        moved += sum(o for i, o in enumerate(owned) if i % 3 == 0)
    after = write_packed(tmp_path / "a.safetensors", after_masks, tensors=tensors)
    report = audit(hatinspect.open_checkpoint(before), hatinspect.open_checkpoint(after))
    owned = sum(sum(_union(before_masks, (0, 1), layer)) for layer in LAYERS)
    assert report.protected == owned and report.changed == moved and not report.ok
    assert report.max_abs_change == pytest.approx(1.0)


def test_the_audit_refuses_files_whose_masks_of_a_task_differ(tmp_path):
    masks = random_masks(tasks=(0, 1), seed=2)
    other = {0: masks[0], 1: {**masks[1], "fc": 1 - masks[1]["fc"]}}
    one, two = (
        write_packed(tmp_path / "a.safetensors", masks),
        write_packed(tmp_path / "b.safetensors", other),
    )
    with pytest.raises(hatinspect.HatinspectError, match="task 1's mask of layer fc differs"):
        audit(hatinspect.open_checkpoint(one), hatinspect.open_checkpoint(two))


def test_threads_stop_taking_work_once_an_item_fails(monkeypatch):
    """An error in the first of 50 items: the items not yet begun are dropped, not run
    while the error waits (as Ctrl-C would wait on a big file)."""
    import time

    monkeypatch.setattr(packed, "WORKERS", 2)
    ran = []

    def work(item):
        ran.append(item)
        if item == 0:
            raise ValueError("damaged")
        time.sleep(0.01)
        return item

    with pytest.raises(ValueError, match="damaged"):
        list(packed.in_threads(work, range(50)))
    assert len(ran) < 10
    assert list(packed.in_threads(lambda item: item * 2, range(5))) == [0, 2, 4, 6, 8]
