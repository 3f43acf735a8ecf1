"""Task x task overlap against counting shared units one by one."""

import csv
import io
import itertools

import numpy as np
import pytest
from support.brute_force import overlap_counts
from support.inspect_checkpoints import CONV, MLP, layer, make_checkpoint, random_masks

from hatinspect.analysis.overlap import overlap


@pytest.mark.parametrize("layers", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("tasks", [(), (2, 8)])
def test_matches_brute_force(layers, tasks):
    ckpt = make_checkpoint(layers, random_masks(layers, [1, 2, 5, 8], seed=11))
    report = overlap(ckpt, tasks)
    chosen = tasks or (1, 2, 5, 8)
    assert report.tasks == chosen
    shared, union = overlap_counts(layers, ckpt.masks, chosen)
    assert report.network.shared.tolist() == shared
    assert report.network.union.tolist() == union
    expected = [
        [s / u if u else 1.0 for s, u in zip(*rows, strict=True)]
        for rows in zip(shared, union, strict=True)
    ]
    np.testing.assert_allclose(report.network.jaccard, expected)
    for lay, scope in zip(layers, report.layers, strict=True):
        shared, union = overlap_counts([lay], ckpt.masks, chosen)
        assert (scope.name, scope.units) == (lay.name, lay.units)
        assert scope.shared.tolist() == shared and scope.union.tolist() == union


def test_layer_selection_limits_the_network_sums():
    ckpt = make_checkpoint()
    report = overlap(ckpt, include=["fc/*"], exclude=["fc/2"])
    assert [scope.name for scope in report.layers] == ["fc/0", "fc/1"]
    assert report.network.units == 9
    # tasks 1 and 2 share unit 1 of fc/0 and unit 0 of fc/1
    assert report.network.shared[0, 1] == 2
    assert report.network.jaccard[0, 1] == 2 / 5


def test_empty_masks_are_identical():
    empty = {lay.name: [0] * lay.units for lay in MLP}
    report = overlap(make_checkpoint(masks={0: empty, 1: empty}))
    assert report.network.jaccard.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert report.network.shared.tolist() == [[0, 0], [0, 0]]


def test_matrices_are_read_only():
    report = overlap(make_checkpoint())
    with pytest.raises(ValueError):
        report.network.shared[0, 0] = 3


@pytest.mark.parametrize("block_bytes", [4, 64, 1 << 24], ids=["tiny", "some", "one"])
def test_blocked_float32_products_count_exactly(monkeypatch, block_bytes):
    from hatinspect.analysis import overlap as module

    monkeypatch.setattr(module, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(3)
    matrix = (rng.random((7, 301)) < 0.5).astype(np.uint8)
    expected = [
        [sum(int(a) & int(b) for a, b in zip(row_a, row_b, strict=True)) for row_b in matrix]
        for row_a in matrix
    ]
    got = module.shared_units(matrix)
    assert got.dtype == np.int64 and got.tolist() == expected


def test_float32_blocks_stay_within_exact_integers(monkeypatch):
    from hatinspect.analysis import overlap as module

    monkeypatch.setattr(module, "BLOCK_BYTES", 1 << 40)  # only the exactness limit splits
    matrix = np.ones((2, 2**24 + 3), dtype=np.uint8)  # one float32 sum would round
    assert module.shared_units(matrix).tolist() == [[2**24 + 3] * 2] * 2


@pytest.mark.parametrize(
    ("units", "tasks", "density"),
    [
        ((1,), (4,), 0.5),  # one task, one unit
        ((63, 65), (1, 2, 3), 0.5),  # around a 64-bit word
        ((130, 7, 64), (2, 3, 5, 7, 11), 0.3),
        ((9, 200), (1, 2), 0.0),  # no task keeps a unit
        ((5, 3), (1, 2, 3), 1.0),  # every task keeps every unit
    ],
)
def test_random_masks_of_odd_sizes_match_counting_one_by_one(units, tasks, density):
    layers = [layer(f"fc/{i}", (n, 3)) for i, n in enumerate(units)]
    masks = random_masks(layers, tasks, seed=sum(units), density=density)
    report = overlap(make_checkpoint(layers, masks))
    scopes = [(report.network, layers)] + [
        (s, [lay]) for s, lay in zip(report.layers, layers, strict=True)
    ]
    for scope, chosen in scopes:
        shared, union = overlap_counts(chosen, masks, tasks)
        assert scope.units == sum(lay.units for lay in chosen)
        assert scope.shared.tolist() == shared and scope.union.tolist() == union


def test_no_units_share_nothing():
    from hatinspect.analysis.overlap import shared_units

    assert shared_units(np.zeros((3, 0), dtype=np.uint8)).tolist() == [[0] * 3] * 3


def test_csv_has_every_pair_of_every_scope_with_names_quoted():
    from hatinspect.model.records import to_csv

    tasks = (1, 2, 4)
    layers = [layer('a,"b"', (3, 2)), layer("c", (70, 2))]
    masks = random_masks(layers, tasks, seed=5)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["scope", "task_a", "task_b", "shared", "union", "jaccard"])
    for name, chosen in [("network", layers), *((lay.name, [lay]) for lay in layers)]:
        shared, union = overlap_counts(chosen, masks, tasks)
        for (i, a), (j, b) in itertools.product(enumerate(tasks), repeat=2):
            jaccard = shared[i][j] / union[i][j] if union[i][j] else 1.0
            writer.writerow([name, a, b, shared[i][j], union[i][j], jaccard])
    report = overlap(make_checkpoint(layers, masks))
    assert to_csv(report, per_layer=True) == out.getvalue()
