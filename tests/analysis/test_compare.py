"""compare and capacity on runs, against figures worked out by hand."""

import csv
import io
import json

import numpy as np
import pytest
from support.cli_runs import one_error_line, run
from support.inspect_checkpoints import layer, make_checkpoint, write_native

import hatinspect
from hatinspect.model.errors import CheckpointError

# fc/0: 4 inputs -> 3 units; fc/1: 3 -> 2 units; both with bias. 5 units, 23 parameters.
NET = (layer("fc/0", (3, 4)), layer("fc/1", (2, 3), "fc/0"))
MASKS = {
    1: {"fc/0": [1, 0, 0], "fc/1": [1, 0]},
    2: {"fc/0": [1, 1, 0], "fc/1": [0, 1]},
    3: {"fc/0": [0, 0, 1], "fc/1": [1, 1]},
}
ACCURACY = [[0.9], [0.8, 0.7], [0.6, 0.5, 1.0]]

# By hand. Units used after each task: 1+1, 2+2, 3+2. New units: 2, 2, 1; reused: 0, 1, 2.
# Free before: 5, 3, 1, so network sparsity 2/5, 2/3, 1/1.
# Protected: fc/0 used*4 inputs + used biases; fc/1 used*used(fc/0) + used biases:
#   task 1: 4+1 + 1+1 = 7; task 2: 8+2 + 4+2 = 16; task 3: 12+3 + 6+2 = 23.
# Accuracy after t: mean of row t: 0.9, 0.75, 0.7. Forgetting after t: none, then
#   (0.9-0.8) = 0.1, then ((max(0.9, 0.8)-0.6) + (0.7-0.5)) / 2 = 0.25.
EXPECTED = [
    dict(task=1, units_used=2, params_protected=7, new_units=2, reused_units=0,
         network_sparsity=0.4, accuracy=0.9, forgetting=None),
    dict(task=2, units_used=4, params_protected=16, new_units=2, reused_units=1,
         network_sparsity=2 / 3, accuracy=0.75, forgetting=0.1),
    dict(task=3, units_used=5, params_protected=23, new_units=1, reused_units=2,
         network_sparsity=1.0, accuracy=0.7, forgetting=0.25),
]  # fmt: skip


def write_run(folder, masks=MASKS, accuracy=ACCURACY, name="after-task-{}.safetensors"):
    folder.mkdir()
    for t, task in enumerate(sorted(masks), start=1):
        stored = {k: masks[k] for k in sorted(masks)[:t]}
        metadata = {"algorithm": "hat", "accuracy": accuracy[:t]}
        write_native(folder / name.format(task), make_checkpoint(NET, stored), metadata=metadata)
    return folder


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "hat")
    other = {1: {"fc/0": [1, 1, 1], "fc/1": [0, 0]}, 2: {"fc/0": [0, 0, 0], "fc/1": [1, 0]}}
    write_native(tmp_path / "single.safetensors", make_checkpoint(NET, other))
    return tmp_path


def test_per_task_figures_by_hand(runs):
    comparison = hatinspect.compare("hat", "single.safetensors")
    hat, single = comparison.runs
    assert (hat.name, hat.algorithm, len(hat.files)) == ("hat", "hat", 3)
    for step, expected in zip(hat.steps, EXPECTED, strict=True):
        got = {key: getattr(step, key) for key in expected}
        assert got == pytest.approx(expected)
        assert (step.units, step.params) == (5, 23)
    # single: task 1 uses fc/0's 3 units (12 + 3 protected), task 2 adds fc/1's unit 0
    # (1 * 3 inputs + 1 bias): 18 protected; sparsity 3/5 then 1/2; no accuracy.
    assert [(s.units_used, s.params_protected) for s in single.steps] == [(3, 15), (4, 19)]
    assert [s.network_sparsity for s in single.steps] == [0.6, 0.5]
    assert [(s.accuracy, s.forgetting) for s in single.steps] == [(None, None)] * 2
    # final usage per layer: hat fc/1 2 of 2 units, 8 of 8 params; single fc/1 1 of 2, 4 of 8
    assert [(u.units_used, u.params_protected) for u in hat.layers] == [(3, 15), (2, 8)]
    assert [(u.units_used, u.params_protected) for u in single.layers] == [(3, 15), (1, 4)]


def test_json_and_csv_of_the_command(runs):
    cli = run("compare", "hat", "single.safetensors", "--format", "json")
    assert cli.exit_code == 0, cli.stderr
    document = json.loads(cli.stdout)
    assert document == hatinspect.compare("hat", "single.safetensors").to_dict()
    hat = document["runs"][0]
    assert hat["files"] == [f"hat/after-task-{t}.safetensors" for t in (1, 2, 3)]
    assert [step["params_protected"] for step in hat["by_task"]] == [7, 16, 23]
    assert hat["by_task"][0]["forgetting"] is None
    rows = list(csv.DictReader(io.StringIO(run("compare", "hat", "-f", "csv").stdout)))
    assert [(r["run"], r["task"], r["new_units"]) for r in rows] == [
        ("hat", "1", "2"),
        ("hat", "2", "2"),
        ("hat", "3", "1"),
    ]
    layers = run("compare", "hat", "single.safetensors", "-f", "csv", "--per-layer").stdout
    assert layers.splitlines()[0] == (
        "run,layer,units,units_used,unit_usage,params,params_protected,param_usage"
    )
    assert "single.safetensors,fc/1,2,1,0.5,8,4,0.5" in layers.splitlines()


def test_table_and_plot(runs):
    cli = run("compare", "hat", "single.safetensors", "--plot", "curves.svg")
    assert cli.exit_code == 0, cli.stderr
    assert "Final usage per layer" in cli.stdout and "75.0%" in cli.stdout
    assert (runs / "curves.svg").read_text().count("<path") > 4
    again = run("compare", "hat", "--plot", "curves.svg")
    one_error_line(again, "curves.svg already exists")


def test_capacity_of_a_run_folder_gives_the_trajectory(runs):
    cli = run("capacity", "hat", "--format", "json")
    assert cli.exit_code == 0, cli.stderr
    document = json.loads(cli.stdout)
    assert document == hatinspect.capacity("hat").to_dict()
    assert [(r["file"], r["tasks"], r["units_used"], r["params_protected"]) for r in
            document["trajectory"]] == [
        ("hat/after-task-1.safetensors", 1, 2, 7),
        ("hat/after-task-2.safetensors", 2, 4, 16),
        ("hat/after-task-3.safetensors", 3, 5, 23),
    ]  # fmt: skip
    assert document["total"]["params_protected"] == 23
    table = run("capacity", "hat").stdout
    assert "File by file" in table and "after-task-2.safetensors" in table


def test_a_folder_whose_files_disagree_is_refused_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "run")
    changed = {t: dict(m) for t, m in MASKS.items() if t < 3}
    changed[1] = {"fc/0": [0, 1, 0], "fc/1": [1, 0]}  # task 1 rewritten in the second file
    write_native(tmp_path / "run/after-task-2.safetensors", make_checkpoint(NET, changed))
    for args in (["compare", "run"], ["capacity", "run"]):
        one_error_line(
            run(*args),
            "run/after-task-2.safetensors: task 1's mask of layer fc/0 differs",
            "run/after-task-3.safetensors",
        )
    with pytest.raises(CheckpointError, match="after-task-2.safetensors: task 1"):
        hatinspect.compare("run")


def test_a_later_file_that_lost_a_task_is_named(tmp_path):
    write_run(tmp_path / "run")
    write_native(tmp_path / "run/after-task-3.safetensors", make_checkpoint(NET, {1: MASKS[1]}))
    with pytest.raises(CheckpointError, match="after-task-3.safetensors lacks task 2"):
        hatinspect.compare(tmp_path / "run")


def test_a_folder_without_run_files(tmp_path):
    one_error_line(run("compare", tmp_path), "no after-task-<t>.safetensors files")


def test_runs_of_the_same_name_are_told_apart_by_path(tmp_path):
    for seed in ("seed1", "seed2"):
        (tmp_path / seed).mkdir()
        write_run(tmp_path / seed / "hat")
    comparison = hatinspect.compare(tmp_path / "seed1/hat", tmp_path / "seed2/hat")
    assert [r.name for r in comparison.runs] == [
        str(tmp_path / "seed1/hat"),
        str(tmp_path / "seed2/hat"),
    ]


@pytest.mark.torch
def test_train_demo_trains_three_algorithms_and_compares_them(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    out = tmp_path / "demo"
    cli = run("train-demo", "-a", "hat,adahat,finetuning", "-n", "2", "-e", "1", "--out", out)
    assert cli.exit_code == 0, cli.stderr
    folders = [out / name for name in ("hat", "adahat", "finetuning")]
    command = "hatinspect compare " + " ".join(map(str, folders))
    assert cli.stdout.strip().splitlines()[-1] == f"reproduce this comparison: {command}"
    assert cli.stdout.count("Test accuracy after each task") == 3
    assert "Final usage per layer" in cli.stdout
    comparison = hatinspect.compare(*folders)
    for compared, folder in zip(comparison.runs, folders, strict=True):
        final = folder / "after-task-2.safetensors"
        assert compared.algorithm == folder.name
        assert compared.files == tuple(str(folder / f"after-task-{t}.safetensors") for t in (1, 2))
        if folder.name != "finetuning":  # whose stored masks protect nothing
            # units used after task 2: units either task keeps, from the raw mask tensors
            masks = {k: m for k, m in load_file(final).items() if k.startswith("mask.")}
            layers = {key.split(".", 2)[2] for key in masks}
            assert len(masks) == 2 * len(layers) > 0
            union = sum(int((masks[f"mask.1.{n}"] | masks[f"mask.2.{n}"]).sum()) for n in layers)
            assert compared.steps[-1].units_used == union
        with safe_open(final, framework="numpy") as f:
            (first,), (old, new) = json.loads(f.metadata()["user.accuracy"])
        assert compared.steps[0].accuracy == pytest.approx(first)
        assert compared.steps[1].accuracy == pytest.approx((old + new) / 2)
        assert compared.steps[1].forgetting == pytest.approx(first - old)


def test_a_fine_tuning_run_is_compared_as_protecting_nothing(tmp_path):
    # all-ones masks: every unit of NET used after each task (5 of 5), nothing protected
    ones = {t: {"fc/0": [1, 1, 1], "fc/1": [1, 1]} for t in (1, 2)}
    folder = tmp_path / "ft"
    folder.mkdir()
    for t in (1, 2):
        stored = {k: ones[k] for k in range(1, t + 1)}
        metadata = {"algorithm": "finetuning"}
        write_native(folder / f"after-task-{t}.safetensors", make_checkpoint(NET, stored),
                     metadata=metadata)  # fmt: skip
    (summary,) = hatinspect.compare(folder).runs
    assert [(s.units_used, s.params_protected, s.param_usage) for s in summary.steps] == [
        (5, 0, 0.0),
        (5, 0, 0.0),
    ]
    assert [(u.params_protected, u.free) for u in summary.layers] == [(0, 1.0), (0, 1.0)]
    trajectory = hatinspect.capacity(folder).trajectory
    assert [row.params_protected for row in trajectory] == [0, 0]
    rows = [line for line in run("compare", str(folder)).stdout.splitlines() if "│ task" in line]
    rows = rows[:2]  # the first table (at 100 columns, the steps fold in two)
    assert [[cell.strip() for cell in row.split("│")[3:5]] for row in rows] == [
        ["5 (100%)", "0 (0%)"]
    ] * 2


def test_runs_of_weight_masks_are_counted_in_weights_and_a_mixed_table_says_which(runs):
    from support.weight_masks import LAYERS as WEIGHT_LAYERS
    from support.weight_masks import random_masks, write_packed

    masks = random_masks(tasks=(0, 1, 2), seed=5, density=0.5)
    write_packed(runs / "wsn.safetensors", masks)
    # by brute force: per task, the weights no earlier task kept, and those it shares
    owned = {layer.name: np.zeros(layer.weight_shape, bool) for layer in WEIGHT_LAYERS}
    expected = []
    for task in (0, 1, 2):
        mine = {name: masks[task][name].astype(bool) for name in owned}
        new = sum(int((mine[n] & ~owned[n]).sum()) for n in owned)
        reused = sum(int((mine[n] & owned[n]).sum()) for n in owned)
        expected.append((new, reused))
        for name in owned:
            owned[name] |= mine[name]
    comparison = hatinspect.compare("hat", "wsn.safetensors")
    hat, wsn = comparison.runs
    assert (hat.covers, wsn.covers) == ("units", "parameters")
    assert [(s.new_params, s.reused_params) for s in wsn.steps] == expected
    assert [(s.new_params, s.reused_params) for s in hat.steps] == [(None, None)] * 3
    # JSON: the weight run says what it covers and counts weights, the unit run as before
    document = comparison.to_dict()
    assert document["runs"][1]["covers"] == "parameters" and "covers" not in document["runs"][0]
    by_task = document["runs"][1]["by_task"]
    assert [(s["new_params"], s["reused_params"]) for s in by_task] == expected
    assert "new_params" not in document["runs"][0]["by_task"][0]
    # the mixed table: unit columns and weight columns, "-" where a run counts none
    table = run("compare", "hat", "wsn.safetensors", "--width", "250").stdout
    header = [" ".join(cell.split()) for cell in _header_cells(table)]
    assert header[2:8] == ["units used", "params protected", "new units", "reused units",
                           "new weights", "reused weights"]  # fmt: skip
    rows = {cells[1]: cells for cells in _body_rows(table) if cells[0] == "task 1"}
    assert rows["wsn.safetensors"][4:8] == ["-", "-", *(f"{n:,}" for n in expected[1])]
    assert rows["hat"][4:8] == ["2", "0", "-", "-"]  # its first task (EXPECTED)
    # only runs of weights: the columns say weights, not units
    alone = run("compare", "wsn.safetensors", "--width", "250").stdout
    header = [" ".join(cell.split()) for cell in _header_cells(alone)]
    assert header[3:6] == ["weights protected", "new weights", "reused weights"]
    assert "units / weights" in " ".join(alone.split())


def _header_cells(table: str) -> list[str]:
    """The first table's header cells, its two lines joined."""
    lines = [line for line in table.splitlines() if line.startswith("┃")][:2]
    split = [line.strip("┃").split("┃") for line in lines]
    return [f"{a} {b}" for a, b in zip(*split, strict=True)]


def _body_rows(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("│").split("│")]
            for line in table.splitlines() if line.startswith("│")]  # fmt: skip
