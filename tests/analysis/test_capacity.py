"""Capacity counts against a brute-force walk over every weight."""

import math

import pytest
from support.brute_force import growth, protected_params, used_units
from support.inspect_checkpoints import CONV, MLP, layer, make_checkpoint, random_masks

from hatinspect.analysis.capacity import capacity
from hatinspect.model.errors import CheckpointError


@pytest.mark.parametrize("layers", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(layers, seed):
    tasks = [0, 3, 4]
    ckpt = make_checkpoint(layers, random_masks(layers, tasks, seed=seed))
    report = capacity(ckpt)
    protected = protected_params(layers, ckpt.masks, tasks)
    used = used_units(layers, ckpt.masks, tasks)
    for lay, usage in zip(ckpt.layers, report.layers, strict=True):
        assert usage.name == lay.name
        assert usage.units_used == sum(used[lay.name])
        assert usage.params == math.prod(lay.weight_shape) + (lay.units if lay.has_bias else 0)
        assert usage.params_protected == protected[lay.name]
        assert usage.param_usage == protected[lay.name] / usage.params
        assert usage.free == pytest.approx(1 - usage.param_usage)
        assert usage.unit_usage == usage.units_used / lay.units
    assert report.total.params_protected == sum(protected.values())
    assert report.total.units == sum(lay.units for lay in layers)


@pytest.mark.parametrize("layers", [MLP, CONV], ids=["mlp", "conv"])
def test_growth_by_task_matches_brute_force(layers):
    tasks = [1, 2, 6, 7]
    ckpt = make_checkpoint(layers, random_masks(layers, tasks, seed=5, density=0.3))
    report = capacity(ckpt)
    params = sum(lay.params for lay in layers)
    expected = growth(layers, ckpt.masks, tasks)
    for t, (step, loops) in enumerate(zip(report.by_task, expected, strict=True)):
        used = used_units(layers, ckpt.masks, tasks[: t + 1])
        assert step.task == loops["task"]
        assert (step.new_units, step.reused_units) == (loops["new"], loops["reused"])
        assert step.free_before == loops["free"]
        assert step.network_sparsity == loops["new"] / loops["free"]
        assert step.units_used == sum(sum(u) for u in used.values())
        assert step.params_protected == loops["protected"]
        assert step.param_usage == loops["protected"] / params
    assert report.by_task[-1].params_protected == report.total.params_protected


def test_hand_picked_values():
    report = capacity(make_checkpoint())
    fc0, fc1, fc2 = report.layers
    # fc/0: 4 of 5 units used, a first layer sees all 6 inputs: 4 * 6 weights + 4 biases
    assert (fc0.units_used, fc0.params, fc0.params_protected) == (4, 35, 28)
    # fc/1: 4 used units x 4 used inputs + 4 biases; fc/2: 3 x 4, no bias
    assert (fc1.params_protected, fc2.params_protected) == (20, 12)
    assert report.total.params_protected == 60 and report.total.params == 35 + 24 + 12
    first, second, third = report.by_task
    assert (first.new_units, first.reused_units, first.free_before) == (4, 0, 12)
    assert (second.new_units, second.reused_units, second.free_before) == (3, 2, 8)
    assert (third.new_units, third.reused_units, third.free_before) == (4, 2, 5)


def test_nothing_free_gives_zero_sparsity():
    full = {name: [1] * lay.units for lay in MLP for name in [lay.name]}
    report = capacity(make_checkpoint(masks={0: full, 1: full}))
    assert report.by_task[1].free_before == 0 and report.by_task[1].network_sparsity == 0.0
    assert report.total.param_usage == 1.0 and report.total.free == 0.0


def test_no_tasks_uses_nothing():
    report = capacity(make_checkpoint(masks={}))
    assert report.by_task == () and report.total.params_protected == 0
    assert report.total.params == sum(lay.params for lay in MLP)


def test_inputs_that_units_cannot_feed_are_an_error():
    layers = (layer("a", (4, 3)), layer("b", (2, 6), "a"))  # 6 inputs from 4 units
    with pytest.raises(
        CheckpointError, match="layer b has 6 inputs, which 4 units of its preceding layer a"
    ):
        capacity(make_checkpoint(layers, random_masks(layers, [0])))


def test_a_long_chain_matches_brute_force():
    # many layers, some without bias, each fed by the one before: the counts of every
    # layer come out of one side-by-side matrix, so a misaligned offset would show
    layers = [layer("l/0", (2, 3))] + [
        layer(f"l/{i}", (2 + i % 3, 2 + (i - 1) % 3), f"l/{i - 1}", bias=i % 2 == 0)
        for i in range(1, 300)
    ]
    tasks = [1, 2, 5]
    ckpt = make_checkpoint(layers, random_masks(layers, tasks, seed=9))
    report = capacity(ckpt)
    protected = protected_params(layers, ckpt.masks, tasks)
    assert [u.params_protected for u in report.layers] == [protected[lay.name] for lay in layers]
    assert ckpt.layer("l/299") is layers[299]
    with pytest.raises(KeyError):
        ckpt.layer("l/300")


def test_chosen_layers_match_brute_force_and_total_only_them():
    layers = CONV
    tasks = [0, 2]
    ckpt = make_checkpoint(layers, random_masks(layers, tasks, seed=3))
    chosen = [lay.name for lay in layers][1::2]
    report = capacity(ckpt, include=chosen)
    protected = protected_params(layers, ckpt.masks, tasks)
    used = used_units(layers, ckpt.masks, tasks)
    assert [u.name for u in report.layers] == chosen
    assert [u.params_protected for u in report.layers] == [protected[n] for n in chosen]
    assert report.total.params_protected == sum(protected[n] for n in chosen)
    assert report.total.units_used == sum(sum(used[n]) for n in chosen)
    by_name = {lay.name: lay for lay in layers}
    assert report.total.params == sum(
        math.prod(by_name[n].weight_shape) + (by_name[n].units if by_name[n].has_bias else 0)
        for n in chosen
    )


def test_fine_tuning_protects_no_parameter_and_frees_every_one():
    """All-ones masks of a fine-tuning run: every unit used, not one parameter protected."""
    full = {lay.name: [1] * lay.units for lay in MLP}
    checkpoint = make_checkpoint(masks={1: full, 2: full}, metadata={"algorithm": "finetuning"})
    report = capacity(checkpoint)
    assert report.protects is False
    for usage in (*report.layers, report.total):
        assert (usage.params_protected, usage.param_usage, usage.free) == (0, 0.0, 1.0)
        assert usage.units_used == usage.units  # the units are still used
    assert report.total.params == sum(lay.params for lay in MLP)
    assert [(s.params_protected, s.param_usage) for s in report.by_task] == [(0, 0.0)] * 2
    hat = capacity(make_checkpoint(masks={1: full, 2: full}, metadata={"algorithm": "hat"}))
    assert hat.total.params_protected == sum(lay.params for lay in MLP)  # the same masks, HAT
