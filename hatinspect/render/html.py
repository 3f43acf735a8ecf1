"""Results as HTML for a notebook: the tables the command prints, as compact HTML tables,
and, where a figure says more, the command's figure as inline SVG.

The tables come from ``render.layout.tables`` (the CLI's own, unfolded: a notebook
scrolls); every string from a file is escaped. Figures are drawn by ``render.drawing``
with matplotlib's SVG backend, imported only when one is drawn.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from functools import singledispatch
from html import escape
from pathlib import Path

from rich.style import Style
from rich.table import Table
from rich.text import Text

from hatinspect.analysis.capacity import CapacityReport
from hatinspect.analysis.compare import Comparison
from hatinspect.analysis.masks import MaskReport
from hatinspect.analysis.overlap import OverlapReport
from hatinspect.analysis.report import Report
from hatinspect.analysis.runs import RunCapacity
from hatinspect.analysis.trajectory import TrajectoryReport
from hatinspect.model.errors import HatinspectError
from hatinspect.render.layout import Note, cell_rows, tables

# scoped to the result's own <div>: a notebook's other cells keep their look
CSS = (
    "<style>"
    ".hatinspect table{border-collapse:collapse;margin:0.2em 0 0.8em;font-size:0.85em}"
    ".hatinspect th,.hatinspect td{padding:0.1em 0.6em;border-bottom:1px solid #ddd;"
    "white-space:nowrap}"
    ".hatinspect th{text-align:left}.hatinspect td.n,.hatinspect th.n{text-align:right}"
    ".hatinspect tr.rule td{border-bottom:1px solid #888}"
    ".hatinspect p{margin:0.3em 0}.hatinspect .heading{font-weight:bold;margin-top:0.8em}"
    ".hatinspect .note{color:#777}.hatinspect figure{margin:0.4em 0}"
    "</style>"
)
FIGURE_OPTIONS = ("figsize", "title", "cmap", "dpi")  # a `Look`'s; the rest go to the drawing


def html(result) -> str:
    """`result` as one HTML fragment: its tables, then its figures."""
    parts = [renderables_html(tables(result)), *map(figure_html, figures(result))]
    return f'<div class="hatinspect">{CSS}{"".join(parts)}</div>'


def renderables_html(renderables: Iterable) -> str:
    """What `tables` returns, in HTML: headings and lines as paragraphs, tables as
    tables, notes (once each) after them."""
    out, notes = [], []
    for renderable in renderables:
        if isinstance(renderable, Note):
            notes += [] if renderable in notes else [renderable]
        elif isinstance(renderable, Table):
            out.append(table_html(renderable))
        elif isinstance(renderable, Text):
            heading = renderable.style == "bold"
            out.append(_paragraph(renderable, "heading" if heading else None))
        else:
            out.append(f"<p>{escape(str(renderable))}</p>")
    out += [f'<p class="note">note: {escape(note)}</p>' for note in notes]
    return "".join(out)


def table_html(table: Table) -> str:
    columns = table.columns
    numeric = [column.justify == "right" for column in columns]
    head = ""
    if table.show_header:
        cells = ["<br>".join(map(escape, cell_rows(c.header)[0].split("\n"))) for c in columns]
        head = (
            "<thead><tr>"
            + "".join(
                f"<th{_numeric(n)}>{cell}</th>" for cell, n in zip(cells, numeric, strict=True)
            )
            + "</tr></thead>"
        )
    body = []
    cells_of = [list(column.cells) for column in columns]
    for index, row in enumerate(table.rows):
        per_column = [cell_rows(cells[index]) for cells in cells_of]
        lines = max(map(len, per_column))
        for line in range(lines):
            ruled = row.end_section and line == lines - 1
            cells = [cells[line] if line < len(cells) else "" for cells in per_column]
            body.append(_row(cells, numeric, row.style, ruled))
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _row(cells: list[str], numeric: list[bool], style, ruled: bool) -> str:
    css = _css(style)
    attributes = (' class="rule"' if ruled else "") + (f' style="{css}"' if css else "")
    tds = "".join(
        f"<td{_numeric(n)}>{_lines(cell)}</td>" for cell, n in zip(cells, numeric, strict=True)
    )
    return f"<tr{attributes}>{tds}</tr>"


def _lines(text: str) -> str:
    """A cell's text, escaped, its lines (a two-line header's) apart."""
    return "<br>".join(map(escape, text.split("\n")))


def _numeric(right: bool) -> str:
    return ' class="n"' if right else ""


def _paragraph(text: Text, kind: str | None) -> str:
    css = "" if kind else _css(text.style)
    attributes = (f' class="{kind}"' if kind else "") + (f' style="{css}"' if css else "")
    return f"<p{attributes}>{escape(text.plain)}</p>"


def _css(style) -> str:
    """A rich style (a row's, a line's) as CSS: bold, dim and a colour."""
    if not style:
        return ""
    parsed = Style.parse(style) if isinstance(style, str) else style
    css = []
    if parsed.bold:
        css.append("font-weight:bold")
    if parsed.dim:
        css.append("opacity:0.7")
    if parsed.color is not None:
        css.append(f"color:{parsed.color.get_truecolor().hex}")
    return ";".join(css)


# figures


@singledispatch
def figures(result) -> list:
    """(result to draw, drawing options) of each figure that says more than the tables."""
    return []


@figures.register
def _(report: MaskReport) -> list:
    return [(report, {})] if report.tasks else []


@figures.register
def _(report: CapacityReport) -> list:
    return [(report, {})] if report.tasks and report.protects else []


@figures.register
def _(report: OverlapReport) -> list:
    return [(report, {})] if len(report.tasks) > 1 else []


@figures.register
def _(comparison: Comparison) -> list:
    return [(comparison, {})] if any(run.steps for run in comparison.runs) else []


@figures.register
def _(result: RunCapacity) -> list:
    return figures(result.capacity)


@figures.register
def _(report: Report) -> list:
    parts = [part for run in report.runs for part in (run.capacity, run.masks, run.overlap)]
    parts += [run.trajectory for run in report.runs if run.trajectory is not None]
    return [figure for part in (*parts, report.comparison) for figure in figures(part)]


@figures.register
def _(report: TrajectoryReport) -> list:
    return [(report, {})] if report.trajectories else []


def figure_html(figure: tuple) -> str:
    result, options = figure
    try:
        return f"<figure>{svg(result, {**result.figure_options, **options})}</figure>"
    except HatinspectError as error:  # e.g. too many layers to draw unit by unit
        return f'<p class="note">no figure: {escape(str(error))}</p>'


def svg(result, options: dict) -> str:
    """`result`'s figure as an ``<svg>`` element, drawn as the command draws its file."""
    from hatinspect.render.drawing import draw_figure
    from hatinspect.render.figures import Look

    look = Look(**{key: options[key] for key in FIGURE_OPTIONS if key in options})
    drawing = {key: value for key, value in options.items() if key not in FIGURE_OPTIONS}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "figure.svg"
        draw_figure(result, path, look, **drawing)
        text = path.read_text(encoding="utf-8")
    return text[text.index("<svg") :]  # no XML prolog or doctype inside HTML
