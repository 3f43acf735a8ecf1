"""The overlap heatmap's colours span Jaccard 0..1 whatever the data (or the span asked
for), and its cell labels fit their cells: smaller, shorter, or none as cells shrink."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from support.cli_runs import one_error_line, run, write_examples
from support.inspect_checkpoints import layer, make_checkpoint

from hatinspect.analysis.overlap import overlap
from hatinspect.render import figures
from hatinspect.render.figures import LABEL_FONT, SMALLEST_LABEL, Look

WIDE = (layer("fc/0", (3000, 8)),)


def near_alike_masks(tasks: int, seed: int = 0) -> dict:
    """Every task keeps the same 1,000 of 3,000 units but ~10 of its own: pairwise
    Jaccard ~0.98, a narrow band a fitted scale would stretch over every colour."""
    rng = np.random.default_rng(seed)
    masks = {}
    for task in range(tasks):
        units = np.zeros(3000, dtype=np.uint8)
        units[:1000] = 1
        units[rng.choice(np.arange(1000, 3000), 10, replace=False)] = 1
        masks[task] = {"fc/0": units}
    return masks


def drawn(tasks: int, look: Look | None = None, **options):
    report = overlap(make_checkpoint(WIDE, near_alike_masks(tasks)))
    with figures.styled():
        fig = figures.overlap_figure(report, look or Look(), **options)
    return report, fig.axes[0]


def brute_jaccard(masks: dict, a: int, b: int) -> float:
    x, y = masks[a]["fc/0"].astype(bool), masks[b]["fc/0"].astype(bool)
    return (x & y).sum() / (x | y).sum()


@pytest.mark.parametrize("tasks", [2, 10, 40])
def test_jaccard_is_drawn_on_0_to_1_whatever_the_data(tasks):
    _, ax = drawn(tasks)
    off = ~np.eye(tasks, dtype=bool)
    values = ax.images[0].get_array().data[off]
    assert values.min() > 0.95  # the band is narrow: the scale is not fitted to it
    assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (0.0, 1.0)


def test_a_scale_asked_for_is_the_one_drawn():
    _, ax = drawn(4, scale=(0.9, 1.0))
    assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (0.9, 1.0)


def test_ten_tasks_at_one_column_carry_counts_and_two_decimals_that_fit():
    _, ax = drawn(10)
    masks = near_alike_masks(10)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(texts) == 100
    first = texts[(0, 1)].get_text().split("\n")
    assert first == ["1,000", f"{brute_jaccard(masks, 0, 1):.2f}"]
    sizes = {t.get_fontsize() for t in ax.texts}
    assert len(sizes) == 1 and SMALLEST_LABEL <= sizes.pop() <= LABEL_FONT
    # each label's drawn width stays inside its cell
    renderer = FigureCanvasAgg(ax.get_figure()).get_renderer()
    cell = ax.get_window_extent().width / 10
    assert max(t.get_window_extent(renderer).width for t in ax.texts) < cell


def test_labels_shrink_then_shorten_then_go_as_cells_shrink():
    def labels(tasks):
        _, ax = drawn(tasks)
        return [t.get_text() for t in ax.texts], {t.get_fontsize() for t in ax.texts}

    few, few_sizes = labels(4)
    more, more_sizes = labels(14)
    many, many_sizes = labels(24)
    assert few_sizes == {LABEL_FONT} and "\n" in few[1]
    assert max(more_sizes) < LABEL_FONT  # smaller to fit
    assert all("\n" not in text for text in many)  # the Jaccard index alone (or nothing)
    assert labels(60) == ([], set())


def test_a_larger_figure_keeps_labels_a_small_one_drops():
    _, large = drawn(24, Look(figsize=(10, 8.5)))
    _, small = drawn(4, Look(figsize=(1, 0.85)))
    assert len(large.texts) == 24 * 24 and len(small.texts) == 0


def test_the_overlap_command_takes_a_scale(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)
    done = run("overlap", "net.safetensors", "--heatmap", "o.svg", "--scale", "0.2,0.6")
    assert done.exit_code == 0, done.stderr
    assert (tmp_path / "o.svg").exists()
    bad = run("overlap", "net.safetensors", "--heatmap", "p.svg", "--scale", "0.6,0.2")
    assert bad.exit_code == 2
    one_error_line(bad, "LO < HI")
