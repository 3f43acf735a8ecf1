"""The Markdown report's cells: valid Markdown that reads as its text, as plain text (no
HTML entities such as ``&#95;``) and rendered (CommonMark with tables, by markdown-it)."""

import html

import pytest
from markdown_it import MarkdownIt
from support.report_runs import HOSTILE

import hatinspect
from hatinspect.render.report import markdown_cell

CASES = [
    *HOSTILE.values(),
    "s_max",
    "sparsity_factor",
    "_c_ and __d__",
    "a*b*c",
    "x\\y | z",
    "a&amp;b &#91;",
    "~~gone~~",
    "two\nlines",
]


def rendered_cell(cell: str) -> str:
    table = (
        MarkdownIt("commonmark").enable("table").render(f"| k | v |\n|---|---|\n| x | {cell} |\n")
    )
    return table.split("<td>")[-1].split("</td>")[0]


@pytest.mark.parametrize("text", CASES)
def test_a_cell_renders_as_its_own_text_and_nothing_else(text):
    out = rendered_cell(markdown_cell(text))
    assert "<" not in out  # no tag: no link, code, emphasis, HTML
    assert html.unescape(out) == " ".join(text.splitlines())


def test_names_with_underscores_read_as_written():
    assert markdown_cell("s_max") == "s_max"
    assert markdown_cell("sparsity_factor = 0.75") == "sparsity_factor = 0.75"


def test_the_report_reads_as_text(tmp_path):
    from support.inspect_checkpoints import make_checkpoint, write_native

    write_native(tmp_path / "net.safetensors", make_checkpoint(),
                 metadata={"s_max": 400, "sparsity_factor": 0.75, "note": "[a] *b*"})  # fmt: skip
    hatinspect.report(tmp_path / "net.safetensors", output=tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "&#" not in text and "| s_max | 400 |" in text
    assert "| sparsity_factor | 0.75 |" in text and "\\[a\\] \\*b\\*" in text


def test_the_report_shows_the_accuracy_view_forgetting_under_the_matrix(tmp_path):
    import json

    from support.inspect_checkpoints import MLP, make_checkpoint, random_masks, write_native

    # forgetting by hand: task 1 max(0.9, 0.7) - 0.6, task 2 0.8 - 0.85
    matrix = [[0.9], [0.7, 0.8], [0.6, 0.85, 0.95]]
    checkpoint = make_checkpoint(MLP, random_masks(MLP, (1, 2, 3)))
    write_native(
        tmp_path / "net.safetensors", checkpoint, metadata={"accuracy": json.dumps(matrix)}
    )
    for suffix in ("md", "html"):
        hatinspect.report(tmp_path / "net.safetensors", output=tmp_path / f"r.{suffix}")
    markdown = (tmp_path / "r.md").read_text()
    assert "| forgetting | 30.0 pt | -5.0 pt |  |" in markdown
    assert "| 3 | 60.0% | 85.0% | 95.0% |" in markdown
    page = (tmp_path / "r.html").read_text()
    assert "<tr><td>forgetting</td><td>30.0 pt</td><td>-5.0 pt</td><td></td></tr>" in page
    assert "[[" not in markdown + page
