"""Avalanche's PackNet: state dicts written by its own PackNetModel
(tests/fixtures/peers/avalanche), counted against the producer's task_index buffers."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support.paths import PEERS  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.model.checkpoint import Covers  # noqa: E402

HERE = PEERS / "avalanche"
TRUTH = json.loads((HERE / "truth.json").read_text())
LAYERS = {"wrappee.features.0": "features/0", "wrappee.features.3.0": "features/3/0",
          "wrappee.classifier": "classifier"}  # fmt: skip


def _index(name, module):
    truth = TRUTH[name]
    return np.array(truth["task_index"][module]).reshape(truth["shapes"][module])


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_each_experience_uses_the_weights_it_or_an_earlier_one_owns(name):
    checkpoint = hatinspect.open_checkpoint(HERE / name)
    count = TRUTH[name]["task_count"]
    assert checkpoint.covers == Covers.PARAMETERS and checkpoint.task_ids == tuple(range(count))
    assert checkpoint.layer_names == list(LAYERS.values())
    for module, layer in LAYERS.items():
        index = _index(name, module)
        for task in range(count):  # brute force, weight by weight
            expected = [[int(v <= task) for v in row] for row in index.tolist()]
            assert checkpoint.masks[task][layer].tolist() == expected
    report = hatinspect.capacity(checkpoint)
    for step in report.by_task:
        owned = sum(int((_index(name, m) == step.task).sum()) for m in LAYERS)
        assert step.new_params == owned
    pruned = sum(int((_index(name, m) == 255).sum()) for m in LAYERS)
    assert any(f"{pruned:,} weights are pruned" in n for n in checkpoint.notes) == bool(pruned)


def test_the_audit_finds_every_owned_weight_frozen():
    for t in (0, 1):
        before, after = (HERE / f"packnet_after_exp_{k}.pt" for k in (t, t + 1))
        report = hatinspect.audit(before, after)
        owned = sum(int((_index(before.name, m) <= t).sum()) for m in LAYERS)
        assert report.ok and report.protected == owned and report.changed == 0


def _state(name):
    return torch.load(HERE / name, weights_only=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["wrappee.classifier.task_index"].fill_(7), "names experience 7"),
        (lambda s: s["wrappee.classifier._task_count"].fill_(5), "disagree"),
        (lambda s: s.__setitem__("wrappee.classifier.task_index",
                                 s["wrappee.classifier.task_index"].int()), "not a uint8"),
    ],
    ids=["index past the frozen", "counts disagree", "index dtype"],
)  # fmt: skip
def test_a_hostile_task_index_is_one_line_of_error(tmp_path, change, message):
    state = _state("packnet_after_exp_1.pt")
    change(state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(hatinspect.CheckpointError, match=message) as error:
        hatinspect.open_checkpoint(tmp_path / "bad.pt")
    assert "\n" not in str(error.value)


def test_a_moved_owned_weight_fails_the_audit(tmp_path):
    state = _state("packnet_after_exp_1.pt")
    owned = np.argwhere(_index("packnet_after_exp_1.pt", "wrappee.features.0") == 0)[0]
    state["wrappee.features.0.wrappee.weight"][tuple(owned)] += 1
    torch.save(state, tmp_path / "moved.pt")
    report = hatinspect.audit(HERE / "packnet_after_exp_0.pt", tmp_path / "moved.pt")
    assert not report.ok and report.changed == 1


def test_a_task_index_without_its_weight_is_one_line_of_error(tmp_path):
    state = _state("packnet_after_exp_1.pt")
    state["wrappee.features.9.task_index"] = state.pop("wrappee.features.0.task_index")
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(hatinspect.CheckpointError, match="has no weight beside it"):
        hatinspect.open_checkpoint(tmp_path / "bad.pt")


def test_the_owner_of_each_weight_is_its_task_index_and_draws(tmp_path):
    from hatinspect.analysis.masks import owners

    name = "packnet_after_exp_2.pt"
    report = hatinspect.masks(HERE / name)
    for layer, module in zip(report.layers, LAYERS, strict=True):
        index = _index(name, module)
        expected = np.where(index < TRUTH[name]["task_count"], index, -1)
        assert (owners(layer) == expected).all()
    figure = tmp_path / "owners.svg"
    result = hatinspect.masks(HERE / name, layer="features/*", heatmap=figure)
    assert result.entries == "weights" and "Owner of each weight" in figure.read_text()
