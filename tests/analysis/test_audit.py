"""Audit: protected parameters compared bit for bit between two native files."""

import numpy as np
import pytest
from support.inspect_checkpoints import (
    CONV,
    MLP,
    make_checkpoint,
    random_masks,
    random_weights,
    write_native,
)

from hatinspect.analysis.audit import audit
from hatinspect.checkpoints import open_checkpoint
from hatinspect.model.errors import CheckpointError


def pair(tmp_path, layers=MLP, change=None, masks=None):
    """BEFORE and AFTER files; `change(weights)` edits AFTER's weights in place."""
    ckpt = make_checkpoint(layers, masks or random_masks(layers, [0, 1], seed=2))
    weights = random_weights(ckpt)
    before = write_native(tmp_path / "before.safetensors", ckpt, weights)
    later = {k: v.copy() for k, v in weights.items()}
    if change:
        change(later)
    after = write_native(tmp_path / "after.safetensors", ckpt, later)
    return open_checkpoint(before), open_checkpoint(after)


def protected_by_loops(ckpt, lay):
    cum = ckpt.cumulative_mask()
    rows = cum[lay.name]
    if lay.preceding is None:
        return int(rows.sum()) * lay.fan_in * lay.kernel_size + (rows.sum() if lay.has_bias else 0)
    cols = cum[lay.preceding]
    factor = lay.fan_in // len(cols)
    n = sum(int(rows[i] and cols[j // factor]) for i in range(lay.units) for j in range(lay.fan_in))
    return n * lay.kernel_size + (int(rows.sum()) if lay.has_bias else 0)


@pytest.mark.parametrize("layers", [MLP, CONV], ids=["mlp", "conv"])
def test_untouched_weights_pass(tmp_path, layers):
    before, after = pair(tmp_path, layers)
    report = audit(before, after)
    assert report.ok and report.changed == 0
    assert [a.name for a in report.layers] == [lay.name for lay in layers]
    for lay, result in zip(layers, report.layers, strict=True):
        assert result.protected == protected_by_loops(before, lay)
    assert report.tasks == (0, 1)


def test_free_weights_may_change(tmp_path):
    masks = make_checkpoint().masks  # fc/0 unit 4 is free: its row may train

    def change(w):
        w["backbone.fc.0.weight"][4] += 1.0
        w["backbone.fc.0.bias"][4] = 7.0
        w["backbone.fc.1.weight"][:, 4] -= 2.0  # fc/1 inputs from the free unit

    before, after = pair(tmp_path, change=change, masks=masks)
    assert audit(before, after).ok


def test_changed_protected_weights_are_counted(tmp_path):
    masks = make_checkpoint().masks

    def change(w):
        w["backbone.fc.0.weight"][0, 2] += 0.5
        w["backbone.fc.0.weight"][1, 0] -= 0.25
        w["backbone.fc.0.bias"][3] += 2.0
        w["backbone.fc.2.weight"][2, 3] = np.nan

    before, after = pair(tmp_path, change=change, masks=masks)
    report = audit(before, after)
    fc0, fc1, fc2 = report.layers
    assert not report.ok and report.changed == 4
    assert (fc0.changed, fc1.changed, fc2.changed) == (3, 0, 1)
    assert fc0.max_abs_change == pytest.approx(2.0) and fc0.mean_abs_change == pytest.approx(
        2.75 / 3, rel=1e-6
    )
    assert np.isnan(fc2.max_abs_change)


def test_negative_zero_is_a_change(tmp_path):
    ckpt = make_checkpoint()
    zero = random_weights(ckpt)
    zero["backbone.fc.1.weight"][...] = 0.0
    negative = {k: v.copy() for k, v in zero.items()}
    negative["backbone.fc.1.weight"][...] = -0.0
    before = write_native(tmp_path / "before.safetensors", ckpt, zero)
    after = write_native(tmp_path / "after.safetensors", ckpt, negative)
    report = audit(open_checkpoint(before), open_checkpoint(after))
    fc1 = report.layers[1]
    assert fc1.changed == fc1.protected - 4  # every protected weight, none of the 4 biases
    assert fc1.max_abs_change == 0.0


def test_different_networks_are_refused(tmp_path):
    ckpt = make_checkpoint()
    before = write_native(tmp_path / "a.safetensors", ckpt)
    other = make_checkpoint(CONV, random_masks(CONV, [0]))
    after = write_native(tmp_path / "b.safetensors", other)
    with pytest.raises(CheckpointError, match="has no layer fc/0"):
        audit(open_checkpoint(before), open_checkpoint(after))


def test_changed_dtype_is_refused(tmp_path):
    ckpt = make_checkpoint()
    weights = random_weights(ckpt)
    doubled = {k: v.astype(np.float64) for k, v in weights.items()}
    before = write_native(tmp_path / "before.safetensors", ckpt, weights)
    after = write_native(tmp_path / "after.safetensors", ckpt, doubled)
    with pytest.raises(CheckpointError, match=r"layer fc/0: a tensor is float32\[5, 6\] in one"):
        audit(open_checkpoint(before), open_checkpoint(after))
