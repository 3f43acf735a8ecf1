"""Trajectory files: the round trip, the finder, and hostile files refused in one line."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from hatinspect.model.errors import CheckpointError
from hatinspect.model.trajectory import TaskTrajectory
from hatinspect.native import trajectory_file as tf

GATES = {
    "fc/0": np.array([[0.5, 0.1, 0.9], [1.0, 0.0, 0.25]], dtype=np.float32),
    "fc/1": np.array([[0.2, 0.7], [0.49, 0.5]], dtype=np.float32),
}


def trajectory(task: int = 2) -> TaskTrajectory:
    return TaskTrajectory(task, (-1, 3), "epoch", tuple(GATES), GATES)


def metadata(**changes) -> dict[str, str]:
    values = {
        "format": "pt",
        tf.VERSION_KEY: "1",
        tf.TASK_KEY: "2",
        tf.UNIT_KEY: "epoch",
        tf.POINTS_KEY: "[-1, 3]",
        tf.LAYERS_KEY: json.dumps(list(GATES)),
        tf.S_MAX_KEY: "400.0",
    }
    values.update(changes)
    return {key: value for key, value in values.items() if value is not None}


def raw(path, tensors=None, meta=None):
    tensors = {f"gate.{k}": v for k, v in GATES.items()} if tensors is None else tensors
    save_file(tensors, str(path), metadata(**(meta or {})))
    return path


def test_round_trip_keeps_every_gate_and_the_metadata(tmp_path):
    path = tf.write_trajectory(tmp_path / tf.file_name(2), trajectory(), s_max=400)
    assert path.name == "trajectory-task-2.safetensors"
    back = tf.read_trajectory(path)
    assert (back.task, back.points, back.unit, back.layers) == (2, (-1, 3), "epoch", tuple(GATES))
    for layer, gates in GATES.items():
        assert back.gates[layer].dtype == np.float32
        assert (back.gates[layer] == gates).all()
    # binary masks are gates > 0.5, as HAT's: 0.49 and 0.5 are off, 0.7 on
    assert back.binary("fc/1").tolist() == [[False, True], [False, False]]
    assert back.binary("fc/0").tolist() == [[False, False, True], [True, False, False]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        assert f.metadata() == metadata()


def test_float16_gates_are_read_as_float32(tmp_path):
    path = raw(
        tmp_path / "t.safetensors", {f"gate.{k}": v.astype(np.float16) for k, v in GATES.items()}
    )
    back = tf.read_trajectory(path)
    assert back.gates["fc/0"].dtype == np.float32
    np.testing.assert_allclose(back.gates["fc/0"], GATES["fc/0"], atol=1e-3)


def test_finder_takes_a_folder_a_checkpoint_beside_or_a_file(tmp_path):
    for task in (10, 2, 1):
        tf.write_trajectory(tmp_path / tf.file_name(task), trajectory(task), 400)
    (tmp_path / "after-task-10.safetensors").write_bytes(b"x")
    (tmp_path / "trajectory-task-3.safetensors.tmp").write_bytes(b"x")
    names = ["trajectory-task-1.safetensors", "trajectory-task-2.safetensors",
             "trajectory-task-10.safetensors"]  # fmt: skip
    assert [p.name for p in tf.find_trajectories(tmp_path)] == names
    assert [p.name for p in tf.find_trajectories(tmp_path / "after-task-10.safetensors")] == names
    assert tf.find_trajectories(tmp_path / names[1]) == (tmp_path / names[1],)
    assert [t.task for t in tf.read_trajectories(tmp_path)] == [1, 2, 10]


def test_finder_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no trajectory-task-<t>.safetensors files"):
        tf.find_trajectories(tmp_path)
    with pytest.raises(CheckpointError, match="no such file or folder"):
        tf.find_trajectories(tmp_path / "missing")


def test_a_file_named_for_another_task_is_refused(tmp_path):
    tf.write_trajectory(tmp_path / tf.file_name(5), trajectory(2), 400)
    with pytest.raises(CheckpointError, match="holds task 2, its name says 5"):
        tf.read_trajectories(tmp_path)


HOSTILE_METADATA = [
    ({tf.VERSION_KEY: None}, "not a trajectory file"),
    ({tf.VERSION_KEY: "2"}, "version '2'"),
    ({tf.TASK_KEY: "x"}, "task 'x' is not a task id"),
    ({tf.TASK_KEY: "02"}, "task '02' is not a task id"),
    ({tf.UNIT_KEY: "batch"}, "unit 'batch'"),
    ({tf.POINTS_KEY: "[-1, "}, "is not JSON"),
    ({tf.POINTS_KEY: "[]"}, "non-empty list"),
    ({tf.POINTS_KEY: "[3, -1]"}, "ascend"),
    ({tf.POINTS_KEY: "[-1, -1]"}, "ascend"),
    ({tf.POINTS_KEY: "[-1, 1.5]"}, "1.5 is not an integer"),
    ({tf.POINTS_KEY: "[-2, 3]"}, "-2 is not an integer in -1"),
    ({tf.POINTS_KEY: "[-1, true]"}, "True is not an integer"),
    ({tf.POINTS_KEY: "[-1, 1, 2]"}, r"shape \(2, 3\), expected \(3, units\)"),
    ({tf.POINTS_KEY: "[" * 100_000}, "is not JSON"),
    ({tf.LAYERS_KEY: '["fc/0", "fc/0"]'}, "listed twice"),
    ({tf.LAYERS_KEY: '["fc/0", ""]'}, "layer name '' is not"),
    ({tf.LAYERS_KEY: '["fc/0", null]'}, "layer name None is not"),
    ({tf.LAYERS_KEY: '["fc/0", 7]'}, "layer name 7 is not"),
    ({tf.LAYERS_KEY: '{"fc/0": 1}'}, "non-empty list"),
    ({tf.LAYERS_KEY: '["fc/0"]'}, "'gate.fc/1' belongs to no listed layer"),
    ({tf.LAYERS_KEY: '["fc/0", "fc/1", "fc/2"]'}, "layer 'fc/2': no tensor 'gate.fc/2'"),
    ({tf.S_MAX_KEY: "0"}, "positive number"),
    ({tf.S_MAX_KEY: "NaN"}, "positive number"),
    ({tf.S_MAX_KEY: '"400"'}, "positive number"),
]


@pytest.mark.parametrize(("changes", "words"), HOSTILE_METADATA)
def test_hostile_metadata_is_refused_in_one_line(tmp_path, changes, words):
    path = raw(tmp_path / "t.safetensors", meta=changes)
    with pytest.raises(CheckpointError, match=words) as error:
        tf.read_trajectory(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def _gates(**layers):
    return {f"gate.{k}": v for k, v in {**GATES, **layers}.items()}


HOSTILE_TENSORS = [
    (_gates(**{"fc/0": GATES["fc/0"].astype(np.float64)}), "dtype F64, expected one of F32"),
    (_gates(**{"fc/0": (GATES["fc/0"] > 0.5).astype(np.uint8)}), "dtype U8"),
    (_gates(**{"fc/0": GATES["fc/0"][0]}), r"shape \(3,\), expected \(2, units\)"),
    (_gates(**{"fc/0": np.zeros((2, 0), np.float32)}), r"shape \(2, 0\)"),
    (_gates(**{"fc/0": np.full((2, 3), np.nan, np.float32)}), "NaN or infinite"),
    (_gates(**{"fc/0": np.full((2, 3), np.inf, np.float32)}), "NaN or infinite"),
    (_gates(**{"fc/0": np.full((2, 3), 1.5, np.float32)}), "outside 0..1"),
    (_gates(**{"fc/0": np.full((2, 3), -0.1, np.float32)}), "outside 0..1"),
    ({**_gates(), "extra": np.zeros(1, np.float32)}, "'extra' belongs to no listed layer"),
]


@pytest.mark.parametrize(("tensors", "words"), HOSTILE_TENSORS)
def test_hostile_tensors_are_refused_in_one_line(tmp_path, tensors, words):
    path = raw(tmp_path / "t.safetensors", tensors)
    with pytest.raises(CheckpointError, match=words) as error:
        tf.read_trajectory(path)
    assert "\n" not in str(error.value)


def test_files_that_are_no_safetensors_are_refused(tmp_path):
    good = tf.write_trajectory(tmp_path / "good.safetensors", trajectory(), 400).read_bytes()
    cases = {
        "empty": b"",
        "text": b"task,epoch,gate\n1,2,3\n",
        "truncated": good[: len(good) // 2],
        "short": good[:5],
        "huge-header": (2**40).to_bytes(8, "little") + good[8:],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as error:
            tf.read_trajectory(path)
        assert str(error.value).startswith(str(path)) and "\n" not in str(error.value), name
    with pytest.raises(CheckpointError, match="is a directory"):
        tf.read_trajectory(tmp_path)


def test_a_file_over_the_size_bound_is_refused_before_reading(tmp_path, monkeypatch):
    path = tf.write_trajectory(tmp_path / "t.safetensors", trajectory(), 400)
    monkeypatch.setattr(tf, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(CheckpointError, match="over the .* a trajectory file may hold"):
        tf.read_trajectory(path)


def test_a_failed_write_leaves_the_earlier_file(tmp_path):
    path = tf.write_trajectory(tmp_path / "t.safetensors", trajectory(), 400)
    before = path.read_bytes()
    with pytest.raises(Exception, match="s_max"):
        tf.write_trajectory(path, trajectory(), s_max=float("nan"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_a_checkpoint_reader_tells_a_trajectory_file_for_what_it_is(tmp_path):
    import hatinspect

    path = tf.write_trajectory(tmp_path / tf.file_name(2), trajectory(), 400)
    with pytest.raises(CheckpointError) as error:
        hatinspect.open_checkpoint(path)
    assert str(error.value) == (
        f"{path}: a trajectory file (one task's recorded gates), not a checkpoint"
    )


def test_a_trajectory_file_is_told_by_its_header(tmp_path):
    path = tf.write_trajectory(tmp_path / tf.file_name(2), trajectory(), 400)
    assert tf.is_trajectory_file(path)
    other = tmp_path / "net.safetensors"
    save_file({"x": np.zeros(2, np.float32)}, str(other), {"format": "pt"})
    (tmp_path / "text").write_text("not one")
    assert not any(map(tf.is_trajectory_file, [other, tmp_path / "text", tmp_path,
                                               tmp_path / "missing"]))  # fmt: skip
