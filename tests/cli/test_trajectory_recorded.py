"""`trajectory` and `report` on a run that `train-demo --record-every 1` recorded: the settle
points and switches against plain loops over the gates read straight from the files, the
three ways to name the run, its figure and report section, and its errors in one line."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
from safetensors import safe_open
from support.cli_runs import modules_left_out, one_error_line, run, run_in_fresh_python
from support.paths import PEERS

import hatinspect
from hatinspect import api

pytestmark = pytest.mark.torch

TASKS = (1, 2, 3)
LAYERS = ("fc/0", "fc/1", "fc/2")
EPOCHS = 3
POINTS = [-1, *range(EPOCHS)]  # before training, then after each epoch


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recorded")
    result = run("train-demo", "-n", len(TASKS), "-e", EPOCHS, "--record-every", "1",
                 "-o", folder, "-q")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return folder


def raw_gates(folder, task: int) -> tuple[list[int], dict[str, list[list[float]]]]:
    """The record points and each layer's gates of a task, straight from its file."""
    with safe_open(folder / f"trajectory-task-{task}.safetensors", framework="numpy") as f:
        points = json.loads(f.metadata()["hatinspect.points"])
        gates = {layer: f.get_tensor(f"gate.{layer}").tolist() for layer in LAYERS}
    return points, gates


def plain(rows: list[list[float]], points: list[int]) -> dict:
    """Settle point, switches and units on, by loops over lists (on: gate above 0.5)."""
    binary = [[1 if g > 0.5 else 0 for g in row] for row in rows]
    settled = points[0]
    on, off = [], []
    for i in range(1, len(binary)):
        if binary[i] != binary[i - 1]:
            settled = points[i]
        on.append(sum(1 for a, b in zip(binary[i - 1], binary[i], strict=True) if b > a))
        off.append(sum(1 for a, b in zip(binary[i - 1], binary[i], strict=True) if b < a))
    return {"settled_after": settled, "switched_on": on, "switched_off": off,
            "active": [sum(row) for row in binary]}  # fmt: skip


def expected(folder) -> dict:
    by_layer = {}
    for task in TASKS:
        points, gates = raw_gates(folder, task)
        assert points == POINTS
        for layer in LAYERS:
            by_layer[(task, layer)] = plain(gates[layer], points)
    return by_layer


def test_the_folder_matches_plain_loops_over_the_files(recorded):
    result = run("trajectory", recorded, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["run"] == str(recorded) and document["unit"] == "epoch"
    assert document["tasks"] == list(TASKS) and document["curves"] == {}
    assert document["kept"] == {str(t): EPOCHS - 1 for t in TASKS}
    assert document["kept_by"] == "the last record"
    assert any("no per-epoch losses or accuracies" in note for note in document["notes"])
    truth = expected(recorded)
    found = {}
    for entry in document["layers"]:
        assert entry["points"] == POINTS and entry["units"] == 100
        found[(entry["task"], entry["layer"])] = {key: entry[key] for key in truth[(1, "fc/0")]}
    assert found == truth
    assert any(v["switched_off"] != [0] * EPOCHS for v in truth.values())  # not all still


@pytest.mark.parametrize("name", ["", "trajectory-task-2.safetensors", "after-task-3.safetensors"])
def test_the_folder_a_trajectory_file_and_a_checkpoint_read_alike(recorded, name):
    result = run("trajectory", recorded / name, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["run"] == str(recorded) and document["tasks"] == list(TASKS)
    truth = expected(recorded)
    assert {(x["task"], x["layer"]): x["settled_after"] for x in document["layers"]} == {
        key: value["settled_after"] for key, value in truth.items()
    }


def test_csv_has_a_row_a_task_layer_and_epoch(recorded):
    result = run("trajectory", recorded, "-t", "2", "-l", "fc/1", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    truth = expected(recorded)[(2, "fc/1")]
    assert [int(r["point"]) for r in rows] == POINTS
    assert [int(r["active"]) for r in rows] == truth["active"]
    assert [int(r["switched_on"]) for r in rows[1:]] == truth["switched_on"]
    assert {int(r["settled_after"]) for r in rows} == {truth["settled_after"]}


def test_the_table_says_what_the_files_lack(recorded):
    result = run("trajectory", recorded)
    assert result.exit_code == 0, result.stderr
    cells = [[c.strip() for c in line.strip("│").split("│")]
             for line in result.stdout.splitlines() if line.startswith("│ ")]  # fmt: skip
    found = {(int(c[0]), c[1]): int(c[3]) for c in cells if len(c) > 4}
    assert found == {key: value["settled_after"] for key, value in expected(recorded).items()}
    assert "no per-epoch losses or accuracies" in result.stderr
    assert f"the last record (task 1: epoch {EPOCHS - 1}" in result.stderr


def test_the_figure_is_a_png(recorded, tmp_path):
    figure = tmp_path / "x.png"
    result = run("trajectory", recorded, "--figure", figure)
    assert result.exit_code == 0, result.stderr
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {figure}" in result.stderr


def test_the_api_gives_the_report(recorded):
    report = hatinspect.trajectory(recorded, task=[1, 3], layer="fc/2")
    assert report.tasks == (1, 3) and [x.layer for x in report.layers] == ["fc/2", "fc/2"]
    truth = expected(recorded)
    for layer in report.layers:
        assert layer.settled_after == truth[(layer.task, "fc/2")]["settled_after"]
        assert list(layer.active) == truth[(layer.task, "fc/2")]["active"]
    assert report.curves == {} and report.kept == ((1, EPOCHS - 1), (3, EPOCHS - 1))


def test_the_last_record_is_the_mask_each_checkpoint_stores(recorded):
    """Independent of the reader: the stored uint8 masks against the last row's gates."""
    with safe_open(recorded / "after-task-3.safetensors", framework="numpy") as f:
        for task in TASKS:
            _, gates = raw_gates(recorded, task)
            for layer in LAYERS:
                stored = f.get_tensor(f"mask.{task}.{layer}").astype(bool)
                np.testing.assert_array_equal(stored, np.array(gates[layer][-1]) > 0.5)
    run_read = api.open_run(recorded)
    assert run_read.trajectories is not None
    assert not any("not this run's logs" in note for note in run_read.final.notes)


@pytest.mark.parametrize("suffix", ["html", "md"])
def test_the_report_has_the_section(recorded, tmp_path, suffix):
    output = tmp_path / f"report.{suffix}"
    result = run("report", recorded, "-o", output)
    assert result.exit_code == 0, result.stderr
    text = output.read_text()
    assert "Masks through training" in text and "no per-epoch losses or accuracies" in text
    truth = expected(recorded)
    if suffix == "md":
        assert (tmp_path / "report-figures" / "run1-trajectory.svg").is_file()
        for (task, layer), value in truth.items():
            assert f"| {task} | {layer} | 100 | {value['settled_after']} |" in text
    else:
        assert 'alt="Masks through training"' in text
        for (task, layer), value in truth.items():
            row = f'<tr><td>{task}</td><td class="text">{layer}</td><td>100</td>'
            assert f"{row}<td>{value['settled_after']}</td>" in text


def test_reading_recorded_files_leaves_torch_out(recorded):
    checkpoint = str(recorded / "after-task-3.safetensors")
    commands = [["trajectory", str(recorded), "-f", "json"], ["trajectory", checkpoint]]
    done = run_in_fresh_python(commands, modules_left_out("torch", "lightning"))
    assert done.returncode == 0, done.stderr


def test_a_folder_with_both_kinds_is_refused_in_one_line(recorded, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(recorded, both)
    shutil.copy(PEERS / "original-hat-logs" / "hat-mlp-np2-p5.pkz", both / "logs.pkz")
    for command in ("trajectory", "capacity"):
        one_error_line(
            run(command, both),
            "holds masks through training as original-hat-logs and recorded trajectory files",
        )


def test_a_checkpoint_without_recorded_files_is_one_line(recorded, tmp_path):
    shutil.copy(recorded / "after-task-3.safetensors", tmp_path / "after-task-3.safetensors")
    one_error_line(
        run("trajectory", tmp_path / "after-task-3.safetensors"),
        "a checkpoint without a file of masks through training beside it",
        "--record-every",
    )


def test_files_of_another_run_say_so(recorded, tmp_path):
    other = tmp_path / "other"
    result = run("train-demo", "-n", 1, "-e", 1, "--seed", 1, "--record-every", 1, "-o", other,
                 "-q")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    mixed = tmp_path / "mixed"
    shutil.copytree(recorded, mixed)
    shutil.copy(other / "trajectory-task-1.safetensors", mixed / "trajectory-task-1.safetensors")
    notes = api.open_run(mixed).final.notes
    assert any("task 1's mask of layer fc/0" in note and "differs" in note for note in notes)
