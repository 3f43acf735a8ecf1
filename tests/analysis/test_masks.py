"""The mask summary against plain loops over the masks."""

import pytest
from support.inspect_checkpoints import CONV, MLP, make_checkpoint, random_masks

from hatinspect.analysis.masks import summarise_masks


def brute_force(ckpt, tasks, layer):
    """Per-task active counts, cumulative count and histogram of one layer, by loops."""
    masks = [[int(v) for v in ckpt.masks[t][layer.name]] for t in tasks]
    active = {t: sum(m) for t, m in zip(tasks, masks, strict=True)}
    used_by = [sum(m[u] for m in masks) for u in range(layer.units)]
    cumulative = sum(1 for n in used_by if n > 0)
    histogram = [used_by.count(k) for k in range(len(tasks) + 1)]
    return active, cumulative, histogram, used_by


@pytest.mark.parametrize("layers", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("tasks", [(), (0,), (2, 5)])
def test_matches_brute_force(layers, tasks):
    ckpt = make_checkpoint(layers, random_masks(layers, [0, 2, 5, 9], seed=3))
    report = summarise_masks(ckpt, tasks)
    chosen = tasks or (0, 2, 5, 9)
    assert report.tasks == chosen
    for layer, got in zip(ckpt.layers, report.layers, strict=True):
        active, cumulative, histogram, used_by = brute_force(ckpt, chosen, layer)
        assert (got.name, got.units) == (layer.name, layer.units)
        assert got.active == active
        assert got.cumulative == cumulative
        assert list(got.histogram) == histogram
        assert got.summative_max == max(used_by)
        assert got.summative_mean == pytest.approx(sum(used_by) / layer.units)
        assert [list(row) for row in got.matrix] == [
            list(ckpt.masks[t][layer.name]) for t in chosen
        ]


@pytest.mark.parametrize("tasks", [255, 256, 300])
def test_many_tasks_past_a_byte(tasks):
    """Summative counts above 255 (a unit every task keeps) stay exact."""
    ckpt = make_checkpoint(MLP, random_masks(MLP, range(tasks), seed=1, density=0.9))
    layer, *_ = ckpt.layers
    full = {t: dict(ckpt.masks[t]) for t in ckpt.task_ids}
    for t in full:  # unit 0 is kept by every task
        full[t][layer.name] = full[t][layer.name].copy()
        full[t][layer.name][0] = 1
    ckpt = make_checkpoint(MLP, full)
    got = summarise_masks(ckpt).layers[0]
    active, cumulative, histogram, used_by = brute_force(ckpt, ckpt.task_ids, layer)
    assert used_by[0] == tasks
    assert (got.active, got.cumulative, list(got.histogram)) == (active, cumulative, histogram)


def test_hand_picked_values():
    report = summarise_masks(make_checkpoint(), include=["fc/0"])
    (fc0,) = report.layers
    assert fc0.active == {1: 2, 2: 2, 4: 1}
    assert fc0.fraction(1) == 0.4
    assert (fc0.cumulative, fc0.cumulative_fraction) == (4, 0.8)
    assert fc0.histogram == (1, 3, 1, 0)  # unit 4 unused, unit 1 shared by tasks 1 and 2
    assert (fc0.summative_max, fc0.summative_mean) == (2, 1.0)
    assert report.histogram == (1, 3, 1, 0) and report.units == 5


def test_network_histogram_sums_layers():
    report = summarise_masks(make_checkpoint())
    assert report.histogram == (1, 7, 4, 0)
    assert sum(report.histogram) == report.units == 12


def test_no_tasks():
    report = summarise_masks(make_checkpoint(masks={}))
    assert report.tasks == ()
    assert all(
        layer.cumulative == 0 and layer.histogram == (layer.units,) for layer in report.layers
    )
    assert all(layer.summative_max == 0 for layer in report.layers)


def test_matrix_is_read_only():
    (layer, *_) = summarise_masks(make_checkpoint()).layers
    with pytest.raises(ValueError):
        layer.matrix[0, 0] = 1
