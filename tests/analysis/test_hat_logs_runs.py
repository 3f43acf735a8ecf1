"""A run folder with the original HAT code's .pkz logs beside its checkpoints: the logged
accuracy matrix in compare and report, the masks through training as a report section."""

import gzip
import json
import pickle
import shutil

import numpy as np
import pytest
from support.inspect_checkpoints import layer, make_checkpoint, write_native
from support.paths import PEERS, REPO

from hatinspect import api
from hatinspect.analysis.hat_logs import read_hat_logs
from hatinspect.model.errors import HatinspectError

LOGS = PEERS / "original-hat-logs" / "hat-mlp-np2-p5.pkz"
TRUTH = json.loads((PEERS / "original-hat-logs" / "truth-hat-mlp-np2-p5.json").read_text())
LAYERS = (layer("fc1", (12, 16)), layer("fc2", (12, 12), "fc1"))


def kept_masks() -> dict:
    """Each task's binary mask at its best-validation epoch, from the truth file."""
    masks = {}
    for t, task in TRUTH["tasks"].items():
        row = task["epochs"].index(task["best_epoch"])
        masks[int(t)] = {
            name: task["layers"][str(i)]["binary"][row] for i, name in enumerate(["fc1", "fc2"])
        }
    return masks


def test_the_kept_masks_are_those_the_logs_protect():
    """mask_pre[t] (the logs' cumulative mask before task t) is the union of the earlier
    tasks' masks at their best-validation epochs: the epochs the reader says were kept."""
    with gzip.open(LOGS) as file:
        raw = pickle.load(file)  # the committed fixture, written by the original code
    logs, masks = read_hat_logs(LOGS), kept_masks()
    assert dict(logs.best_epochs) == {int(t): e["best_epoch"] for t, e in TRUTH["tasks"].items()}
    for t in (1, 2):
        for i, name in enumerate(["fc1", "fc2"]):
            union = np.zeros(12, bool)
            for earlier in range(t):
                union |= np.array(masks[earlier][name], bool)
            np.testing.assert_array_equal(raw["mask_pre"][t][i].reshape(-1) > 0.5, union)


@pytest.fixture
def run_folder(tmp_path):
    masks = kept_masks()
    for t in range(3):
        upto = {task: masks[task] for task in range(t + 1)}
        write_native(tmp_path / f"after-task-{t}.safetensors", make_checkpoint(LAYERS, upto))
    shutil.copy(LOGS, tmp_path / "logs.pkz")
    return tmp_path


def test_compare_shows_the_logged_accuracy_matrix(run_folder):
    document = api.compare(run_folder).to_dict()
    matrix = document["runs"][0]["accuracy_matrix"]
    assert matrix == {"tasks": [0, 1, 2], "rows": TRUTH["accuracy"]}
    by_task = document["runs"][0]["by_task"]
    assert by_task[-1]["accuracy"] == pytest.approx(sum(TRUTH["accuracy"][-1]) / 3)


def test_the_report_has_the_trajectory_section(run_folder, tmp_path):
    report = api.report(run_folder)
    trajectory = report.to_dict()["runs"][0]["trajectory"]
    settled = {(x["task"], x["layer"]): x["settled_after"] for x in trajectory["layers"]}
    assert settled == {
        (int(t), name): e["layers"][str(i)]["settled_after"]
        for t, e in TRUTH["tasks"].items()
        for i, name in enumerate(["fc1", "fc2"])
    }
    html = tmp_path / "report.html"
    api.report(run_folder, output=html)
    text = html.read_text()
    assert "Masks through training" in text and 'alt="Masks through training"' in text
    markdown = tmp_path / "report.md"
    api.report(run_folder, output=markdown)
    assert (tmp_path / "report-figures" / "run1-trajectory.svg").is_file()
    assert "| 2 | fc1 | 12 |" in markdown.read_text()


def test_logs_of_other_tasks_give_no_accuracy_and_say_so(tmp_path):
    masks = {5: kept_masks()[0]}
    write_native(tmp_path / "after-task-5.safetensors", make_checkpoint(LAYERS, masks))
    shutil.copy(LOGS, tmp_path / "logs.pkz")
    run = api.open_run(tmp_path)
    assert "does not log the tasks" in run.final.notes[-1]
    assert api.compare(run).to_dict()["runs"][0]["accuracy_matrix"] is None


def test_logs_whose_kept_mask_differs_give_no_accuracy_and_say_so(tmp_path):
    masks = kept_masks()
    masks[1]["fc2"] = [1 - on for on in masks[1]["fc2"]]
    write_native(tmp_path / "after-task-1.safetensors", make_checkpoint(LAYERS, masks))
    shutil.copy(LOGS, tmp_path / "logs.pkz")
    run = api.open_run(tmp_path)
    assert "task 1's mask of layer fc2 at epoch 3 (the model training kept)" in run.final.notes[-1]
    assert api.compare(run).to_dict()["runs"][0]["accuracy_matrix"] is None
    assert run.trajectories is not None


def test_logs_of_another_network_say_so(tmp_path):
    other = (layer("fc/0", (12, 16)), layer("fc/1", (12, 12), "fc/0"))
    masks = {t: {"fc/0": m["fc1"], "fc/1": m["fc2"]} for t, m in kept_masks().items()}
    write_native(tmp_path / "after-task-2.safetensors", make_checkpoint(other, masks))
    shutil.copy(LOGS, tmp_path / "logs.pkz")
    assert "layers (fc1, fc2) are not those of" in api.open_run(tmp_path).final.notes[-1]


def test_two_log_files_in_a_folder_are_refused(run_folder):
    shutil.copy(LOGS, run_folder / "again.pkz")
    with pytest.raises(HatinspectError, match="holds 2 files of masks through training"):
        api.open_run(run_folder)


# the logs alone (the original HAT code saves no checkpoint): a run of units

FIXTURES = sorted((PEERS / "original-hat-logs").glob("*.pkz"))
TOY = REPO / "examples" / "hat-toy"


def truth_of(logs) -> dict:
    return json.loads(logs.with_name(f"truth-{logs.stem}.json").read_text())


def kept_units(truth: dict) -> dict[int, list[np.ndarray]]:
    """By task, each layer's units on at the kept epoch: a plain count of gates > 0.5 (for
    a wide layer, the writing process keeps that binary mask as a string of 0s and 1s)."""
    out = {}
    for t, task in truth["tasks"].items():
        row = task["epochs"].index(task["best_epoch"])
        layers = [task["layers"][str(i)] for i in range(len(task["layers"]))]
        out[int(t)] = [_on(layer, row) for layer in layers]
    return out


def _on(layer: dict, row: int) -> np.ndarray:
    if "gates" in layer:
        return np.array(layer["gates"][row]) > 0.5
    return np.array([c == "1" for c in layer["binary"][row]])


def by_hand(rows: list[list[float]], t: int) -> tuple:
    """Average accuracy, mean forgetting and backward transfer after row t, by hand."""
    average = sum(rows[t]) / len(rows[t])
    if t == 0:
        return average, None, None
    forgetting = [max(rows[i][j] for i in range(j, t)) - rows[t][j] for j in range(t)]
    transfer = [rows[t][j] - rows[j][j] for j in range(t)]
    return average, sum(forgetting) / t, sum(transfer) / t


@pytest.mark.parametrize("logs", FIXTURES, ids=lambda path: path.stem)
def test_compare_takes_the_logs_alone(logs):
    truth = truth_of(logs)
    document = api.compare(logs, TOY).to_dict()
    run, toy = document["runs"]
    assert run["accuracy_matrix"]["rows"] == truth["accuracy"]
    units, union = kept_units(truth), None
    for step in run["by_task"]:
        average, forgetting, transfer = by_hand(truth["accuracy"], step["task"])
        assert step["accuracy"] == pytest.approx(average)
        assert step["forgetting"] == (None if forgetting is None else pytest.approx(forgetting))
        assert step["backward_transfer"] == (None if transfer is None else pytest.approx(transfer))
        mask = np.concatenate(units[step["task"]])
        before = np.zeros_like(mask) if union is None else union
        union = before | mask
        assert step["new_units"] == int((mask & ~before).sum())
        assert step["reused_units"] == int((mask & before).sum())
        assert step["units_used"] == int(union.sum()) and step["units"] == mask.size
        assert step["params"] is None and step["params_protected"] is None
        assert step["param_usage"] is None
    for usage, masks in zip(run["layers"], zip(*units.values(), strict=True), strict=True):
        assert usage["units_used"] == int(np.logical_or.reduce(masks).sum())
        assert usage["params"] is None and usage["param_usage"] is None
    assert toy["by_task"][0]["params"] > 0  # the checkpoints beside it keep theirs


def test_a_folder_holding_only_the_logs_is_the_same_run(tmp_path):
    shutil.copy(LOGS, tmp_path / "logs.pkz")
    alone, folder = api.compare(LOGS).to_dict(), api.compare(tmp_path).to_dict()
    assert folder["runs"][0]["by_task"] == alone["runs"][0]["by_task"]
    assert folder["runs"][0]["accuracy_matrix"] == alone["runs"][0]["accuracy_matrix"]


def test_the_logs_run_says_it_holds_no_weights():
    run = api.open_run(LOGS)
    assert run.trajectories is not None and len(run.checkpoints) == 1
    info = run.final.to_dict()
    assert all(
        layer["params"] is None and layer["weight_shape"] is None for layer in info["layers"]
    )
    assert sum("hold no weights" in note for note in info["notes"]) == 1


def test_the_report_of_the_logs_alone_has_accuracy_and_trajectory(tmp_path):
    document = api.report(LOGS).to_dict()
    (run,) = document["runs"]
    assert run["outcome"]["accuracy_matrix"]["rows"] == TRUTH["accuracy"]
    assert run["capacity"]["total"]["params"] is None and run["measures"] == []
    settled = {(x["task"], x["layer"]): x["settled_after"] for x in run["trajectory"]["layers"]}
    assert settled[(2, "fc1")] == TRUTH["tasks"]["2"]["layers"]["0"]["settled_after"]
    for name in ("report.html", "report.md"):
        api.report(LOGS, output=tmp_path / name)
        text = (tmp_path / name).read_text()
        assert "Accuracy" in text and "Masks through training" in text
        assert "parameters unknown: the logs hold no weights" in text
        assert "Not known: the logs hold no weights." in text  # the measures
        average = sum(TRUTH["accuracy"][-1]) / 3
        assert f"{average:.1%}" in text


def test_the_logs_run_shows_itself_with_parameters_unknown():
    """repr and the notebook's HTML of what compare and report return, and of the run's
    checkpoint, all the way through (a count of None would fail in any of them)."""
    run = api.open_run(LOGS)
    assert "unknown params" in repr(run.final)
    for result in (run.final, api.compare(LOGS, TOY), api.report(LOGS)):
        assert repr(result) and result._repr_html_()
    capacity = api.capacity(run.final)
    assert "params unknown" in repr(capacity) and capacity.to_dict()["total"]["free"] is None


def test_logs_without_validation_losses_take_the_last_epoch_and_say_so(tmp_path):
    with gzip.open(LOGS) as file:
        raw = pickle.load(file)  # the committed fixture, written by the original code
    del raw["valid_loss"]
    path = tmp_path / "logs.pkz"
    path.write_bytes(gzip.compress(pickle.dumps(raw, protocol=4)))
    run = api.open_run(path)
    assert sum("do not tell the kept epoch" in note for note in run.final.notes) == 3
    for t, task in TRUTH["tasks"].items():
        for i, name in enumerate(["fc1", "fc2"]):
            last = task["layers"][str(i)]["binary"][-1]
            assert run.final.masks[int(t)][name].tolist() == last
