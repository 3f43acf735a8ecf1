"""A report as one self-contained HTML file, Markdown with SVG figures beside it, or JSON.

Templates are Jinja2 with autoescaping on: every string from a file (layer names,
metadata, paths) is escaped. Figures are SVG drawn by matplotlib; in HTML they are
``<img>`` data URIs, which load without network access and never run script.
"""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from hatinspect.analysis.audit import AuditReport, verdict, verdict_tone
from hatinspect.analysis.report import Report
from hatinspect.model import records
from hatinspect.native.atomic import write_atomically
from hatinspect.render.about import algorithm_rows, other_metadata, task_list
from hatinspect.render.cells import count
from hatinspect.render.files import output_format

FORMATS = ("html", "md", "json")


@dataclass(frozen=True)
class Figure:
    name: str  # file stem for Markdown, e.g. "hat-capacity"
    title: str
    svg: str

    @property
    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg.encode()).decode()


def write_report(report: Report, path: Path) -> list[Path]:
    """Write `report` as `path`'s extension says; returns every file written."""
    kind = output_format(path, FORMATS)
    if kind == "json":
        write_atomically(path, lambda tmp: Path(tmp).write_text(records.to_json(report)))
        return [path]
    figures = draw_figures(report)
    if kind == "html":
        text = render(report, figures, "report.html.j2")
        write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return [path]
    return _write_markdown(report, figures, path)


def figure_folder(path: Path) -> Path:
    return path.with_name(f"{path.stem}-figures")


def _write_markdown(report: Report, figures: dict, path: Path) -> list[Path]:
    folder = figure_folder(path)
    drawn = [f for group in figures.values() for f in group.values() if f is not None]
    made = drawn and not folder.exists()
    if drawn:
        folder.mkdir(exist_ok=True)
    written, new = [], []
    try:
        for figure in drawn:
            target = folder / f"{figure.name}.svg"
            existed = target.exists()
            write_atomically(target, lambda tmp, svg=figure.svg: Path(tmp).write_text(svg))
            written.append(target)
            new += [] if existed else [target]
        text = render(report, figures, "report.md.j2", figure_dir=folder.name)
        write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except BaseException:  # an error or Ctrl-C: no report, nor figures of one, left behind
        _remove(new, folder if made else None)
        raise
    return [path, *written]


def _remove(files: list[Path], folder: Path | None) -> None:
    for file in files:
        file.unlink(missing_ok=True)
    if folder is not None:
        try:
            folder.rmdir()
        except OSError:  # something else was put in it meanwhile: left as it is
            pass


def render(report: Report, figures: dict, template: str, **extra) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("hatinspect.render", "templates"),
        autoescape=True,  # HTML, and the HTML that Markdown renders
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(share=_share, count=count, cell=markdown_cell, points=_points)
    env.filters.update(verdict=verdict, tone=_tone, tasks=task_list, about=_about)
    env.filters.update(basename=lambda path: Path(path).name)
    return env.get_template(template).render(report=report, figures=figures, **extra)


# the HTML class of each verdict tone (`core.audit.verdict_tone`)
_TONE_CLASSES = {"pass": "good", "drift": "drift", "fail": "bad", "none": ""}


def _about(checkpoint) -> list[tuple[str, str]]:
    return [*algorithm_rows(checkpoint.metadata), *other_metadata(checkpoint.metadata)]


def _tone(audit: AuditReport) -> str:
    return _TONE_CLASSES[verdict_tone(audit)]


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} pt"


# what Markdown (CommonMark with GFM tables) would act on inside a table cell: code,
# emphasis, links, HTML and entities, the cell's own border; a `_` only where it can open or
# close emphasis (`s_max` is left as it is, and reads as itself)
_MARKDOWN_SPECIAL = re.compile(r"[\\`*\[\]<|~]|&(?=#?\w+;)|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def markdown_cell(value) -> Markup:
    """Text in a Markdown table cell that reads as itself, as plain text and rendered alike:
    the characters Markdown would act on are backslash-escaped, a line break is a space."""
    text = " ".join(str(value).splitlines())
    return Markup(_MARKDOWN_SPECIAL.sub(lambda match: "\\" + match[0], text))


# figures


def draw_figures(report: Report) -> dict[str, dict[str, Figure | None]]:
    """Per run name (and "comparison"): the figures, keyed by kind."""
    from hatinspect.render.figures import growth_plot, mask_heatmap, overlap_heatmap

    figures = {"comparison": {"curves": None}}
    for index, run in enumerate(report.runs):
        stem = f"run{index + 1}"
        drawn = dict.fromkeys(("capacity", "masks", "overlap", "trajectory"))  # None: none
        if run.capacity.tasks:
            drawn["capacity"] = _svg(f"{stem}-capacity", "Capacity task by task", growth_plot,
                                     run.capacity)  # fmt: skip
            drawn["masks"] = _svg(f"{stem}-masks", "Task masks", mask_heatmap, run.masks)
            drawn["overlap"] = _svg(f"{stem}-overlap", "Shared units", overlap_heatmap, run.overlap)
        if run.trajectory is not None and _drawable(run.trajectory):
            from hatinspect.render.trajectory import draw_trajectory

            drawn["trajectory"] = _svg(f"{stem}-trajectory", "Masks through training",
                                       draw_trajectory, run.trajectory)  # fmt: skip
        figures[stem] = drawn
    if report.comparison is not None and any(run.steps for run in report.comparison.runs):
        from hatinspect.render.runs import capacity_curves

        figures["comparison"] = {
            "curves": _svg("comparison", "Capacity curves", capacity_curves, report.comparison)
        }
    return figures


def _drawable(trajectory) -> bool:
    from hatinspect.render.figures import MAX_PANELS

    layers = len(trajectory.trajectories[0].layers) if trajectory.trajectories else 0
    return 0 < len(trajectory.trajectories) * layers <= MAX_PANELS


def _svg(name: str, title: str, draw: Callable, result) -> Figure:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "figure.svg"
        draw(result, path)
        return Figure(name, title, path.read_text(encoding="utf-8"))
