"""The original HAT code's .pkz logs: read inertly from the files its own run.py wrote
(tests/fixtures/peers/original-hat-logs, numpy 1 at protocol 4 and numpy 2 at protocol 5),
checked against what the writing process read back; hostile files refused in one line."""

import gzip
import json
import pickle
import pickletools

import numpy as np
import pytest

import hatinspect
from hatinspect.analysis import numpy_pickle
from hatinspect.analysis.hat_logs import LogFileError, is_hat_log, layer_names, read_hat_logs
from hatinspect.analysis.numpy_pickle import PickleRefused, load_numpy_pickle
from hatinspect.model.errors import HatinspectError
from tests.support.paths import PEERS

LOGS = PEERS / "original-hat-logs"
FILES = ["hat-mlp-np1-p4", "hat-mlp-np2-p5"]


def truth(name: str) -> dict:
    return json.loads((LOGS / f"truth-{name}.json").read_text())


@pytest.mark.parametrize("name", FILES)
def test_the_logs_read_as_the_writing_process_read_them(name):
    logs, expected = read_hat_logs(LOGS / f"{name}.pkz"), truth(name)
    assert logs.layers == ("fc1", "fc2")
    assert logs.task_ids == tuple(int(t) for t in expected["tasks"])
    for trajectory in logs.trajectories:
        task = expected["tasks"][str(trajectory.task)]
        assert list(trajectory.points) == task["epochs"] == [-1, 0, 1, 2, 3]
        assert trajectory.unit == "epoch"
        for i, layer in enumerate(logs.layers):
            gates = np.array(task["layers"][str(i)]["gates"], dtype=np.float32)
            np.testing.assert_array_equal(trajectory.gates[layer], gates)
            binary = np.array(task["layers"][str(i)]["binary"], dtype=bool)
            np.testing.assert_array_equal(trajectory.binary(layer), binary)
        assert logs.best_epochs[trajectory.task] == task["best_epoch"]
    assert [list(row) for row in logs.accuracy] == expected["accuracy"]
    assert logs.task_names == {0: "toy-0", 1: "toy-1", 2: "toy-2"}


def test_the_two_files_hold_one_run():
    first, second = (read_hat_logs(LOGS / f"{name}.pkz") for name in FILES)
    assert first.accuracy == second.accuracy
    assert [t.points for t in first.trajectories] == [t.points for t in second.trajectories]


def test_the_numpy_names_of_each_file_are_those_of_its_numpy():
    globals_ = {}
    for name in FILES:
        data = gzip.decompress((LOGS / f"{name}.pkz").read_bytes())
        strings = [arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
        globals_[name] = {s for s in strings if s.startswith("numpy")}
    assert globals_["hat-mlp-np1-p4"] == {"numpy", "numpy.core.multiarray"}
    assert globals_["hat-mlp-np2-p5"] == {"numpy", "numpy._core.numeric"}


def test_layer_names_follow_the_original_networks():
    assert layer_names(5) == ("c1", "c2", "c3", "fc1", "fc2")
    assert layer_names(3) == ("fc1", "fc2", "fc3")


def test_a_gzip_file_is_told_by_its_first_bytes(tmp_path):
    other = tmp_path / "x.pkz"
    other.write_bytes(b"PK\x03\x04")
    assert is_hat_log(LOGS / "hat-mlp-np2-p5.pkz") and not is_hat_log(other)


# hostile and broken files: one line each


class _System:
    def __reduce__(self):
        import os

        return (os.system, ("echo hacked",))


def _pkz(tmp_path, obj=None, raw: bytes | None = None, protocol=4):
    path = tmp_path / "logs.pkz"
    data = raw if raw is not None else pickle.dumps(obj, protocol)
    path.write_bytes(gzip.compress(data))
    return path


def _refused(path) -> str:
    with pytest.raises(HatinspectError) as caught:
        read_hat_logs(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_global_that_runs_code_is_refused_by_name(tmp_path):
    message = _refused(_pkz(tmp_path, {"mask": _System()}))
    assert "refused global" in message and ("posix.system" in message or "os.system" in message)


def test_an_object_array_is_refused(tmp_path):
    objects = np.array([{"a": 1}, None], dtype=object)
    assert "dtype 'O8' refused" in _refused(_pkz(tmp_path, {"mask": {0: objects}}))


@pytest.mark.parametrize("protocol", [4, 5])
def test_an_array_claiming_more_than_it_holds_is_refused(tmp_path, protocol):
    small = np.zeros(3, np.float32)
    data = pickle.dumps({"mask": small}, protocol)
    if protocol == 4:  # the state's shape (3,) becomes (2**30, 2**30)
        huge = data.replace(b"K\x03\x85", b"J\x00\x00\x00\x40J\x00\x00\x00\x40\x86", 1)
    else:
        huge = data.replace(b"K\x03\x85", b"J\x00\x00\x00\x40\x85", 1)
    assert huge != data
    assert "claims" in _refused(_pkz(tmp_path, raw=huge))


def test_a_structured_dtype_is_refused(tmp_path):
    record = np.zeros(2, dtype=[("a", "f4"), ("b", "i4")])
    assert "refused" in _refused(_pkz(tmp_path, {"mask": record}))


def test_a_truncated_gzip_is_refused(tmp_path):
    whole = gzip.compress(pickle.dumps({"mask": {}}, 4) * 50)
    path = tmp_path / "logs.pkz"
    path.write_bytes(whole[: len(whole) // 2])
    assert "truncated or damaged gzip" in _refused(path)


def test_a_gzip_bomb_stops_at_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(numpy_pickle, "MAX_PICKLE", 2**20)
    path = tmp_path / "bomb.pkz"
    with gzip.open(path, "wb") as file:
        for _ in range(8):
            file.write(bytes(2**20))
    assert "decompresses to over 1 MiB" in _refused(path)


def test_not_gzip_is_refused(tmp_path):
    path = tmp_path / "logs.pkz"
    path.write_bytes(b"not gzip at all")
    assert "not a readable gzip file" in _refused(path)


def test_logs_of_another_shape_are_refused(tmp_path):
    assert "no 'mask' dict" in _refused(_pkz(tmp_path, [1, 2]))
    gates = {0: {0: {-1: np.zeros((1, 3), np.float32)}}}
    ragged = {"mask": {**gates, 1: {0: {-1: np.zeros((1, 4), np.float32)}}}}
    assert "3 units in task 0's masks but 4" in _refused(_pkz(tmp_path, ragged))
    strange = {"mask": {0: {0: {-1: np.full((1, 3), 2.0, np.float32)}}}}
    assert "outside 0..1" in _refused(_pkz(tmp_path, strange))
    keyed = {"mask": {"zero": {}}}
    assert "'zero' is not an index" in _refused(_pkz(tmp_path, keyed))


def test_plain_values_and_scalars_come_back(tmp_path):
    value = {"a": [1, 2.5, "x", None, (True,)], "s": np.float64(1.5), "b": np.ones(2, bool)}
    for protocol in (4, 5):
        back = load_numpy_pickle(pickle.dumps(value, protocol), "here")
        assert back["a"] == value["a"] and back["s"] == 1.5 and back["s"].dtype == np.float64
        np.testing.assert_array_equal(back["b"], value["b"])


def test_a_set_or_other_builtin_object_is_refused():
    with pytest.raises(PickleRefused, match="refused global 'builtins.print'"):
        load_numpy_pickle(pickle.dumps(print, 4), "here")
    with pytest.raises(PickleRefused, match="holds a set"):
        load_numpy_pickle(pickle.dumps({1, 2}, 4), "here")


def test_an_array_as_a_key_is_refused():
    class Key:  # pickles as an array, where a dict's key must be hashable
        def __reduce__(self):
            return np.zeros(2).__reduce__()

        def __hash__(self):
            return 0

    with pytest.raises(PickleRefused, match="unhashable"):
        load_numpy_pickle(pickle.dumps({Key(): 1}, 4), "here")


def test_a_global_given_a_state_is_refused():
    """BUILD on an allowed global would set attributes of the reader's own rebuilders."""
    frombuffer = b"\x80\x05\x8c\x13numpy._core.numeric\x8c\x0b_frombuffer\x93"
    for build in (b"}\x8c\x01x\x88s", b"N}\x8c\x01x\x88s\x86"):  # a dict; slot state
        with pytest.raises(PickleRefused, match="given a state"):
            load_numpy_pickle(frombuffer + build + b"b.", "here")
    ndarray = b"\x80\x05\x8c\x05numpy\x8c\x07ndarray\x93N}\x8c\x01x\x88s\x86b."
    with pytest.raises(PickleRefused, match="given a state"):
        load_numpy_pickle(ndarray, "here")


def test_errors_are_log_file_errors():
    assert issubclass(LogFileError, HatinspectError) and issubclass(PickleRefused, ValueError)


@pytest.mark.parametrize("name", FILES)
def test_mutated_logs_load_or_fail_in_one_line(name, tmp_path):
    """Bytes of the decompressed pickle flipped, cut or repeated (a fixed seed): each file
    is read, or refused by a HatinspectError; nothing else escapes."""
    data = gzip.decompress((LOGS / f"{name}.pkz").read_bytes())
    rng = np.random.default_rng(0)
    path = tmp_path / "mutated.pkz"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(150):
        mutated = bytearray(data)
        at = int(rng.integers(len(data)))
        kind = rng.integers(3)
        if kind == 0:
            mutated[at] = int(rng.integers(256))
        elif kind == 1:
            mutated = mutated[:at]
        else:
            mutated[at:at] = mutated[at : at + int(rng.integers(1, 64))]
        path.write_bytes(gzip.compress(bytes(mutated)))
        try:
            read_hat_logs(path)
            outcomes["read"] += 1
        except HatinspectError as error:
            assert "\n" not in str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


def test_the_alexnet_logs_name_their_five_layers_and_match_the_writing_process():
    """``networks/alexnet_hat_test.Net`` at its own sizes: its gates, by string of 0 and 1."""
    logs = read_hat_logs(LOGS / "hat-alexnet-np2-p5.pkz")
    expected = truth("hat-alexnet-np2-p5")
    assert logs.layers == ("c1", "c2", "c3", "fc1", "fc2")
    for trajectory in logs.trajectories:
        task = expected["tasks"][str(trajectory.task)]
        assert list(trajectory.points) == task["epochs"]
        for i, layer in enumerate(logs.layers):
            entry = task["layers"][str(i)]
            binary = trajectory.binary(layer)
            assert binary.shape[1] == entry["units"] == (64, 128, 256, 2048, 2048)[i]
            if "gates" in entry:
                np.testing.assert_array_equal(trajectory.gates[layer], entry["gates"])
            else:
                rows = ["".join("1" if on else "0" for on in row) for row in binary]
                assert rows == entry["binary"]
                sums = trajectory.gates[layer].astype(np.float64).sum(axis=1)
                np.testing.assert_allclose(sums, entry["gate_sums"], rtol=1e-6)
    assert [list(row) for row in logs.accuracy] == expected["accuracy"]


@pytest.mark.parametrize("name", [*FILES, "hat-alexnet-np2-p5"])
def test_per_epoch_curves_are_those_logged(name):
    with gzip.open(LOGS / f"{name}.pkz") as file:
        raw = pickle.load(file)  # the committed fixture, written by the original code
    logs = read_hat_logs(LOGS / f"{name}.pkz")
    for task, curves in logs.curves.items():
        assert set(curves) == {"train_loss", "train_acc", "train_reg", "valid_loss",
                               "valid_acc", "valid_reg"}  # fmt: skip
        for key, values in curves.items():
            assert values == tuple(float(v) for v in raw[key][task])
        assert len(curves["valid_loss"]) == len(logs.trajectories[task].points) - 1


@pytest.mark.parametrize(
    "data",
    [b"\x1f\x8b", b"\x1f\x8b\x08\x00" + b"\x00" * 20, gzip.compress(b"not a pickle")],
    ids=["gzip magic alone", "a gzip header alone", "gzip of no pickle"],
)
def test_damaged_logs_opened_as_a_checkpoint_are_one_checkpoint_error(tmp_path, data):
    path = tmp_path / "logs.pkz"
    path.write_bytes(data)
    with pytest.raises(hatinspect.CheckpointError, match=r"logs\.pkz: ") as caught:
        hatinspect.open_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_a_length_claimed_past_the_end_is_refused_before_unpickling(capfd):
    # BYTEARRAY8 claiming 2**47 bytes: the C unpickler's failed allocation printed a
    # SystemError on stderr as it unwound
    data = b"\x80\x05\x96" + (2**47).to_bytes(8, "little") + b"\x00" * 16 + b"."
    with pytest.raises(PickleRefused, match="x: a damaged pickle .*bytearray8"):
        load_numpy_pickle(data, "x")
    assert capfd.readouterr().err == ""
