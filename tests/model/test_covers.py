"""Masks that cover every weight: the reductions and the element-wise analyses take them as
they are, and the analyses that reason about units refuse them in one line."""

from dataclasses import replace

import numpy as np
import pytest

from hatinspect.analysis.capacity import capacity
from hatinspect.analysis.masks import summarise_masks
from hatinspect.analysis.measure import measure
from hatinspect.analysis.overlap import overlap
from hatinspect.model.checkpoint import Checkpoint, Covers, LayerInfo
from hatinspect.model.errors import HatinspectError

LAYERS = (
    LayerInfo("fc/0", 3, (3, 2), "fc.0.weight", None, None),
    LayerInfo("fc/1", 2, (2, 3), "fc.1.weight", None, "fc/0"),
)
# task -> layer -> a weight-shaped 0/1 mask
MASKS = {
    1: {"fc/0": np.array([[1, 0], [1, 1], [0, 0]]), "fc/1": np.array([[1, 0, 0], [0, 0, 1]])},
    2: {"fc/0": np.array([[1, 1], [0, 1], [0, 0]]), "fc/1": np.array([[0, 0, 0], [0, 0, 1]])},
}


def weight_masked() -> Checkpoint:
    masks = {t: {k: v.astype(np.uint8) for k, v in m.items()} for t, m in MASKS.items()}
    return Checkpoint(
        "net.pt", "Net", "hatinspect", LAYERS, (1, 2), masks, covers=Covers.PARAMETERS
    )


def test_mask_shape_follows_what_a_mask_covers():
    assert LAYERS[1].mask_shape() == (2,) and LAYERS[1].mask_size() == 2
    assert LAYERS[1].mask_shape(Covers.PARAMETERS) == (2, 3)
    assert LAYERS[1].mask_size(Covers.PARAMETERS) == 6


def test_cumulative_and_summative_masks_are_element_wise_over_weights():
    checkpoint = weight_masked()
    cumulative, summative = checkpoint.cumulative_mask(), checkpoint.summative_mask()
    assert cumulative["fc/0"].tolist() == [[1, 1], [1, 1], [0, 0]]
    assert summative["fc/0"].tolist() == [[2, 1], [1, 2], [0, 0]]
    assert summative["fc/1"].tolist() == [[1, 0, 0], [0, 0, 2]]


def test_mask_and_overlap_counts_are_over_every_entry():
    checkpoint = weight_masked()
    report = summarise_masks(checkpoint)
    first = report.layers[0]
    assert (first.units, first.active, first.cumulative) == (6, {1: 3, 2: 3}, 4)
    assert first.histogram == (2, 2, 2)
    # fc/0 shares 2 entries ((0,0), (1,1)), fc/1 shares 1 ((1,2)): 3 of a union of 6
    network = overlap(checkpoint).network
    assert network.units == 12
    assert network.shared.tolist() == [[5, 3], [3, 4]]
    assert network.jaccard[0, 1] == pytest.approx(3 / 6)


def test_the_parameter_wise_measure_refuses_weight_masks_in_one_line():
    with pytest.raises(HatinspectError, match="masks cover parameters, not units") as caught:
        measure(weight_masked(), "fc/1")
    assert "\n" not in str(caught.value)


def test_capacity_of_weight_masks_counts_weights():
    checkpoint = weight_masked()
    report = capacity(checkpoint)
    for usage, layer in zip(report.layers, checkpoint.layers, strict=True):
        owned = [
            any(int(checkpoint.masks[t][layer.name].flat[i]) for t in checkpoint.task_ids)
            for i in range(layer.mask_size(checkpoint.covers))
        ]
        assert (usage.params, usage.params_protected) == (len(owned), sum(owned))


def test_unit_masks_stay_the_default():
    checkpoint = replace(weight_masked(), covers=Covers.UNITS)
    assert (
        checkpoint.covers == "units"
        and Checkpoint.__dataclass_fields__["covers"].default == "units"
    )
