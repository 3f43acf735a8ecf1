"""examples/inspect.ipynb runs from top to bottom in a real kernel, and what it shows is
the results' HTML: their tables and figures, no error anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.html_tables import TableCells

nbclient = pytest.importorskip("nbclient", reason="needs the notebook extra: hatinspect[notebook]")
nbformat = pytest.importorskip("nbformat", reason="needs the notebook extra: hatinspect[notebook]")
pytest.importorskip("ipykernel", reason="needs the notebook extra: hatinspect[notebook]")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "inspect.ipynb"


@pytest.fixture(scope="module")
def executed():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    root = str(EXAMPLES.parent)  # the kernel imports this checkout's hatinspect
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    client.execute(env={**os.environ, "PYTHONPATH": path})
    return notebook


def html_of(cell) -> str:
    return "".join(
        output["data"]["text/html"]
        for output in cell.outputs
        if "data" in output and "text/html" in output["data"]
    )


def code_cells(notebook, fragment: str):
    return [c for c in notebook.cells if c.cell_type == "code" and fragment in c.source]


def test_no_cell_fails(executed):
    for cell in executed.cells:
        if cell.cell_type == "code":
            kinds = [output["output_type"] for output in cell.outputs]
            assert "error" not in kinds, cell.source
            stderr = [o for o in cell.outputs if o.get("name") == "stderr"]
            assert not stderr, (cell.source, stderr)


@pytest.mark.parametrize(
    ("fragment", "heading", "row"),
    [
        # the shipped run: 100 units a layer (examples/README.md)
        ("hatinspect.masks(checkpoint)", "Masks of hat-toy/after-task-5.safetensors", "fc/0"),
        ("hatinspect.capacity(RUN)", "Capacity of", "total"),
        ("hatinspect.overlap(checkpoint)", "between tasks, the network: 300 units", "1"),
        ("hatinspect.compare(", "run(s), task by task", "task 1"),
        ("hatinspect.audit(", "Audit of", "total"),
    ],
)
def test_each_result_shows_its_tables(executed, fragment, heading, row):
    (cell,) = code_cells(executed, fragment)
    html = html_of(cell)
    assert heading in html
    tables = TableCells()
    tables.feed(html)
    assert "table" in tables.tags
    assert any(cells and cells[0] == row for cells in tables.rows), tables.rows


def test_the_figures_are_inline_svg(executed):
    for fragment in ("hatinspect.masks(checkpoint)", "hatinspect.capacity(RUN)",
                     "hatinspect.overlap(checkpoint)", "hatinspect.compare("):  # fmt: skip
        (cell,) = code_cells(executed, fragment)
        assert html_of(cell).count("<svg") == 1, fragment


def test_figure_options_reach_the_figure(executed):
    (cell,) = code_cells(executed, 'layer="fc/1"')
    html = html_of(cell)
    assert "fc/1, unit by unit" in html  # the title, kept as text in the SVG
    assert 'width="360pt" height="180pt"' in html  # 5 x 2.5 inches at 72 points each


def test_the_plain_repr_is_one_line(executed):
    (cell,) = code_cells(executed, "print(repr(checkpoint))")
    (text,) = [o["text"] for o in cell.outputs if o.get("name") == "stdout"]
    assert text.strip().count("\n") == 0
    assert text.startswith("<Checkpoint hat-toy/after-task-5.safetensors: HATMaskMLP")
    assert "5 tasks, 3 layers" in text


def test_the_audit_passes(executed):
    (cell,) = code_cells(executed, "hatinspect.audit(")
    (text,) = [o["text"] for o in cell.outputs if o.get("name") == "stdout"]
    assert text.strip() == "True"
    assert "bit-identical" in html_of(cell)
