"""A live backbone goes to every inspection function as a file of it would, read as it is
at the call: the masks it stores now, the weights it holds now."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import torch
from support.cli_runs import run
from support.paths import REPO

import hatinspect
from hatinspect.backbones.mlp import HATMaskMLP
from hatinspect.model.errors import CheckpointError

pytestmark = pytest.mark.torch
TOY = REPO / "examples" / "hat-toy"
# hand-picked masks of a 4 -> 3 -> 2 MLP: task -> layer -> 0/1 per unit
MASKS = {
    0: {"fc/0": [1, 1, 0], "fc/1": [1, 0]},
    1: {"fc/0": [0, 1, 1], "fc/1": [1, 1]},
}


def small_net() -> HATMaskMLP:
    torch.manual_seed(0)
    net = HATMaskMLP(4, [3], 2, "sigmoid")
    net.restore_masks(
        {
            t: {name: torch.tensor(m, dtype=torch.float32) for name, m in layers.items()}
            for t, layers in MASKS.items()
        }  # fmt: skip
    )
    return net


def without_paths(document: dict) -> dict:
    """A JSON document less the names of the files it came from."""
    text = json.dumps(document)
    for path in (str(TOY / "after-task-3.safetensors"),):
        text = text.replace(json.dumps(path)[1:-1], "FILE")
    document = json.loads(text)
    document.pop("checkpoint", None)
    return document


def test_a_loaded_backbone_reads_as_its_file():
    path = TOY / "after-task-3.safetensors"
    net = hatinspect.load_backbone(path)
    for name in ("masks", "capacity", "overlap"):
        function = getattr(hatinspect, name)
        assert without_paths(function(net).to_dict()) == without_paths(function(path).to_dict())
    live = hatinspect.measure(net, "fc/1").to_dict()
    assert without_paths(live) == without_paths(hatinspect.measure(path, "fc/1").to_dict())


def test_the_masks_it_stores_now_are_counted():
    report = hatinspect.masks(small_net())
    by_layer = {layer.name: layer for layer in report.layers}
    assert report.tasks == (0, 1)
    assert dict(by_layer["fc/0"].active) == {0: 2, 1: 2}
    assert by_layer["fc/0"].cumulative == 3  # units 0, 1, 2
    assert dict(by_layer["fc/1"].active) == {0: 1, 1: 2} and by_layer["fc/1"].cumulative == 2


def test_the_audit_sees_a_protected_weight_move(tmp_path):
    net = small_net()
    before = tmp_path / "before.safetensors"
    hatinspect.save_checkpoint(before, net)
    assert hatinspect.audit(before, net).ok
    with torch.no_grad():
        net.get_layer_by_name("fc/1").weight[0, 1] += 1.0  # unit 0 of fc/1, fed by fc/0 unit 1
        net.get_layer_by_name("fc/1").weight[1, 2] += 1.0  # unit 1 of fc/1: also protected
    report = hatinspect.audit(before, net)
    assert not report.ok and report.changed == 2
    assert hatinspect.audit(net, net).ok


def test_compare_and_report_take_one_too():
    net = hatinspect.load_backbone(TOY / "after-task-2.safetensors")
    comparison = hatinspect.compare(net, TOY)
    assert [len(run.steps) for run in comparison.runs] == [2, 5]
    report = hatinspect.report(net)
    assert report.runs[0].capacity.tasks == (1, 2)


def test_a_module_that_is_no_backbone_is_refused_in_one_line():
    with pytest.raises(CheckpointError, match="a Linear is not a backbone hatinspect can"):
        hatinspect.capacity(torch.nn.Linear(2, 2))


def test_the_snapshot_goes_with_its_checkpoint():
    checkpoint = hatinspect.info(small_net())
    folder = Path(checkpoint.path).parent
    assert folder.is_dir()
    del checkpoint
    gc.collect()
    assert not folder.exists()


def test_the_command_line_sees_the_same_masks(tmp_path):
    net = small_net()
    hatinspect.save_checkpoint(tmp_path / "net.safetensors", net)
    cli = run("masks", tmp_path / "net.safetensors", "--format", "json")
    document = json.loads(cli.stdout)
    live = hatinspect.masks(net).to_dict()
    assert live["layers"] == document["layers"]
