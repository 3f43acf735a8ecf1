"""Results in a notebook: the HTML holds the command's own tables, cell for cell, escaped;
a figure where one says more, as inline SVG; a one-line repr; rich prints the command's
tables. Nothing of this loads matplotlib until a figure is drawn."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from support.cli_runs import modules_left_out, run, run_in_fresh_python, write_examples
from support.html_tables import cells_of
from support.inspect_checkpoints import make_checkpoint, write_native
from support.paths import REPO

import hatinspect

# each API call and the command that prints the same tables
CASES = {
    "info": (lambda: hatinspect.info("net.safetensors"), ["info", "net.safetensors"]),
    "masks": (lambda: hatinspect.masks("net.safetensors"), ["masks", "net.safetensors"]),
    "capacity": (lambda: hatinspect.capacity("conv.safetensors"), ["capacity", "conv.safetensors"]),
    "measure": (
        lambda: hatinspect.measure("net.safetensors", "fc/1"),
        ["measure", "net.safetensors", "-l", "fc/1"],
    ),
    "overlap": (lambda: hatinspect.overlap("conv.safetensors"), ["overlap", "conv.safetensors"]),
    "audit": (
        lambda: hatinspect.audit("net.safetensors", "later.safetensors"),
        ["audit", "net.safetensors", "later.safetensors"],
    ),
    "compare": (
        lambda: hatinspect.compare("net.safetensors", "later.safetensors"),
        ["compare", "net.safetensors", "later.safetensors"],
    ),
}
FIGURES = {"masks": 1, "capacity": 1, "overlap": 1, "compare": 1, "info": 0, "measure": 0,
           "audit": 0}  # fmt: skip


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)
    write_native(tmp_path / "later.safetensors", make_checkpoint(), metadata={"s_max": 400})


def printed_rows(text: str) -> list[list[str]]:
    """The rows of the tables a command printed (rich's box: cells between │ or ┃;
    a two-line header's lines joined as <br> reads them)."""
    rows, header = [], None
    for line in text.splitlines():
        if line.startswith("┃"):
            parts = [p.strip() for p in line.strip("┃").split("┃")]
            header = (
                parts
                if header is None
                else [f"{a} {b}".strip() for a, b in zip(header, parts, strict=True)]
            )
            continue
        if header is not None:
            rows.append(header)
            header = None
        if line.startswith("│"):
            rows.append([p.strip() for p in line.strip("│").split("│")])
    return rows


@pytest.mark.parametrize("case", list(CASES))
def test_the_html_holds_the_commands_tables(case):
    make, args = CASES[case]
    printed = run(*args, COLUMNS="1000")
    assert printed.exit_code in (0, 1), printed.stderr  # a failed audit still prints
    html = make()._repr_html_()
    assert cells_of(html) == printed_rows(printed.stdout)


def test_the_html_masks_table_is_what_the_masks_say():
    # MLP_MASKS, fc/0 over tasks 1, 2, 4: [1,1,0,0,0], [0,1,1,0,0], [0,0,0,1,0]
    rows = cells_of(hatinspect.masks("net.safetensors")._repr_html_())
    assert rows[0] == ["layer", "units", "task 1", "task 2", "task 4", "cumulative",
                       "summative max", "summative mean"]  # fmt: skip
    # summative [1, 2, 1, 1, 0]: max 2, mean 5 / 5
    assert rows[1] == ["fc/0", "5", "2 (40%)", "2 (40%)", "1 (20%)", "4 (80%)", "2", "1.00"]


@pytest.mark.parametrize("case", list(CASES))
def test_a_figure_where_one_says_more(case):
    html = CASES[case][0]()._repr_html_()
    assert html.count("<svg") == FIGURES[case]
    assert "<?xml" not in html and "<!DOCTYPE" not in html  # inline, not a document


def test_the_figure_options_reach_the_inline_figure():
    result = hatinspect.overlap("conv.safetensors", figsize=(4, 3), title="Shared, my way")
    svg = re.search(r"<svg[^>]*>", result._repr_html_()).group(0)
    assert 'width="288pt" height="216pt"' in svg  # 4 x 3 inches at 72 points
    assert "Shared, my way" in result._repr_html_()


def test_a_bad_figsize_is_refused_as_the_command_refuses_it():
    with pytest.raises(ValueError, match="between 0.5 and 50 inches"):
        hatinspect.masks("net.safetensors", figsize=(0.1, 3))


def test_what_a_file_names_is_escaped(tmp_path):
    name = "<img src=x onerror=alert(1)>.safetensors"
    write_native(tmp_path / name, make_checkpoint())
    for result in (hatinspect.info(name), hatinspect.masks(name), hatinspect.capacity(name)):
        html = result._repr_html_()
        assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_report_shows_every_part():
    files = [REPO / "examples" / "hat-toy" / f"after-task-{t}.safetensors" for t in (1, 2, 3)]
    html = hatinspect.report(*files)._repr_html_()  # one run of three files
    for heading in ("Capacity of", "Masks of", "between tasks", "Audit of"):
        assert heading in html
    assert html.count("Audit of") == 2  # each file against the next
    assert html.count("<svg") == 3  # one run: capacity, masks, overlap


def test_several_runs_are_compared_too():
    html = hatinspect.report("net.safetensors", "conv.safetensors")._repr_html_()
    assert "2 run(s), task by task" in html
    assert html.count("<svg") == 2 * 3 + 1  # each run's three, and the capacity curves


@pytest.mark.parametrize("case", list(CASES))
def test_the_repr_is_one_line_naming_the_type(case):
    result = CASES[case][0]()
    text = repr(result)
    assert "\n" not in text and "array(" not in text and len(text) < 300
    assert text.startswith(f"<{type(result).__name__} ") and text.endswith(">")


def test_the_repr_counts_as_the_masks_do():
    # MLP_MASKS: fc/0 uses 4 of 5 units, fc/1 4 of 4, fc/2 3 of 3: 11 of 12
    assert repr(hatinspect.masks("net.safetensors")) == (
        "<MaskReport net.safetensors: 3 tasks, 3 layers, 11 of 12 units used (91.7%)>"
    )


@pytest.mark.parametrize("case", ["info", "masks", "capacity", "overlap", "measure"])
def test_rich_prints_the_commands_tables(case):
    make, args = CASES[case]
    out = io.StringIO()
    Console(file=out, width=100, color_system=None, highlight=False).print(make())
    assert out.getvalue() == run(*args).stdout  # COLUMNS=100, as this console


def test_rich_folds_to_the_consoles_width():
    out = io.StringIO()
    Console(file=out, width=40, color_system=None, highlight=False).print(
        hatinspect.capacity("conv.safetensors")
    )
    assert max(map(len, out.getvalue().splitlines())) <= 40
    assert out.getvalue() == run("capacity", "conv.safetensors", COLUMNS="40").stdout


def test_showing_loads_matplotlib_only_to_draw(tmp_path):
    then = (
        "import hatinspect\n"
        "checkpoint = hatinspect.open_checkpoint('net.safetensors')\n"
        "repr(checkpoint), checkpoint._repr_html_()\n"
        "repr(hatinspect.masks(checkpoint))\n"
        "hatinspect.audit(checkpoint, checkpoint)._repr_html_()\n"
        + modules_left_out("torch", "matplotlib")
        + "\nhatinspect.masks(checkpoint)._repr_html_()\n"
        "assert 'matplotlib' in sys.modules and 'torch' not in sys.modules\n"
    )
    result = run_in_fresh_python([], then, tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_file_without_tasks_shows_its_tables_and_no_figure(tmp_path):
    write_native(tmp_path / "empty.safetensors", make_checkpoint(masks={}))
    for name in ("masks", "capacity", "overlap", "info"):
        result = getattr(hatinspect, name)("empty.safetensors")
        html = result._repr_html_()
        assert "<svg" not in html and "0 tasks" in repr(result), name
        # the command's own words: capacity has no table for a file that protects nothing
        shown = "nothing is protected (no task stored)" if name == "capacity" else "<table"
        assert shown in html, name
