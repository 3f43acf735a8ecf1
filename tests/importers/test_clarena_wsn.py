"""CLArena's WSN, whose masks cover weights: files written by its own WSN module on a
WSNMaskMLP (tests/fixtures/peers/clarena-main/wsn_mlp), counted against brute force."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support.cli_runs import run as run_cli  # noqa: E402
from support.paths import PEERS  # noqa: E402
from support.tensor_bytes import with_tensor_bytes  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.model.checkpoint import Covers  # noqa: E402

FOLDER = PEERS / "clarena-main" / "wsn_mlp"
TRUTH = json.loads((PEERS / "clarena-main" / "truth.json").read_text())["wsn_mlp/cl_model.pth"]
SHAPES = {layer["name"]: tuple(layer["weight_shape"]) for layer in TRUTH["layers"]}


def _truth_mask(task: int, layer: str) -> np.ndarray:
    """The producer's mask of the layer's weight and bias: each unit's weights, then its
    bias (as hatinspect lays them out)."""
    weights = np.array(TRUTH["weight_masks"][str(task)][layer], dtype=bool)
    bias = np.array(TRUTH["bias_masks"][str(task)][layer], dtype=bool)
    return np.concatenate([weights.reshape(len(bias), -1), bias[:, None]], axis=1)


def _truth_weights(task: int, layer: str) -> np.ndarray:
    return _truth_mask(task, layer)[:, :-1].reshape(SHAPES[layer])


def _truth_bias(task: int, layer: str) -> np.ndarray:
    return _truth_mask(task, layer)[:, -1]


def test_the_masks_are_the_producers_weight_masks():
    checkpoint = hatinspect.open_checkpoint(FOLDER / "cl_model.pth")
    assert checkpoint.covers == Covers.PARAMETERS and checkpoint.task_ids == (1, 2, 3)
    assert TRUTH["requires_grad"]  # stored as tensors that require grad: values read anyway
    assert all(layer.bias_masked for layer in checkpoint.layers)
    for task in (1, 2, 3):
        for layer, (units, inputs) in SHAPES.items():
            assert checkpoint.masks[task][layer].shape == (units, inputs + 1)
            assert (checkpoint.masks[task][layer].astype(bool) == _truth_mask(task, layer)).all()
            assert _truth_bias(task, layer).any()  # the producer masks its biases
    union = {n: np.array(v, bool).reshape(SHAPES[n]) for n, v in TRUTH["cumulative_weight"].items()}
    assert all(((checkpoint.cumulative_mask()[n][:, :-1] > 0) == union[n]).all() for n in SHAPES)
    assert checkpoint.metadata["algorithm"] == "wsn"
    assert not any("differs" in note for note in checkpoint.notes)


def test_masks_capacity_and_overlap_count_weights_by_brute_force():
    checkpoint = hatinspect.open_checkpoint(FOLDER / "cl_model.pth")
    masks = hatinspect.masks(checkpoint)
    assert masks.entries == "weights"
    for layer in masks.layers:
        for task in (1, 2, 3):
            assert layer.active[task] == int(_truth_mask(task, layer.name).sum())
    report = hatinspect.capacity(checkpoint)
    owned = {n: np.zeros((s[0], s[1] + 1), bool) for n, s in SHAPES.items()}
    for step, task in zip(report.by_task, (1, 2, 3), strict=True):
        new = sum(int((_truth_mask(task, n) & ~owned[n]).sum()) for n in SHAPES)
        reused = sum(int((_truth_mask(task, n) & owned[n]).sum()) for n in SHAPES)
        for n in SHAPES:
            owned[n] |= _truth_mask(task, n)
        assert (step.new_params, step.reused_params) == (new, reused)
        assert step.params_protected == sum(int(o.sum()) for o in owned.values())
    # every weight and every bias is a parameter a mask covers
    assert report.total.params == sum(s[0] * (s[1] + 1) for s in SHAPES.values())
    used = sum(int(owned[n].any(axis=1).sum()) for n in SHAPES)  # a weight or bias kept
    assert report.total.units_used == used
    overlap = hatinspect.overlap(checkpoint)
    for a in (1, 2, 3):
        for b in (1, 2, 3):
            both = sum(int((_truth_mask(a, n) & _truth_mask(b, n)).sum()) for n in SHAPES)
            either = sum(int((_truth_mask(a, n) | _truth_mask(b, n)).sum()) for n in SHAPES)
            assert overlap.network.shared[a - 1, b - 1] == both
            assert overlap.network.jaccard[a - 1, b - 1] == pytest.approx(both / either)


def test_audit_finds_the_owned_weights_bit_identical_across_tasks():
    for t in (1, 2):
        before, after = (FOLDER / f"model_after_task_{k}.pth" for k in (t, t + 1))
        report = hatinspect.audit(before, after)
        owned = sum(
            int(np.logical_or.reduce([_truth_mask(k, n) for k in range(1, t + 1)]).sum())
            for n in SHAPES
        )
        assert report.ok and report.protected == owned and report.changed == 0


def _after_task_2_with(tmp_path, key_of, index, change: float):
    """The producer's file after task 2 with one entry of a layer's tensor moved by `change`
    in its zip record: ``key_of(layer)`` names the tensor (its weight or bias key)."""
    source = FOLDER / "model_after_task_2.pth"
    key = key_of(hatinspect.open_checkpoint(source).layer("fc/1"))
    tensor = hatinspect.checkpoints.read_tensors(source, [key])[key].astype(np.float32)
    moved = tensor.copy()
    moved[index] += change
    return with_tensor_bytes(source, tensor.tobytes(), moved.tobytes(), tmp_path / source.name)


def test_a_changed_owned_weight_fails_the_audit(tmp_path):
    # one weight that task 1 owns moved
    owned_weight = tuple(np.argwhere(_truth_mask(1, "fc/1"))[0])
    path = _after_task_2_with(tmp_path, lambda layer: layer.weight_key, owned_weight, 1.0)
    result = run_cli("audit", str(FOLDER / "model_after_task_1.pth"), str(path))
    owned = sum(int(_truth_mask(1, n).sum()) for n in SHAPES)  # task 1's weights and biases
    assert owned == 241 + sum(int(_truth_bias(1, n).sum()) for n in SHAPES)
    assert result.exit_code == 1 and f"1 of {owned} protected parameters changed" in result.output


def test_a_changed_owned_bias_fails_the_audit(tmp_path):
    # one bias that task 1's mask keeps moved: the biases WSN masks are protected
    unit = int(np.flatnonzero(_truth_bias(1, "fc/1"))[0])
    path = _after_task_2_with(tmp_path, lambda layer: layer.bias_key, unit, -0.5)
    report = hatinspect.audit(FOLDER / "model_after_task_1.pth", path)
    assert not report.ok and report.changed == 1
    assert report.max_abs_change == pytest.approx(0.5)
    assert [layer.changed for layer in report.layers] == [0, 1, 0]


def test_unit_analyses_say_in_one_line_that_these_masks_cover_weights():
    result = run_cli("measure", str(FOLDER / "cl_model.pth"), "-l", "fc/0")
    assert result.exit_code == 1 and "cover parameters, not units" in result.output


def test_convert_writes_the_masks_of_weights_packed(tmp_path):
    result = run_cli("convert", str(FOLDER / "cl_model.pth"), str(tmp_path / "w.safetensors"))
    assert result.exit_code == 0, result.output
    converted = hatinspect.open_checkpoint(tmp_path / "w.safetensors")
    assert converted.covers == "parameters"


def test_info_says_which_layers_masks_cover_their_biases():
    result = run_cli("info", str(FOLDER / "cl_model.pth"), "--format", "json")
    assert result.exit_code == 0, result.output
    layers = json.loads(result.stdout)["layers"]
    assert [(layer["name"], layer["bias_masked"]) for layer in layers] == [
        ("fc/0", True),
        ("fc/1", True),
        ("fc/2", True),
    ]


def _with_bias_masks(change):
    """The producer's object as unpickled, its ``bias_masks`` changed, imported again."""
    from hatinspect.importers import clarena_wsn
    from hatinspect.importers.dispatch import whole_object
    from hatinspect.importers.payload import load_payload

    path = FOLDER / "cl_model.pth"
    obj = load_payload(path, whole_object)
    state = obj.__dict__["state"]
    state["bias_masks"] = change(
        {task: dict(layers) for task, layers in state["bias_masks"].items()}
    )
    return clarena_wsn.import_wsn(path, obj, None, None).checkpoint


def test_layers_whose_biases_no_task_masks_keep_masks_of_their_weights():
    def without_fc2(masks):
        for layers in masks.values():
            layers["fc/2"] = None
        return masks

    checkpoint = _with_bias_masks(without_fc2)
    assert [layer.bias_masked for layer in checkpoint.layers] == [True, True, False]
    assert checkpoint.masks[1]["fc/2"].shape == SHAPES["fc/2"]
    assert (checkpoint.masks[2]["fc/2"].astype(bool) == _truth_weights(2, "fc/2")).all()
    assert any("the biases of fc/0, fc/1 are masked" in note for note in checkpoint.notes)
    assert _with_bias_masks(lambda masks: None).layers[0].bias_masked is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: {**m, 1: {**m[1], "fc/0": None}}, "for tasks [2, 3] only"),
        (lambda m: {**m, 1: {**m[1], "fc/0": torch.ones(5)}}, "not a tensor of shape (24,)"),
        (lambda m: {**m, 1: {**m[1], "fc/0": torch.full((24,), 0.5)}}, "fc/0"),
        (lambda m: {k: v for k, v in m.items() if k != 3}, "holds tasks [1, 2]"),
        (lambda m: [1, 2], "not a mapping of tasks"),
    ],
)
def test_malformed_bias_masks_are_one_line(change, message):
    with pytest.raises(hatinspect.CheckpointError, match=re.escape(message)) as error:
        _with_bias_masks(change)
    assert "\n" not in str(error.value)
