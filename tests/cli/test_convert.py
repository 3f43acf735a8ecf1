"""convert, and the data commands on imported (foreign) checkpoints."""

import json
import shutil

import numpy as np
import pytest
from support.checkpoint_factories import PEERS, original_hat_state, torch_save
from support.cli_runs import one_error_line, run, write_examples

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)


@pytest.fixture
def original_hat(tmp_path):
    state, masks = original_hat_state(n_tasks=3)
    return torch_save(tmp_path / "hat.pt", state), masks


def test_convert_writes_a_native_file(original_hat):
    _, masks = original_hat
    result = run("convert", "hat.pt", "hat.safetensors")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "wrote hat.safetensors" in result.stderr and "original-hat" in result.stderr
    doc = json.loads(run("masks", "hat.safetensors", "--format", "json").stdout)
    assert doc["tasks"] == [0, 1, 2]
    for layer in doc["layers"]:
        for task in (0, 1, 2):
            assert layer["tasks"][str(task)]["active"] == int(np.sum(masks[task][layer["name"]]))


def test_convert_refuses_to_overwrite(original_hat):
    assert run("convert", "hat.pt", "out.safetensors").exit_code == 0
    result = run("convert", "hat.pt", "out.safetensors")
    assert result.exit_code == 2  # an output that exists without --force: a usage error
    one_error_line(result, "out.safetensors already exists", "--force", "choose another DST")
    assert run("convert", "hat.pt", "out.safetensors", "--force").exit_code == 0


def test_convert_of_a_native_file_is_refused():
    result = run("convert", "net.safetensors", "copy.safetensors")
    assert result.exit_code == 1
    one_error_line(result, "already a native hatinspect file")


@pytest.mark.parametrize(
    "command", [["masks"], ["capacity"], ["overlap"], ["info"], ["measure", "-l", "fc1"]]
)
def test_data_commands_read_foreign_files(original_hat, command):
    result = run(command[0], "hat.pt", *command[1:], "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["schema"] == 1


def test_a_forced_source_that_does_not_fit_is_one_error(original_hat):
    result = run("masks", "hat.pt", "--source", "hat-cl")
    assert result.exit_code == 1
    one_error_line(result)


def test_recovery_notes_reach_stderr_and_json(tmp_path):
    shutil.copy(PEERS / "clarena_hat_resnet_state.ckpt", tmp_path / "clarena.pt")
    result = run("capacity", "clarena.pt", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("note: ") and "current task's embedding" in result.stderr
    document = json.loads(result.stdout)
    assert document["tasks"] == [3]
    assert any("earlier tasks' are not in the file" in note for note in document["notes"])


@pytest.mark.torch
def test_a_state_dict_of_a_hatinspect_backbone_says_save_checkpoint_keeps_every_task(tmp_path):
    import torch

    from hatinspect.backbones import HATMaskMLP

    net = HATMaskMLP(8, [6, 5], 4, gate="sigmoid")
    for task in (0, 1, 2):
        net.setup_task_id(task)
        net.initialise_task_embedding("N01")
        net.store_mask()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    result = run("info", tmp_path / "net.pt")
    assert result.exit_code == 0, result.stderr
    note = next(line for line in result.stderr.splitlines() if "state dict" in line)
    assert "holds only the current task's embedding" in note
    assert "hatinspect.save_checkpoint keeps every task's" in note
    assert "clarena state" not in result.stderr.lower()
