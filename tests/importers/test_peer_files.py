"""Files written by HAT-CL's and CLArena's own code: data flow, masks and numbers.

Ground truth is the producer's (``fixtures/peers/*.json``): its layers with the layer that
feeds each, and its own mask dicts. Counts are checked against plain loops
(``brute_force``), measures against a hatinspect backbone wired with the producer's flow.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support.brute_force import protected_params
from support.checkpoint_factories import PEERS, peer_truth, truth_masks
from support.cli_runs import run
from torch import nn

import hatinspect
from hatinspect.analysis.capacity import capacity
from hatinspect.analysis.measure import measure
from hatinspect.backbones.base import HATMaskBackbone

RESNETS = [
    "hatcl_resnet.pt",
    "clarena_hat_resnet_state.ckpt",
    "clarena_resnet_backbone_state.pt",
    "clarena_hat_resnet.pth",
    "clarena_adahat_resnet.pth",
]
SAVED_MODELS = [
    "clarena_hat_mlp.pth",
    "clarena_mlp_backbone.pth",
    "clarena_hat_resnet.pth",
    "clarena_adahat_resnet.pth",
]


def truth_flow(name: str) -> dict[str, str | None]:
    return {layer["name"]: layer["preceding"] for layer in peer_truth(name)["layers"]}


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in PEERS.iterdir():
        if path.suffix in (".pt", ".pth", ".ckpt"):
            shutil.copy(path, tmp_path / path.name)


@pytest.mark.parametrize("name", RESNETS)
def test_info_gives_each_layer_its_real_preceding_layer(name):
    result = run("info", name, "--format", "json")
    assert result.exit_code == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    assert {layer["name"]: layer["preceding"] for layer in layers} == truth_flow(name)
    assert [layer["name"] for layer in layers] == list(truth_flow(name))  # network order


@pytest.mark.parametrize("name", RESNETS)
def test_capacity_equals_a_brute_force_count_over_the_real_flow(name):
    checkpoint = hatinspect.open_checkpoint(name)
    masks = truth_masks(peer_truth(name))
    layers = [
        SimpleNamespace(
            name=layer["name"],
            units=layer["weight_shape"][0],
            weight_shape=tuple(layer["weight_shape"]),
            preceding=layer["preceding"],
            has_bias=checkpoint.layer(layer["name"]).has_bias,
        )
        for layer in peer_truth(name)["layers"]
    ]
    expected = protected_params(layers, masks, sorted(masks))
    got = {usage.name: usage.params_protected for usage in capacity(checkpoint).layers}
    assert got == expected


class FlowNet(HATMaskBackbone):
    """A hatinspect backbone with the producer's layers, wired with its data flow."""

    def __init__(self, layers: list[dict], biases: dict[str, bool]):
        super().__init__(None, "sigmoid")
        for layer in layers:
            shape = layer["weight_shape"]
            bias = biases[layer["name"]]
            module = (
                nn.Conv2d(shape[1], shape[0], tuple(shape[2:]), bias=bias)
                if len(shape) == 4
                else nn.Linear(shape[1], shape[0], bias=bias)
            )
            parent = self
            *path, leaf = layer["name"].split("/")
            for part in path:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            parent.add_module(leaf, module)
            self.register_weighted_layer(layer["name"], shape[0], layer["preceding"])


@pytest.mark.parametrize("name", RESNETS)
@pytest.mark.parametrize("aggregation", ["min", "max"])
def test_measure_equals_the_backbone_measure_of_an_equivalent_network(name, aggregation):
    checkpoint = hatinspect.open_checkpoint(name)
    truth = peer_truth(name)
    with torch.device("meta"):
        net = FlowNet(truth["layers"], {x.name: x.has_bias for x in checkpoint.layers})
    masks = truth_masks(truth)
    summative = {
        n: torch.tensor(sum(masks[t][n].astype(np.float32) for t in masks)) for n in net._preceding
    }
    for layer in net.weighted_layer_names:
        expected, _ = net.get_layer_measure_parameter_wise(summative, layer, aggregation)
        got = measure(checkpoint, layer, "summative", aggregation).weight
        np.testing.assert_array_equal(got, expected.numpy(), err_msg=layer)


@pytest.mark.parametrize("name", RESNETS)
def test_convert_then_info_keeps_the_flow_and_what_is_inferred(name, tmp_path):
    assert run("convert", name, "out.safetensors").exit_code == 0
    before = json.loads(run("info", name, "-f", "json").stdout)["layers"]
    after = json.loads(run("info", "out.safetensors", "-f", "json").stdout)["layers"]
    keys = ("name", "preceding", "preceding_inferred")
    assert [[x[k] for k in keys] for x in after] == [[x[k] for k in keys] for x in before]


def test_an_inferred_flow_is_flagged_in_json_noted_once_and_kept_by_convert():
    # HAT-CL's classifier after the pooled blocks: its input is not certain from the file
    result = run("capacity", "hatcl_resnet.pt", "-f", "json")
    document = json.loads(result.stdout)
    flags = {layer["name"]: layer["preceding_inferred"] for layer in document["layers"]}
    assert flags == {name: name == "fc" for name in truth_flow("hatcl_resnet.pt")}
    assert result.stderr.count("is inferred") == 1
    assert any("fc is inferred" in note for note in document["notes"])
    assert json.loads(run("measure", "hatcl_resnet.pt", "-l", "fc", "-f", "json").stdout)[
        "preceding_inferred"
    ]
    run("convert", "hatcl_resnet.pt", "n.safetensors")
    info = json.loads(run("info", "n.safetensors", "-f", "json").stdout)
    assert [x["name"] for x in info["layers"] if x["preceding_inferred"]] == ["fc"]


@pytest.mark.parametrize("name", SAVED_MODELS)
def test_saved_models_hold_every_task_mask_of_the_producer(name):
    checkpoint = hatinspect.open_checkpoint(name)
    truth = peer_truth(name)
    masks = truth_masks(truth)
    assert checkpoint.source == "clarena" and checkpoint.task_ids == tuple(sorted(masks))
    for task, by_layer in masks.items():
        for layer, mask in by_layer.items():
            np.testing.assert_array_equal(checkpoint.masks[task][layer], mask)
    if "cumulative" in truth:
        cumulative = checkpoint.cumulative_mask()
        for layer, mask in truth["cumulative"].items():
            np.testing.assert_array_equal(cumulative[layer], mask)
        assert checkpoint.metadata["clarena.algorithm"] == truth["algorithm"]
        heads = json.loads(checkpoint.metadata["clarena.heads"])
        assert heads == {task: shape for task, shape in truth["heads"].items() if task.isdigit()}
    if "summative" in truth:
        summative = checkpoint.summative_mask()
        for layer, mask in truth["summative"].items():
            np.testing.assert_array_equal(summative[layer], mask)


def test_string_task_keys_are_read_as_task_ids():
    # CLArena's AdaHAT keys backbone.masks by the task id's string
    assert set(peer_truth("clarena_adahat_resnet.pth")["masks"]) == {"1", "2"}
    assert hatinspect.open_checkpoint("clarena_adahat_resnet.pth").task_ids == (1, 2)


def test_a_stored_cumulative_mask_that_disagrees_is_a_note(monkeypatch):
    from hatinspect.importers.safety import unpickler

    def tampered(path):
        algorithm = load(path)
        cumulative = algorithm.__dict__["state"]["cumulative_mask_for_previous_tasks"]
        cumulative["fc/1"] = torch.zeros_like(cumulative["fc/1"])
        return algorithm

    load = unpickler.load_saved_object
    monkeypatch.setattr("hatinspect.importers.payload.load_saved_object", tampered)
    checkpoint = hatinspect.open_checkpoint("clarena_hat_mlp.pth")
    (note,) = [n for n in checkpoint.notes if "cumulative_mask_for_previous_tasks" in n]
    assert "fc/1" in note and "fc/0" not in note
    # the per-task masks are still the ones used
    np.testing.assert_array_equal(
        checkpoint.cumulative_mask()["fc/1"],
        peer_truth("clarena_hat_mlp.pth")["cumulative"]["fc/1"],
    )


BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"clarena", "lightning", "pytorch_lightning", "hydra",
                                  "omegaconf", "lightning_fabric"}:
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Blocker())
import hatinspect
for name in sys.argv[1:]:
    checkpoint = hatinspect.open_checkpoint(name)
    print(name, list(checkpoint.task_ids))
blocked = [m for m in sys.modules if m.split(".")[0] in {"clarena", "lightning", "hydra"}]
print("imported:", blocked)
"""


def test_saved_models_open_where_their_producers_cannot_be_imported():
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, *SAVED_MODELS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "imported: []"
    for name, line in zip(SAVED_MODELS, lines, strict=False):
        assert line == f"{name} {sorted(int(t) for t in peer_truth(name)['masks'])}"


def test_a_whole_object_that_is_not_a_clarena_model_is_refused_with_a_hint():
    torch.save(nn.Linear(2, 3), "linear.pt")
    result = run("info", "linear.pt")
    assert result.exit_code == 1
    assert "torch.nn.modules.linear.Linear" in result.stderr
    assert "torch.save(model.state_dict(), ...)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_task_id_names_the_task_of_a_file_with_one_embedding():
    bare = "clarena_resnet_backbone_state.pt"
    unnamed = run("capacity", bare, "-f", "json")
    assert json.loads(unnamed.stdout)["tasks"] == [1] and "--task-id" in unnamed.stderr
    named = run("capacity", bare, "--task-id", "3", "-f", "json")
    document = json.loads(named.stdout)
    assert document["tasks"] == [3] and not any("--task-id" in n for n in document["notes"])
    assert run("info", bare, "--source", "clarena", "-f", "json").exit_code == 0
    truth = truth_masks(peer_truth(bare))[3]
    checkpoint = hatinspect.open_checkpoint(bare, task_id=3)
    for layer, mask in truth.items():
        np.testing.assert_array_equal(checkpoint.masks[3][layer], mask)
    # a file that records its tasks takes no task id
    for name in ("hatcl_resnet.pt", "clarena_hat_mlp.pth"):
        refused = run("info", name, "--task-id", "2")
        assert refused.exit_code == 1 and "task id" in refused.stderr


def test_lightning_checkpoints_take_their_task_from_the_heads():
    checkpoint = hatinspect.open_checkpoint("clarena_hat_resnet_state.ckpt", source="clarena")
    assert checkpoint.task_ids == (3,)


@pytest.mark.parametrize(
    "command",
    [
        ("masks",),
        ("capacity",),
        ("measure", "-l", "conv1"),
        ("overlap",),
        ("info",),
    ],
)
def test_every_json_output_carries_the_notes(command):
    result = run(command[0], "clarena_hat_resnet_state.ckpt", *command[1:], "-f", "json")
    assert result.exit_code == 0, result.stderr
    notes = json.loads(result.stdout)["notes"]
    assert any("earlier tasks' are not in the file" in note for note in notes)


def test_audit_json_carries_the_notes():
    name = "clarena_hat_resnet_state.ckpt"
    notes = json.loads(run("audit", name, name, "-f", "json").stdout)["notes"]
    assert any("earlier tasks' are not in the file" in note for note in notes)


def test_a_native_file_takes_no_task_id():
    assert run("convert", "clarena_hat_mlp.pth", "n.safetensors").exit_code == 0
    refused = run("info", "n.safetensors", "--task-id", "1")
    assert refused.exit_code == 1 and "task_id does not apply" in refused.stderr


def test_the_info_table_marks_an_inferred_preceding_layer():
    result = run("info", "hatcl_resnet.pt")
    assert result.exit_code == 0
    assert "(inferred)" in result.stdout
    assert result.stdout.count("(inferred)") == 1
