"""Tables as people see them: golden files at a fixed width, no colour, no escape codes.

Regenerate after an intended change with HATINSPECT_UPDATE_GOLDEN=1.
"""

import os
from pathlib import Path

import pytest
from cli_runs import run, write_examples

GOLDEN = Path(__file__).parent / "golden"

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


def test_per_task_columns_that_do_not_fit_are_left_out_with_a_hint(tmp_path):
    from inspect_checkpoints import MLP, make_checkpoint, random_masks, write_native

    write_native(tmp_path / "many.safetensors", make_checkpoint(MLP, random_masks(MLP, range(12))))
    compact = run("masks", "many.safetensors", COLUMNS="120").stdout
    assert "task 0" not in compact and "t11" in compact and "(tN: units task N uses)" in compact
    squeezed = run("masks", "many.safetensors", COLUMNS="60").stdout
    assert "t0" not in squeezed and "…" not in squeezed
    assert "12 per-task columns do not fit in 60 columns" in squeezed
    chosen = run("masks", "many.safetensors", "-t", "3", "-t", "7").stdout
    assert "task 3" in chosen and "task 7" in chosen and "do not fit" not in chosen


def test_overlap_cells_narrow_before_the_matrix_is_left_out(tmp_path):
    from inspect_checkpoints import MLP, make_checkpoint, random_masks, write_native

    write_native(tmp_path / "many.safetensors", make_checkpoint(MLP, random_masks(MLP, range(10))))
    assert "Shared units (Jaccard)" in run("overlap", "many.safetensors", COLUMNS="200").stdout
    narrowed = run("overlap", "many.safetensors").stdout
    assert narrowed.startswith("Jaccard index of the kept units between tasks, the network")
    assert "…" not in narrowed
    hidden = run("overlap", "many.safetensors", COLUMNS="40").stdout
    assert hidden.startswith("(10 tasks do not fit in 40 columns")
