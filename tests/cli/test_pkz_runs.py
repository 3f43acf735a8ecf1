"""The original HAT code's .pkz logs alone: compare and report (the logged accuracy), info,
masks, capacity and overlap (the units at each task's kept epoch, parameters shown as
unknown, one note saying why); the commands that read weights refuse them in one line."""

import json

import pytest
from support.cli_runs import modules_left_out, one_error_line, run, run_in_fresh_python
from support.paths import PEERS, REPO

import hatinspect
from hatinspect.model.errors import CheckpointError, HatinspectError

FILE = PEERS / "original-hat-logs" / "hat-mlp-np2-p5.pkz"
TRUTH = json.loads((PEERS / "original-hat-logs" / "truth-hat-mlp-np2-p5.json").read_text())
TOY = REPO / "examples" / "hat-toy"
NOTE = "the logs hold no weights"


def test_compare_json_has_the_accuracy_and_nulls_for_parameters():
    result = run("compare", FILE, TOY, "-f", "json")
    assert result.exit_code == 0, result.stderr
    logs, toy = json.loads(result.stdout)["runs"]
    assert logs["accuracy_matrix"]["rows"] == TRUTH["accuracy"]
    last = logs["by_task"][-1]
    assert last["accuracy"] == sum(TRUTH["accuracy"][-1]) / 3
    assert [last[key] for key in ("params", "params_protected", "param_usage")] == [None] * 3
    assert toy["by_task"][-1]["params"] > 0
    assert result.stderr.count(NOTE) == 1


def test_compare_table_shows_unknown_parameters_as_a_dash():
    result = run("compare", FILE, TOY, COLUMNS="160")  # one table, unfolded
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "hat-mlp-np2-p5.pkz" in line]
    task_rows = [line for line in rows if line.startswith("│ task")]
    assert len(task_rows) == 3
    for line in task_rows:
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        assert cells[3] == "-"  # params protected
    first = [cell.strip() for cell in task_rows[0].split("│")[1:-1]]
    units = sum(sum(1 for g in row if g > 0.5) for row in _kept_rows(0))
    assert first[2].startswith(f"{units} (")


def _kept_rows(task: int) -> list[list[float]]:
    entry = TRUTH["tasks"][str(task)]
    row = entry["epochs"].index(entry["best_epoch"])
    return [layer["gates"][row] for layer in entry["layers"].values()]


def test_report_of_the_logs_alone(tmp_path):
    for name in ("report.md", "report.html"):
        result = run("report", FILE, "-o", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        text = (tmp_path / name).read_text()
        assert "Accuracy" in text and "Masks through training" in text


LOGS = ("hat-mlp-np2-p5", "hat-alexnet-np2-p5", "hat-mlp-np1-p4")


def truth_units(name: str) -> dict[int, list[list[bool]]]:
    """By task, each layer's units (in the logs' order): its gates above 0.5 at the kept
    epoch, the best-validation one, from the truth file the original code's run wrote."""
    truth = json.loads((PEERS / "original-hat-logs" / f"truth-{name}.json").read_text())
    units = {}
    for t, entry in truth["tasks"].items():
        row = entry["epochs"].index(entry["best_epoch"])
        layers = [entry["layers"][str(i)] for i in range(len(entry["layers"]))]
        units[int(t)] = [_above_a_half(layer, row) for layer in layers]
    return units


def _above_a_half(layer: dict, row: int) -> list[bool]:
    if "gates" in layer:
        return [gate > 0.5 for gate in layer["gates"][row]]
    # a wide layer: the truth file keeps each record's gates > 0.5 as a string of 0 and 1
    return [bit == "1" for bit in layer["binary"][row]]


def json_of(*args) -> dict:
    result = run(*args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count(NOTE) == 1
    return json.loads(result.stdout)


def test_info_says_what_the_logs_are():
    document = json_of("info", FILE)
    assert document["source"] == "original-hat-logs"
    assert document["tasks"] == [0, 1, 2]
    assert [layer["name"] for layer in document["layers"]] == ["fc1", "fc2"]
    for layer in document["layers"]:
        assert layer["units"] == 12
        assert layer["params"] is None and layer["weight_shape"] is None
    best = {t: e["best_epoch"] for t, e in TRUTH["tasks"].items()}
    kept = document["metadata"]["kept"]
    assert kept.startswith("the epoch of the least validation loss")
    assert all(f"task {t}: {epoch}" in kept for t, epoch in best.items())
    table = run("info", FILE, "-v", COLUMNS="160")
    assert table.exit_code == 0 and "original-hat-logs" in table.stdout
    assert "read by the .pkz logs' reader" in table.stderr


@pytest.mark.parametrize("name", LOGS)
def test_masks_counts_the_gates_above_a_half_at_the_kept_epoch(name):
    units = truth_units(name)
    document = json_of("masks", PEERS / "original-hat-logs" / f"{name}.pkz")
    assert document["tasks"] == sorted(units)
    for i, layer in enumerate(document["layers"]):
        assert layer["units"] == len(units[0][i])
        for t, by_layer in units.items():
            assert layer["tasks"][str(t)]["active"] == sum(by_layer[i])
        union = [any(by_layer[i][u] for by_layer in units.values()) for u in range(layer["units"])]
        assert layer["cumulative"]["active"] == sum(union)


@pytest.mark.parametrize("name", LOGS)
def test_capacity_counts_units_and_leaves_parameters_unknown(name):
    units = truth_units(name)
    document = json_of("capacity", PEERS / "original-hat-logs" / f"{name}.pkz")
    used = 0
    for i, layer in enumerate(document["layers"]):
        union = sum(any(column) for column in zip(*(by[i] for by in units.values()), strict=True))
        assert layer["units_used"] == union and layer["units"] == len(units[0][i])
        assert [layer[k] for k in ("params", "params_protected", "param_usage")] == [None] * 3
        used += union
    assert document["total"]["units_used"] == used


def test_capacity_of_one_file_has_no_file_by_file_table():
    """A .pkz alone is a run of one file: its table would repeat the total."""
    table = run("capacity", FILE)
    assert table.exit_code == 0, table.stderr
    assert "Per task" in table.stdout and "File by file" not in table.stdout


@pytest.mark.parametrize("name", LOGS)
def test_overlap_counts_shared_units_by_brute_force(name):
    units = truth_units(name)
    flat = {t: [unit for layer in by_layer for unit in layer] for t, by_layer in units.items()}
    document = json_of("overlap", PEERS / "original-hat-logs" / f"{name}.pkz")
    tasks = document["tasks"]
    for a, ta in enumerate(tasks):
        for b, tb in enumerate(tasks):
            both = sum(x and y for x, y in zip(flat[ta], flat[tb], strict=True))
            either = sum(x or y for x, y in zip(flat[ta], flat[tb], strict=True))
            assert document["network"]["shared"][a][b] == both
            assert document["network"]["union"][a][b] == either


@pytest.mark.parametrize(
    "args",
    [("measure", FILE, "-l", "fc1"), ("audit", FILE, FILE), ("convert", FILE, "out.safetensors")],
    ids=["measure", "audit", "convert"],
)
def test_what_reads_weights_refuses_the_logs_in_one_line(args, tmp_path):
    args = tuple(tmp_path / a if a == "out.safetensors" else a for a in args)
    result = run(*args, "-q")
    assert result.exit_code == 1
    one_error_line(result, NOTE, "masks, capacity, overlap")


def test_open_checkpoint_reads_the_logs():
    checkpoint = hatinspect.open_checkpoint(FILE)
    assert checkpoint.source == "original-hat-logs" and not checkpoint.weights_known
    assert checkpoint.task_ids == (0, 1, 2)
    units = truth_units("hat-mlp-np2-p5")
    for t, by_layer in units.items():
        for i, name in enumerate(checkpoint.layer_names):
            assert checkpoint.masks[t][name].tolist() == [int(u) for u in by_layer[i]]


def test_the_logs_are_inspected_without_torch():
    commands = [[name, str(FILE), "-f", "json", "-q"] for name in ("info", "masks", "capacity")]
    commands.append(["overlap", str(FILE), "-q"])
    result = run_in_fresh_python(commands, modules_left_out("torch", "matplotlib"))
    assert result.returncode == 0, result.stderr


def test_open_checkpoint_refuses_options_the_logs_do_not_take():
    with pytest.raises(CheckpointError, match="not a hat-cl file"):
        hatinspect.open_checkpoint(FILE, source="hat-cl")
    with pytest.raises(CheckpointError, match="do not apply"):
        hatinspect.open_checkpoint(FILE, task_id=1)
    with pytest.raises(HatinspectError, match=NOTE):
        hatinspect.measure(FILE, "fc1")
