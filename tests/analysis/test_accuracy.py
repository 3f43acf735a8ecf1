"""The accuracy view's figures, each against a value worked out by hand."""

import json

import pytest
from support.cli_runs import run
from support.inspect_checkpoints import make_checkpoint, write_native

from hatinspect.analysis.accuracy import (
    AccuracyView,
    average_accuracy,
    backward_transfer,
    forgetting,
    mean_forgetting,
)

# after task 0: 0.9; after 1: task 0 fell to 0.7; after 2: task 0 at 0.6, task 1 rose to 0.85
MATRIX = [[0.9], [0.7, 0.8], [0.6, 0.85, 0.95]]


def test_each_figure_by_hand():
    assert average_accuracy(MATRIX, 2) == pytest.approx((0.6 + 0.85 + 0.95) / 3)
    # best before task 2 minus now: task 0 max(0.9, 0.7) - 0.6, task 1 max(0.8) - 0.85
    assert forgetting(MATRIX, 2) == pytest.approx([0.3, -0.05])
    assert mean_forgetting(MATRIX, 2) == pytest.approx(0.125)
    # now minus right after it was learned: 0.6 - 0.9, 0.85 - 0.8
    assert backward_transfer(MATRIX, 2) == pytest.approx(-0.125)
    assert mean_forgetting(MATRIX, 0) is None and backward_transfer(MATRIX, 0) is None


def test_forgetting_takes_the_best_earlier_row_not_the_first():
    matrix = [[0.5], [0.9, 0.8], [0.7, 0.8, 0.9]]  # task 0 improved, then dropped
    assert forgetting(matrix, 2) == pytest.approx([0.2, 0.0])
    assert backward_transfer(matrix, 2) == pytest.approx(((0.7 - 0.5) + 0.0) / 2)


def test_the_view_reads_its_last_row():
    view = AccuracyView((1, 2, 3), tuple(map(tuple, MATRIX)))
    assert view.average_accuracy == pytest.approx(0.8)
    assert view.forgetting == pytest.approx([0.3, -0.05])
    assert (view.mean_forgetting, view.backward_transfer) == pytest.approx((0.125, -0.125))


def test_info_shows_the_matrix_forgetting_and_summary(tmp_path):
    path = tmp_path / "acc.safetensors"
    write_native(path, _three_tasks(), metadata={"accuracy": json.dumps(MATRIX)})
    out = run("info", path).stdout
    assert "[[" not in out
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in out.splitlines()
        if line.startswith("│ task") or line.startswith("│ forgetting")
    }
    assert rows["task 3"] == ["60.0%", "85.0%", "95.0%"]
    assert rows["forgetting"] == ["30.0 pt", "-5.0 pt", ""]
    assert "average accuracy 80.0%, mean forgetting 12.5 pt, backward transfer -12.5 pt" in out


def _three_tasks():
    from support.inspect_checkpoints import MLP, random_masks

    return make_checkpoint(MLP, random_masks(MLP, (1, 2, 3)))
