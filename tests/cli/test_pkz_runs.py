"""compare and report given the original HAT code's .pkz logs alone: the logged accuracy
and the units at each task's kept epoch, parameters shown as unknown, one note saying why."""

import json

from support.cli_runs import one_error_line, run
from support.paths import PEERS, REPO

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


def test_info_on_the_logs_still_points_to_trajectory():
    one_error_line(run("info", FILE), "`hatinspect trajectory` reads such logs")
