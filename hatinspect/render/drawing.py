"""One way to draw each result to a figure file, for the command line and the API alike."""

from __future__ import annotations

from functools import singledispatch
from pathlib import Path

from hatinspect.analysis.capacity import CapacityReport
from hatinspect.analysis.compare import Comparison
from hatinspect.analysis.masks import MaskReport
from hatinspect.analysis.measure import LayerMeasure
from hatinspect.analysis.overlap import OverlapReport
from hatinspect.analysis.trajectory import TrajectoryReport
from hatinspect.render import figures, runs, trajectory
from hatinspect.render.figures import JACCARD_SCALE, Look

DEFAULT_LOOK = Look()


@singledispatch
def draw_figure(result, path: Path, look: Look = DEFAULT_LOOK, **options) -> None:
    """Draw `result`'s figure to a .png, .svg or .pdf file."""
    raise TypeError(f"no figure for {type(result).__name__}")


@draw_figure.register
def _(result: MaskReport, path: Path, look: Look = DEFAULT_LOOK, per_unit: bool = False) -> None:
    figures.mask_heatmap(result, path, look, per_unit)


@draw_figure.register
def _(result: CapacityReport, path: Path, look: Look = DEFAULT_LOOK) -> None:
    figures.growth_plot(result, path, look)


@draw_figure.register
def _(result: LayerMeasure, path: Path, look: Look = DEFAULT_LOOK) -> None:
    figures.measure_heatmap(result, path, look)


@draw_figure.register
def _(result: OverlapReport, path: Path, look: Look = DEFAULT_LOOK, scale=JACCARD_SCALE) -> None:
    figures.overlap_heatmap(result, path, look, scale)


@draw_figure.register
def _(result: Comparison, path: Path, look: Look = DEFAULT_LOOK) -> None:
    runs.capacity_curves(result, path, look)


@draw_figure.register
def _(result: TrajectoryReport, path: Path, look: Look = DEFAULT_LOOK) -> None:
    trajectory.draw_trajectory(result, path, look)
