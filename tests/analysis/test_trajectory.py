"""The trajectory analysis against plain loops over hand-made gates, and on the original
HAT code's logs against what the writing process computed."""

import json

import numpy as np
import pytest

from hatinspect.analysis.trajectory import layer_trajectory, trajectory_report
from hatinspect.analysis.trajectory_files import Trajectories, read_trajectories
from hatinspect.model.errors import HatinspectError
from hatinspect.model.records import csv_rows, record
from hatinspect.model.trajectory import TaskTrajectory
from tests.support.paths import PEERS

LOGS = PEERS / "original-hat-logs"


def _plain(binary: list[list[int]], points: list[int]) -> tuple:
    """Settle point, switches on and off, by loops over lists."""
    settled = points[0]
    for i in range(1, len(binary)):
        if binary[i] != binary[i - 1]:
            settled = points[i]
    on, off = [], []
    for before, after in zip(binary, binary[1:], strict=False):
        on.append(sum(1 for a, b in zip(before, after, strict=True) if not a and b))
        off.append(sum(1 for a, b in zip(before, after, strict=True) if a and not b))
    return settled, on, off


def _trajectory(rows, points=None) -> TaskTrajectory:
    gates = np.array(rows, dtype=np.float32)
    points = tuple(points or range(-1, len(rows) - 1))
    return TaskTrajectory(0, points, "epoch", ("fc1",), {"fc1": gates})


CASES = [
    # never changes: settled before training
    [[0.9, 0.1, 0.0], [0.99, 0.2, 0.0], [1.0, 0.0, 0.4]],
    # one on, then one off, then stays
    [[0.0, 1.0, 0.0], [0.7, 1.0, 0.0], [0.7, 0.2, 0.0], [0.8, 0.1, 0.3]],
    # changes at the last record; gates exactly at the threshold are off
    [[0.0, 0.0], [0.5, 0.0], [0.51, 0.0], [0.49, 1.0]],
    # changes back and forth
    [[1.0], [0.0], [1.0], [0.0], [0.0]],
]


@pytest.mark.parametrize("rows", CASES)
def test_settle_point_and_switches_match_plain_loops(rows):
    layer = layer_trajectory(_trajectory(rows), "fc1")
    binary = [[int(g > 0.5) for g in row] for row in rows]
    settled, on, off = _plain(binary, list(layer.points))
    assert layer.settled_after == settled
    assert list(layer.switched_on) == on and list(layer.switched_off) == off
    assert list(layer.active) == [sum(row) for row in binary]
    assert layer.active_share == tuple(sum(row) / len(row) for row in binary)


def test_hand_counted_case():
    layer = layer_trajectory(_trajectory(CASES[1]), "fc1")
    assert layer.points == (-1, 0, 1, 2)
    assert layer.switched_on == (1, 0, 0) and layer.switched_off == (0, 1, 0)
    assert layer.settled_after == 1 and layer.active == (1, 2, 1, 1)


def test_one_record_is_settled_at_it():
    layer = layer_trajectory(_trajectory([[1.0, 0.0]], points=[5]), "fc1")
    assert layer.settled_after == 5 and layer.switched_on == ()


@pytest.mark.parametrize("name", ["hat-mlp-np1-p4", "hat-mlp-np2-p5", "hat-alexnet-np2-p5"])
def test_the_logs_trajectories_match_the_writing_process(name):
    truth = json.loads((LOGS / f"truth-{name}.json").read_text())
    found = read_trajectories(LOGS / f"{name}.pkz")
    report = trajectory_report(found)
    names = found.trajectories[0].layers
    for layer in report.layers:
        expected = truth["tasks"][str(layer.task)]["layers"][str(names.index(layer.layer))]
        assert layer.settled_after == expected["settled_after"]
        assert list(layer.switched_on) == expected["switched_on"]
        assert list(layer.switched_off) == expected["switched_off"]
    assert dict(report.kept) == {int(t): e["best_epoch"] for t, e in truth["tasks"].items()}


def test_tasks_and_layers_are_chosen():
    found = read_trajectories(LOGS / "hat-mlp-np2-p5.pkz")
    report = trajectory_report(found, tasks=[2], include=["*2"])
    assert report.tasks == (2,) and [(x.task, x.layer) for x in report.layers] == [(2, "fc2")]
    assert report.trajectories[0].layers == ("fc2",)
    with pytest.raises(HatinspectError, match="no trajectory of task 7"):
        trajectory_report(found, tasks=[7])
    with pytest.raises(HatinspectError, match="no layer matches conv"):
        trajectory_report(found, include=["conv"])


def test_records_and_rows():
    report = trajectory_report(Trajectories("run", (_trajectory(CASES[1]),)))
    document = record(report)
    assert document["layers"][0]["settled_after"] == 1
    assert document["layers"][0]["switched_off"] == [0, 1, 0]
    header, rows = csv_rows(report)
    assert header[:3] == ["task", "layer", "point"] and len(rows) == 4
    assert [row[6] for row in rows] == [0, 1, 0, 0]  # switched on into each record


def test_a_run_folder_gives_its_one_file(tmp_path):
    import shutil

    with pytest.raises(HatinspectError, match="a folder without a file of masks"):
        read_trajectories(tmp_path)
    shutil.copy(LOGS / "hat-mlp-np2-p5.pkz", tmp_path / "logs.pkz")
    assert read_trajectories(tmp_path).path == str(tmp_path / "logs.pkz")


def test_a_file_of_no_known_kind_is_refused(tmp_path):
    other = tmp_path / "x.bin"
    other.write_bytes(b"nothing")
    with pytest.raises(HatinspectError, match="holds no masks through training"):
        read_trajectories(other)


def test_a_mask_that_settled_after_the_kept_epoch_is_starred():
    from hatinspect.render.layout import Note, cell_rows, tables
    from hatinspect.render.trajectory import DEFAULT_LOOK  # noqa: F401  (registers the view)

    report = trajectory_report(Trajectories("run", (_trajectory(CASES[1]),), kept={0: 0}))
    shown = tables(report)
    notes = [item for item in shown if isinstance(item, Note)]
    assert any(note.startswith("*: settled after the epoch") for note in notes)
    table = next(item for item in shown if hasattr(item, "columns") and len(item.columns) > 4)
    assert cell_rows(table.columns[3]._cells[0]) == ["1*"]


def test_a_folder_with_two_kinds_of_trajectories_is_refused(tmp_path, monkeypatch):
    """A kind kept as a file a task reads the folder itself; two kinds found: one line."""
    import shutil

    from hatinspect.analysis import trajectory_files

    shutil.copy(LOGS / "hat-mlp-np2-p5.pkz", tmp_path / "logs.pkz")
    per_task = trajectory_files.Reader(
        "per-task files", lambda path: False, lambda folder: folder, lambda path: None
    )
    monkeypatch.setattr(trajectory_files, "READERS", [*trajectory_files.READERS, per_task])
    with pytest.raises(HatinspectError, match="as original-hat-logs and per-task files"):
        read_trajectories(tmp_path)


def _recorded_folder(folder, units=("epoch", "epoch")):
    """Two tasks' trajectory files, written by the format's own writer."""
    from hatinspect.native.trajectory_file import file_name, write_trajectory

    for task, unit in enumerate(units, start=1):
        gates = np.array(CASES[task], dtype=np.float32)
        points = tuple(range(-1, len(gates) - 1))
        write_trajectory(
            folder / file_name(task),
            TaskTrajectory(task, points, unit, ("fc1",), {"fc1": gates}),
            4,
        )
    return folder


def test_recorded_files_read_as_one_run_by_folder_or_file(tmp_path):
    _recorded_folder(tmp_path)
    for given in (tmp_path, tmp_path / "trajectory-task-2.safetensors"):
        found = read_trajectories(given)
        assert found.path == str(tmp_path) and found.tasks == (1, 2)
        assert found.kept == {1: 2, 2: 2}  # the last points and found.kept_by == "the last record"
        assert found.curves == {} and found.accuracy is None
    report = trajectory_report(found)
    for layer, rows in zip(report.layers, CASES[1:3], strict=True):
        binary = [[int(g > 0.5) for g in row] for row in rows]
        assert layer.settled_after == _plain(binary, list(layer.points))[0]


def test_a_renamed_trajectory_file_reads_alone(tmp_path):
    _recorded_folder(tmp_path)
    (tmp_path / "trajectory-task-2.safetensors").rename(tmp_path / "task-two.safetensors")
    found = read_trajectories(tmp_path / "task-two.safetensors")
    assert found.tasks == (2,) and found.path == str(tmp_path / "task-two.safetensors")
    assert read_trajectories(tmp_path).tasks == (1,)


def test_recorded_files_by_epoch_and_by_step_are_refused(tmp_path):
    _recorded_folder(tmp_path, units=("epoch", "step"))
    with pytest.raises(HatinspectError, match="trajectory files by epoch and by step"):
        read_trajectories(tmp_path)


def test_a_file_of_no_known_kind_names_the_kinds(tmp_path):
    other = tmp_path / "x.bin"
    other.write_bytes(b"nothing")
    with pytest.raises(HatinspectError, match="trajectory-task-<t>.safetensors files"):
        read_trajectories(other)


def test_recorded_files_by_step_read_through_the_api(tmp_path):
    import hatinspect
    from hatinspect.render.layout import tables
    from hatinspect.render.trajectory import DEFAULT_LOOK  # noqa: F401  (registers the view)

    _recorded_folder(tmp_path, units=("step", "step"))
    report = hatinspect.trajectory(tmp_path / "trajectory-task-1.safetensors", layer="fc1")
    assert report.unit == "step" and report.tasks == (1, 2) and report.kept_by == "the last record"
    assert str(tables(report)[0]).startswith("Masks through training, by step")
    assert record(report)["curves"] == {} and record(report)["kept"] == {"1": 2, "2": 2}
