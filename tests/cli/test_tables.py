"""Tables as people see them: golden files at a fixed width, no colour, no escape codes.

Regenerate after an intended change with HATINSPECT_UPDATE_GOLDEN=1.
"""

import os

import pytest
from support.cli_runs import run, write_examples
from support.paths import GOLDEN

CASES = {
    "masks": ["masks", "net.safetensors"],
    "masks_show": ["masks", "conv.safetensors", "-t", "0", "-t", "2", "-l", "block/*", "--show"],
    "capacity": ["capacity", "net.safetensors"],
    "capacity_by_task": ["capacity", "net.safetensors", "--by-task"],
    "measure": ["measure", "conv.safetensors", "-l", "block/conv1", "--of", "summative"],
    "measure_task": [
        "measure",
        "net.safetensors",
        "-l",
        "fc/1",
        "--of",
        "task:2",
        "--aggregation",
        "max",
    ],
    "overlap": ["overlap", "net.safetensors", "--per-layer", "-x", "fc/2"],
    "audit": ["audit", "net.safetensors", "net.safetensors"],
    "info": ["info", "net.safetensors"],
}


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)


@pytest.mark.parametrize("name", CASES)
def test_golden_table(name):
    result = run(*CASES[name])
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout  # piped: no ANSI codes
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("HATINSPECT_UPDATE_GOLDEN"):
        golden.write_text(result.stdout, encoding="utf-8")
    assert result.stdout == golden.read_text(encoding="utf-8")


def test_width_follows_the_terminal():
    wide = run("capacity", "net.safetensors").stdout.splitlines()
    narrow = run("capacity", "net.safetensors", COLUMNS="60").stdout.splitlines()
    assert max(map(len, wide)) > 60 >= max(map(len, narrow))


def test_no_escape_codes_when_piped_even_without_no_color():
    result = run("audit", "net.safetensors", "net.safetensors", NO_COLOR=None)
    assert result.exit_code == 0 and "\x1b" not in result.stdout


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("1", False)])
def test_no_color_is_honoured(no_color, coloured):
    result = run("audit", "net.safetensors", "net.safetensors", FORCE_COLOR="1", NO_COLOR=no_color)
    assert ("\x1b[32m" in result.stdout) is coloured  # the green verdict


def _header_cells(text: str) -> list[str]:
    """Every header cell of every table in `text`, one string per cell (lines joined)."""
    cells = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("┏"):
            header = [row for row in lines[i + 1 :] if row.startswith("┃")]
            header = header[: next(k for k, row in enumerate(lines[i + 1 :]) if row[0] != "┃")]
            columns = zip(*(row.split("┃")[1:-1] for row in header), strict=True)
            cells += [" ".join(part.strip() for part in column).strip() for column in columns]
    return cells


def test_per_task_columns_that_do_not_fit_are_folded_never_dropped(tmp_path):
    from support.inspect_checkpoints import MLP, make_checkpoint, random_masks, write_native

    write_native(tmp_path / "many.safetensors", make_checkpoint(MLP, random_masks(MLP, range(12))))
    compact = run("masks", "many.safetensors", COLUMNS="120").stdout
    assert "task 0" not in compact and "t11" in compact and "(tN: units task N uses)" in compact
    folded = run("masks", "many.safetensors", COLUMNS="60")
    assert "…" not in folded.stdout and folded.stderr == ""
    assert max(map(len, folded.stdout.splitlines())) <= 60
    headers = _header_cells(folded.stdout.split("by how many")[0])
    for column in [*(f"t{t}" for t in range(12)), "cumulative", "summative max", "summative mean"]:
        assert headers.count(column) == 1, (column, headers)
    assert headers.count("layer") == headers.count("units") > 1  # repeated in each table


def test_chosen_tasks_and_summaries_are_all_kept(tmp_path):
    from support.inspect_checkpoints import MLP, make_checkpoint, random_masks, write_native

    write_native(tmp_path / "many.safetensors", make_checkpoint(MLP, random_masks(MLP, range(12))))
    chosen = ["masks", "many.safetensors", *[a for t in (1, 3, 5, 7) for a in ("-t", str(t))]]
    for columns in ("70", "40"):
        folded = run(*chosen, COLUMNS=columns)
        assert all(f" t{t} " in folded.stdout for t in (1, 3, 5, 7)), folded.stdout
        assert "mean" in folded.stdout and folded.stderr == ""
        assert "…" not in folded.stdout
        assert max(map(len, folded.stdout.splitlines())) <= int(columns)


def test_overlap_cells_narrow_then_fold(tmp_path):
    from support.inspect_checkpoints import MLP, make_checkpoint, random_masks, write_native

    write_native(tmp_path / "many.safetensors", make_checkpoint(MLP, random_masks(MLP, range(10))))
    assert "Shared units (Jaccard)" in run("overlap", "many.safetensors", COLUMNS="200").stdout
    narrowed = run("overlap", "many.safetensors").stdout
    assert narrowed.startswith("Jaccard index of the kept units between tasks, the network")
    assert "…" not in narrowed
    folded = run("overlap", "many.safetensors", COLUMNS="40")
    assert folded.stdout.startswith("Shared units (Jaccard) between tasks,")
    assert "…" not in folded.stdout and max(map(len, folded.stdout.splitlines())) <= 40
    header_cells = [
        c
        for line in folded.stdout.splitlines()
        if line.startswith("┃ task")
        for c in line.split("┃")[2:-1]
    ]
    assert sorted(int(c) for c in header_cells) == list(range(10))
