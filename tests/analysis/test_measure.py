"""Parameter-wise measures: against a brute-force double loop and against the backbone."""

import itertools

import numpy as np
import pytest
from support.brute_force import parameter_wise
from support.inspect_checkpoints import CONV, MLP, layer, make_checkpoint, random_masks

from hatinspect.analysis.measure import measure, parse_unit_wise
from hatinspect.model.errors import HatinspectError

TASKS = [0, 1, 3]


@pytest.mark.parametrize("layers", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("of", ["cumulative", "summative", "task:3"])
@pytest.mark.parametrize("aggregation", ["min", "max"])
def test_matches_brute_force(layers, of, aggregation):
    ckpt = make_checkpoint(layers, random_masks(layers, TASKS, seed=7))
    for lay in layers:
        result = measure(ckpt, lay.name, of, aggregation)
        weight, bias = parameter_wise(layers, ckpt.masks, TASKS, lay, of, aggregation)
        assert {index: result.weight[index] for index in weight} == weight
        if bias is None:
            assert result.bias is None and result.bias_stats is None
        else:
            np.testing.assert_array_equal(result.bias, bias)
        assert (result.layer, result.of, result.aggregation) == (lay.name, of, aggregation)


def test_summary_statistics_and_histogram():
    ckpt = make_checkpoint()
    result = measure(ckpt, "fc/1", "summative", "max")
    flat = result.weight.ravel().tolist()
    stats = result.weight_stats
    assert (stats.count, stats.min, stats.max) == (len(flat), min(flat), max(flat))
    assert stats.mean == pytest.approx(sum(flat) / len(flat))
    assert stats.histogram == tuple((v, flat.count(v)) for v in sorted(set(flat)))
    assert all(type(value) is int for value, _ in stats.histogram)
    assert result.bias_stats.histogram == ((1, 3), (2, 1))  # summative of fc/1: 2, 1, 1, 1


def test_weight_matrix_sums_kernels():
    ckpt = make_checkpoint(CONV, random_masks(CONV, TASKS))
    result = measure(ckpt, "block/conv1")
    np.testing.assert_array_equal(result.weight_matrix, result.weight.sum(axis=(2, 3)))
    assert result.weight_matrix.shape == (6, 4)


@pytest.mark.parametrize(
    ("text", "task"), [("cumulative", None), ("summative", None), ("task:3", 3), ("task: 12", 12)]
)
def test_parse_unit_wise(text, task):
    assert parse_unit_wise(text) == task


@pytest.mark.parametrize("text", ["", "cum", "task", "task:", "task:x", "tasks:1", "task:1.5",
                                  "task:²", "importance:٣"])  # fmt: skip
def test_parse_unit_wise_rejects(text):
    with pytest.raises(ValueError, match="is not one of cumulative, summative, task:N"):
        parse_unit_wise(text)


def test_a_task_number_of_thousands_of_digits_is_refused_in_one_short_line():
    with pytest.raises(ValueError, match=r"^task:N: no task has a number of 5000 digits$"):
        parse_unit_wise("task:" + "9" * 5000)


def test_errors():
    ckpt = make_checkpoint()
    with pytest.raises(HatinspectError, match="no task 9 .* its tasks are 1, 2, 4"):
        measure(ckpt, "fc/0", "task:9")
    with pytest.raises(HatinspectError, match="no layer 'fc/7'"):
        measure(ckpt, "fc/7")
    with pytest.raises(ValueError, match="aggregation must be min or max, not 'mean'"):
        measure(ckpt, "fc/0", aggregation="mean")


def test_a_flatten_with_inputs_the_units_cannot_feed_is_an_error():
    layers = (layer("a", (4, 3)), layer("b", (2, 6), "a"))
    with pytest.raises(HatinspectError, match="6 inputs, which 4 units"):
        measure(make_checkpoint(layers, random_masks(layers, [0])), "b")


# Against HATMaskBackbone.get_layer_measure_parameter_wise on the network itself.


def trained(backbone, tasks):
    import torch

    torch.manual_seed(0)
    for task in tasks:
        backbone.setup_task_id(task)
        backbone.initialise_task_embedding("N01")
        backbone.store_mask()
    return backbone


def backbone_measure(backbone, of):
    if of == "cumulative":
        return backbone.get_cumulative_mask()
    if of == "summative":
        return backbone.get_summative_mask()
    return backbone.masks[int(of[5:])]


def assert_same_as_backbone(backbone, ckpt):
    for lay, of, aggregation in itertools.product(
        ckpt.layers, ["cumulative", "summative", "task:3"], ["min", "max"]
    ):
        weight, bias = backbone.get_layer_measure_parameter_wise(
            backbone_measure(backbone, of), lay.name, aggregation
        )
        result = measure(ckpt, lay.name, of, aggregation)
        np.testing.assert_array_equal(result.weight, weight.numpy(), err_msg=lay.name)
        if bias is None:
            assert result.bias is None
        else:
            np.testing.assert_array_equal(result.bias, bias.numpy(), err_msg=lay.name)


@pytest.mark.torch
def test_same_as_backbone_mlp_through_a_file(tmp_path):
    from hatinspect.backbones import HATMaskMLP
    from hatinspect.checkpoints import open_checkpoint
    from hatinspect.torch_io.save import save_checkpoint

    backbone = trained(HATMaskMLP(6, [16, 8], 8, "sigmoid"), TASKS)
    save_checkpoint(tmp_path / "mlp.safetensors", backbone)
    assert_same_as_backbone(backbone, open_checkpoint(tmp_path / "mlp.safetensors"))


@pytest.mark.slow
@pytest.mark.torch
def test_same_as_backbone_resnet18():
    from hatinspect.backbones import HATMaskResNet18
    from hatinspect.backbones.layers import describe_layers

    backbone = trained(HATMaskResNet18(3, 512, "sigmoid"), TASKS)
    masks = {t: {n: m.numpy() for n, m in mask.items()} for t, mask in backbone.masks.items()}
    assert_same_as_backbone(backbone, make_checkpoint(describe_layers(backbone), masks))


@pytest.mark.parametrize("aggregation", ["min", "max"])
@pytest.mark.parametrize("first", [False, True], ids=["fed", "first"])
def test_closed_form_stats_match_every_entry(aggregation, first):
    from hatinspect.analysis.measure import pair_stats

    rng = np.random.default_rng(4)
    rows = rng.integers(0, 6, 13).astype(np.float32)
    columns = None if first else rng.integers(0, 6, 11).astype(np.float32)
    kernel = 4
    if first:
        entries = np.repeat(rows, 11 * kernel)
    else:
        pick = np.minimum if aggregation == "min" else np.maximum
        entries = np.array([pick(r, c) for r in rows for c in columns for _ in range(kernel)])
    stats = pair_stats(rows, columns, aggregation, 11, kernel)
    values, counts = np.unique(entries, return_counts=True)
    assert stats.histogram == tuple(zip(values.tolist(), counts.tolist(), strict=True))
    assert (stats.count, stats.min, stats.max) == (entries.size, entries.min(), entries.max())
    assert stats.mean == pytest.approx(entries.mean())
