"""CLArena's metrics files, read torch-free: the ragged acc.csv its CLAccuracy rewrites
after every task and its unlearning metrics, against an independent csv parse; every
malformed file is one line of error."""

from __future__ import annotations

import csv
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.paths import PEERS

from hatinspect.analysis.clarena_output import (
    MetricsFileError,
    accuracy_rows,
    output_files,
    output_folder,
    read_metrics,
)
from hatinspect.analysis.compare import backward_transfer, mean_forgetting

HERE = PEERS / "clarena-main"
TRUTH = json.loads((HERE / "truth.json").read_text())


def _plain_rows(path):
    """The file by the csv module alone: each row's non-empty cells by column name."""
    with open(path, newline="") as file:
        header, *rows = list(csv.reader(file))
    return [{header[i]: float(c) for i, c in enumerate(row) if c != ""} for row in rows]


def test_the_ragged_acc_csv_is_the_accuracy_matrix_the_producer_measured():
    path = HERE / "amnesiac_hat_mlp" / "results" / "acc.csv"
    table = read_metrics(path)
    assert [len(values) for _, _, values in table.rows] == [1, 2, 3]  # rows grow
    expected = TRUTH["amnesiac_hat_mlp/model_after_task_3.pth"]["accuracy"]
    rows = accuracy_rows(table, (1, 2, 3))
    assert [len(row) for row in rows] == [1, 2, 3]
    assert sum(rows, []) == pytest.approx(sum(expected, []))
    for (step, average, values), plain in zip(table.rows, _plain_rows(path), strict=True):
        assert step == plain["after_training_task"] and average == plain["average_accuracy"]
        assert values == {int(k.rsplit("_", 1)[1]): v for k, v in plain.items()
                          if k.startswith("test_on_task_")}  # fmt: skip


@pytest.mark.parametrize("name", ["ag.csv", "dd.csv"])
def test_the_unlearning_metrics_read_as_written(name):
    path = HERE / "amnesiac_hat_mlp" / "results" / name
    table = read_metrics(path)
    (plain,) = _plain_rows(path)
    assert table.average == next(k for k in plain if k.startswith("average"))
    assert table.rows[0][1] == plain[table.average]
    assert table.rows[0][2] == {int(k.rsplit("_", 1)[1]): v for k, v in plain.items()
                                if k.startswith("unlearning_test_on_task_")}  # fmt: skip


def test_an_output_folder_and_its_acc_csv_find_the_saved_models():
    folder = HERE / "amnesiac_hat_mlp"
    found = output_files(folder)
    assert {"acc.csv", "ag.csv", "dd.csv", "model_after_task_3.pth"} <= set(found)
    assert output_folder(folder / "results" / "acc.csv") == folder
    assert output_files(HERE / "nowhere") == {} if (HERE / "nowhere").is_dir() else True


def test_accuracy_rows_need_every_stored_task():
    table = read_metrics(HERE / "adahat_mlp" / "results" / "acc.csv")
    assert accuracy_rows(table, (1, 2, 3, 4)) is None
    assert accuracy_rows(table, (1, 2)) == [r[:1 + i] for i, r in enumerate(
        TRUTH["adahat_mlp/cl_model.pth"]["accuracy"][:2])]  # fmt: skip


def test_forgetting_and_backward_transfer_by_hand():
    # R[t][j]: accuracy on task j after task t
    matrix = [[0.9], [0.7, 0.8], [0.6, 0.85, 0.5]]
    assert backward_transfer(matrix, 0) is None
    assert backward_transfer(matrix, 1) == pytest.approx(0.7 - 0.9)
    assert backward_transfer(matrix, 2) == pytest.approx(((0.6 - 0.9) + (0.85 - 0.8)) / 2)
    # forgetting: best earlier accuracy minus the final one, never a gain
    assert mean_forgetting(matrix, 2) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.85)) / 2)


BAD = {
    "empty": b"",
    "foreign header": b"epoch,loss\n1,0.5\n",
    "two averages": b"average_a,average_b,test_on_task_1\n1,1,1\n",
    "not a number": b"after_training_task,average_accuracy,test_on_task_1\n1,high,0.5\n",
    "infinite": b"after_training_task,average_accuracy,test_on_task_1\n1,inf,0.5\n",
    "task id": b"after_training_task,average_accuracy,test_on_task_1\n-1,0.5,0.5\n",
    "long row": b"after_training_task,average_accuracy,test_on_task_1\n1,0.5,0.5,0.5\n",
    "not utf-8": b"after_training_task,average_accuracy,test_on_task_1\n1,\xff,0.5\n",
}


@pytest.mark.parametrize("case", BAD)
def test_a_malformed_metrics_file_is_one_line_of_error(tmp_path, case):
    path = tmp_path / "acc.csv"
    path.write_bytes(BAD[case])
    with pytest.raises(MetricsFileError) as error:
        read_metrics(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_an_oversized_metrics_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import hatinspect.analysis.clarena_output as module

    monkeypatch.setattr(module, "MAX_CSV_BYTES", 64)
    path = tmp_path / "acc.csv"
    path.write_text("after_training_task,average_accuracy,test_on_task_1\n" + "1,0.5,0.5\n" * 20)
    with pytest.raises(MetricsFileError, match="over"):
        read_metrics(path)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_read_or_are_refused_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "acc.csv"
    seed = (HERE / "amnesiac_hat_mlp" / "results" / "acc.csv").read_bytes()
    for candidate in (data, seed[: len(data)] + data, data + seed):
        path.write_bytes(candidate)
        try:
            table = read_metrics(path)
        except MetricsFileError as error:
            assert "\n" not in str(error)
        else:
            assert all(isinstance(step, int) for step, _, _ in table.rows)


def test_loss_cls_csv_reads_as_written():
    path = HERE / "adahat_mlp" / "results" / "loss_cls.csv"
    table = read_metrics(path)
    assert table.average == "average_classification_loss"
    assert [len(values) for _, _, values in table.rows] == [1, 2, 3]
    for (_, average, values), plain in zip(table.rows, _plain_rows(path), strict=True):
        assert average == plain["average_classification_loss"]
        assert sorted(values.values()) == sorted(v for k, v in plain.items() if "test_on" in k)


def test_clarena_110s_ad_csv_reads_as_written():
    path = PEERS / "clarena-1.1.0-results" / "ad.csv"  # by 1.1.0's CULAccuracyDifference
    table = read_metrics(path)
    assert table.average == "average_accuracy_difference"
    assert [values for _, _, values in table.rows] == [
        {1: 0.0625, 2: -0.125},
        {1: 0.03125, 2: 0.0, 3: -0.25},
    ]
    assert [average for _, average, _ in table.rows] == [
        row["average_accuracy_difference"] for row in _plain_rows(path)
    ]
