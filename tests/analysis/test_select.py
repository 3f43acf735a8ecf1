"""Choosing tasks and layers: order, globs, and errors that list the real names."""

import pytest
from support.inspect_checkpoints import CONV, make_checkpoint, random_masks, resnet152_layers

from hatinspect.analysis.select import find_layer, select_layers, select_tasks
from hatinspect.model.errors import HatinspectError

CKPT = make_checkpoint()


def names(layers):
    return [layer.name for layer in layers]


def test_all_tasks_by_default_in_checkpoint_order():
    assert select_tasks(CKPT) == (1, 2, 4)
    assert select_tasks(CKPT, [4, 1, 4]) == (1, 4)


def test_unknown_task_lists_the_real_ids():
    with pytest.raises(
        HatinspectError, match=r"no task 3, 7 in net.safetensors; its tasks are 1, 2, 4"
    ):
        select_tasks(CKPT, [1, 3, 7])


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ((), (), ["fc/0", "fc/1", "fc/2"]),
        (["fc/2", "fc/0"], (), ["fc/0", "fc/2"]),  # network order, not pattern order
        (["fc/*"], ["fc/1"], ["fc/0", "fc/2"]),
        ((), ["*/2"], ["fc/0", "fc/1"]),
        (["fc/[01]", "fc/0"], (), ["fc/0", "fc/1"]),  # overlapping patterns
    ],
)
def test_layer_globs(include, exclude, expected):
    assert names(select_layers(CKPT, include, exclude)) == expected


def test_star_crosses_slashes():
    ckpt = make_checkpoint(CONV, random_masks(CONV, [0]))
    assert names(select_layers(ckpt, ["block*"])) == ["block/conv1", "block/shortcut"]


@pytest.mark.parametrize(("include", "exclude"), [(["conv*"], ()), ((), ["nope"])])
def test_a_pattern_matching_nothing_lists_the_layers(include, exclude):
    with pytest.raises(
        HatinspectError, match=r"matches no layer .* its layers are fc/0, fc/1, fc/2$"
    ):
        select_layers(CKPT, include, exclude)


def test_excluding_everything_is_an_error():
    with pytest.raises(HatinspectError, match="leave no layer"):
        select_layers(CKPT, ["fc/*"], ["*"])


def test_long_name_lists_are_cut_short():
    layers = resnet152_layers()
    ckpt = make_checkpoint(layers, random_masks(layers, [0]))
    with pytest.raises(HatinspectError, match=rf"\.\.\. \({len(layers)} in all; `hatinspect info`"):
        select_layers(ckpt, ["fc*"])


def test_find_layer_suggests_near_names():
    assert find_layer(CKPT, "fc/1").units == 4
    with pytest.raises(HatinspectError, match=r"no layer 'fc1' .* did you mean 'fc/1'"):
        find_layer(CKPT, "fc1")
