"""Command-line conventions and honest options: help, usage errors, safe outputs, layer
names, capacity's selections and what a fine-tuning run protects."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from support.cli_runs import one_error_line, run, write_examples
from support.inspect_checkpoints import (
    MLP,
    MLP_MASKS,
    make_checkpoint,
    resnet152_layers,
    write_native,
)

import hatinspect
from hatinspect.analysis.select import find_layer

COMMANDS = ["masks", "capacity", "measure", "overlap", "audit", "convert", "info", "train-demo"]


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)


def _help(*args: str, columns: str = "100") -> str:
    result = run(*args, "-h", COLUMNS=columns)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_short_help_completion_and_no_bool_placeholders():
    root = _help()
    assert "--install-completion" in root and "--show-completion" in root
    for command in COMMANDS:
        text = _help(command)
        assert "<bool>" not in text, command
        assert "Example" in text, command  # an example or two in each command's help


def test_choices_wrap_between_words_not_inside_them():
    text = _help("train-demo", columns="60")
    words = set(text.replace("│", " ").replace("|", " ").split())
    assert {"hat", "adahat", "finetuning", "mlp", "resnet18", "toy", "digits"} <= words


def test_capacity_help_explains_network_sparsity():
    text = " ".join(_help("capacity").split())
    assert "network sparsity, AdaHAT's share of the still-free units" in text


@pytest.mark.parametrize(
    "args",
    [
        ["masks", "net.safetensors", "--frobnicate"],
        ["measure", "net.safetensors"],
        ["capacity", "net.safetensors", "--width", "3"],
        pytest.param(["train-demo", "-e", "0"], marks=pytest.mark.torch),  # like -n 0
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args):
    result = run(*args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "HATINSPECT_DEBUG" not in line and result.stdout == ""


def test_unexpected_errors_offer_the_traceback_and_expected_ones_do_not(monkeypatch):
    from hatinspect.analysis import masks

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(masks, "summarise_masks", broken)
    result = run("masks", "net.safetensors")
    assert result.exit_code == 1
    one_error_line(result, "unexpected RuntimeError: a bug", "HATINSPECT_DEBUG=1")
    missing = run("info", "missing.safetensors")
    assert missing.exit_code == 1 and "HATINSPECT_DEBUG" not in missing.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["measure", "net.safetensors", "-l", "fc/0", "--save", "net.safetensors", "--force"],
        ["measure", "net.safetensors", "-l", "fc/0", "--save", "./sub/../net.safetensors"],
        pytest.param(
            ["convert", "net.safetensors", "net.safetensors", "--force"], marks=pytest.mark.torch
        ),
    ],
)
def test_an_output_that_is_an_input_is_refused_even_with_force(tmp_path, args):
    (tmp_path / "sub").mkdir()
    before = (tmp_path / "net.safetensors").read_bytes()
    result = run(*args)
    assert result.exit_code == 2
    one_error_line(result, "is an input of this command")
    assert (tmp_path / "net.safetensors").read_bytes() == before


def test_failed_writes_never_name_the_temporary_file(tmp_path, monkeypatch):
    from hatinspect.render import files

    def no_room(path, write, verify=None):
        return original(path, lambda temporary: _raise(temporary), verify)

    def _raise(temporary):
        raise OSError(28, "No space left on device", temporary)

    original = files.write_atomically
    monkeypatch.setattr(files, "write_atomically", no_room)
    result = run("measure", "net.safetensors", "-l", "fc/0", "--save", "m.safetensors")
    line = one_error_line(result, "cannot write m.safetensors: No space left on device")
    assert ".tmp" not in line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.torch
def test_train_demo_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "after-task-1.safetensors").write_bytes(b"another run")
    result = run("train-demo", "-n", "1", "-e", "1", "-o", "run")
    assert result.exit_code == 2
    one_error_line(result, "run already holds files", "--force")
    assert (tmp_path / "run" / "after-task-1.safetensors").read_bytes() == b"another run"


def test_measure_layer_accepts_dotted_names_and_a_glob_with_one_match(tmp_path):
    checkpoint = make_checkpoint(resnet152_layers(), {})
    assert find_layer(checkpoint, "conv5x.0.conv2").name == "conv5x/0/conv2"
    assert find_layer(checkpoint, "conv5x/2/conv3").name == "conv5x/2/conv3"
    assert find_layer(checkpoint, "conv5x/0/short*").name == "conv5x/0/shortcut"
    result = run("measure", "net.safetensors", "-l", "fc.1", "--format", "json")
    assert json.loads(result.stdout)["layer"] == "fc/1"
    assert json.loads(run("measure", "net.safetensors", "-l", "*2", "-f", "json").stdout)[
        "layer"
    ] == ("fc/2")
    several = run("measure", "net.safetensors", "-l", "fc/*")
    assert several.exit_code == 1
    one_error_line(several, "'fc/*' matches 3 layers", "fc/0, fc/1, fc/2", "give one")


def _protected(tasks, layers) -> dict[str, int]:
    """Brute force on the MLP: weight (i, j) is protected when unit i and input j are both
    used by one of `tasks` (the first layer's inputs always count); bias i when i is."""
    used = {
        lay.name: np.array(
            [any(MLP_MASKS[t][lay.name][u] for t in tasks) for u in range(lay.units)]
        )
        for lay in MLP
    }
    counts = {}
    for lay in MLP:
        inputs = used[lay.preceding] if lay.preceding else np.ones(lay.fan_in, bool)
        weights = sum(
            1
            for i in range(lay.units)
            for j in range(lay.fan_in)
            if used[lay.name][i] and inputs[j]
        )
        counts[lay.name] = weights + (int(used[lay.name].sum()) if lay.has_bias else 0)
    return {name: counts[name] for name in layers}


@pytest.mark.parametrize(
    ("args", "tasks", "layers"),
    [
        (["-t", "1", "-t", "4"], (1, 4), ("fc/0", "fc/1", "fc/2")),
        (["-l", "fc/1"], (1, 2, 4), ("fc/1",)),
        (["-x", "fc/0", "-t", "2"], (2,), ("fc/1", "fc/2")),
    ],
)
def test_capacity_chooses_tasks_and_layers(args, tasks, layers):
    doc = json.loads(run("capacity", "net.safetensors", *args, "-f", "json").stdout)
    expected = _protected(tasks, layers)
    assert doc["tasks"] == list(tasks)
    assert {row["name"]: row["params_protected"] for row in doc["layers"]} == expected
    assert doc["total"]["params_protected"] == sum(expected.values())
    total_params = sum(lay.params for lay in MLP if lay.name in layers)
    assert doc["by_task"][-1]["param_usage"] == pytest.approx(sum(expected.values()) / total_params)


def test_fine_tuning_protects_nothing(tmp_path):
    ones = {t: {lay.name: [1] * lay.units for lay in MLP} for t in (1, 2)}
    write_native(
        tmp_path / "ft.safetensors",
        make_checkpoint(MLP, ones),
        metadata={"algorithm": "finetuning"},
    )
    table = run("capacity", "ft.safetensors")
    assert table.exit_code == 0
    assert "no masks: nothing is protected" in table.stdout and "100" not in table.stdout
    assert json.loads(run("capacity", "ft.safetensors", "-f", "json").stdout)["protects"] is False
    hat = json.loads(run("capacity", "net.safetensors", "-f", "json").stdout)
    assert hat["protects"] is True and not math.isclose(hat["total"]["param_usage"], 0)


def test_no_command_shows_the_help_without_an_error_line():
    result = run()
    assert result.exit_code == 2
    assert "Usage: hatinspect" in result.stdout and "error:" not in result.stderr


def test_every_view_of_a_fine_tuning_run_says_nothing_is_protected(tmp_path):
    ones = {t: {lay.name: [1] * lay.units for lay in MLP} for t in (1, 2)}
    path = tmp_path / "ft.safetensors"
    write_native(path, make_checkpoint(MLP, ones), metadata={"algorithm": "finetuning"})
    doc = json.loads(run("capacity", str(path), "-f", "json").stdout)
    for usage in (*doc["layers"], doc["total"]):
        assert (usage["params_protected"], usage["param_usage"], usage["free"]) == (0, 0.0, 1.0)
    assert [step["param_usage"] for step in doc["by_task"]] == [0.0, 0.0]
    rows = list(csv.DictReader(io.StringIO(run("capacity", str(path), "-f", "csv").stdout)))
    assert {(row["params_protected"], row["free"]) for row in rows} == {("0", "1.0")}
    growth = run("capacity", str(path), "-f", "csv", "--by-task").stdout
    assert {row["params_protected"] for row in csv.DictReader(io.StringIO(growth))} == {"0"}
    assert hatinspect.capacity(path).total.params_protected == 0
    assert run("capacity", str(path), "--fail-above", "0.5").exit_code == 0


@pytest.mark.parametrize("columns", ["²", "9" * 5000, "80x", ""])
def test_a_columns_or_lines_that_is_no_number_is_ignored(columns):
    """rich takes ``COLUMNS``/``LINES`` for the terminal's size (``int()`` of "²", which
    ``str.isdigit`` accepts, raises): such a value counts as unset."""
    result = run("masks", "net.safetensors", COLUMNS=columns, LINES=columns)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "" and "fc/0" in result.stdout
