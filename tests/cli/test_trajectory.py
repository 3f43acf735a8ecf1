"""The trajectory command on the original HAT code's logs: its table, JSON and CSV against
what the writing process computed, its figure, and its errors in one line."""

import csv
import gzip
import io
import json
import pickle

from support.cli_runs import one_error_line, run
from support.paths import PEERS, REPO

LOGS = PEERS / "original-hat-logs"
FILE = LOGS / "hat-mlp-np2-p5.pkz"
TRUTH = json.loads((LOGS / "truth-hat-mlp-np2-p5.json").read_text())
LAYERS = ["fc1", "fc2"]


def _expected(task: int, layer: str) -> dict:
    return TRUTH["tasks"][str(task)]["layers"][str(LAYERS.index(layer))]


def test_json_gives_each_settle_point_and_switches():
    result = run("trajectory", FILE, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == 1 and document["unit"] == "epoch"
    assert document["tasks"] == [0, 1, 2] and len(document["layers"]) == 6
    for entry in document["layers"]:
        expected = _expected(entry["task"], entry["layer"])
        assert entry["settled_after"] == expected["settled_after"]
        assert entry["switched_on"] == expected["switched_on"]
        assert entry["switched_off"] == expected["switched_off"]
        assert entry["active"] == [sum(row) for row in expected["binary"]]
        assert entry["points"] == [-1, 0, 1, 2, 3]
    assert document["kept"] == {t: e["best_epoch"] for t, e in TRUTH["tasks"].items()}
    assert any("by index" in note for note in document["notes"])
    for task, kept in document["kept"].items():  # the kept epoch: the least validation loss
        losses = document["curves"][task]["valid_loss"]
        assert len(losses) == 4 and losses.index(min(losses)) == kept


def test_csv_has_a_row_a_task_layer_and_epoch():
    result = run("trajectory", FILE, "-t", "1", "-l", "fc2", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    expected = _expected(1, "fc2")
    assert [int(r["point"]) for r in rows] == [-1, 0, 1, 2, 3]
    assert {(r["task"], r["layer"]) for r in rows} == {("1", "fc2")}
    assert [int(r["switched_off"]) for r in rows[1:]] == expected["switched_off"]
    assert [int(r["active"]) for r in rows] == [sum(b) for b in expected["binary"]]


def test_the_table_names_each_task_and_layer():
    result = run("trajectory", FILE)
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("│ ")]
    cells = [[c.strip() for c in line.strip("│").split("│")] for line in lines]
    found = {(int(c[0]), c[1]): int(c[3].rstrip("*")) for c in cells if len(c) > 4}
    assert found == {
        (t, layer): _expected(t, layer)["settled_after"] for t in range(3) for layer in LAYERS
    }
    assert "note: training kept the model of the least validation loss" in result.stderr
    kept = {int(t): e["best_epoch"] for t, e in TRUTH["tasks"].items()}
    starred = {(int(c[0]), c[1]) for c in cells if len(c) > 4 and c[3].endswith("*")}
    assert starred == {key for key, settled in found.items() if settled > kept[key[0]]}
    assert ("*: settled after the epoch" in result.stderr) == bool(starred)


def test_the_figure_is_written(tmp_path):
    figure = tmp_path / "masks.svg"
    result = run("trajectory", FILE, "--figure", figure, "-t", "0")
    assert result.exit_code == 0, result.stderr
    text = figure.read_text()
    assert text.count("fc1 (12)") == 1 and "fc2 (12)" in text
    assert f"wrote {figure}" in result.stderr


def test_the_shipped_example_is_the_fixture():
    assert (REPO / "examples" / "hat-logs.pkz").read_bytes()[10:] == FILE.read_bytes()[10:]


def test_errors_are_one_line(tmp_path):
    one_error_line(run("trajectory", FILE, "-t", "9"), "no trajectory of task 9")
    hostile = tmp_path / "logs.pkz"
    hostile.write_bytes(gzip.compress(b"cos\nsystem\n(S'echo hi'\ntR."))
    assert run("trajectory", hostile).exit_code == 1
    one_error_line(run("trajectory", hostile), "refused global 'os.system'")
    one_error_line(run("trajectory", tmp_path / "none.pkz"), "no such file")
    plain = tmp_path / "plain.pkz"
    plain.write_bytes(gzip.compress(pickle.dumps({"mask": {0: "x"}}, 4)))
    one_error_line(run("trajectory", plain), "mask[0]")


def test_a_figure_of_an_unknown_kind_is_a_usage_error(tmp_path):
    result = run("trajectory", FILE, "--figure", tmp_path / "masks.txt")
    assert result.exit_code == 2


def test_golden_table(tmp_path, monkeypatch):
    """The table as people see it, at the fixed width (HATINSPECT_UPDATE_GOLDEN=1 remakes it)."""
    import os
    import shutil

    from support.paths import GOLDEN

    monkeypatch.chdir(tmp_path)
    shutil.copy(FILE, tmp_path / "hat-logs.pkz")
    result = run("trajectory", "hat-logs.pkz", "--width", "80")
    assert result.exit_code == 0 and "\x1b" not in result.stdout
    golden = GOLDEN / "trajectory.txt"
    if os.environ.get("HATINSPECT_UPDATE_GOLDEN"):
        golden.write_text(result.stdout, encoding="utf-8")
    assert result.stdout == golden.read_text(encoding="utf-8")
