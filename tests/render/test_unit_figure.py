"""The unit-by-unit mask figure stays one column wide and legible at many tasks and
layers: a bounded height, task ticks that never collide."""

import itertools

import pytest
from support.inspect_checkpoints import layer, make_checkpoint, random_masks

from hatinspect.analysis.masks import summarise_masks
from hatinspect.render import figures
from hatinspect.render.figures import COLUMN_WIDTH


def _overlapping(labels) -> list[tuple[str, str]]:
    boxes = [(label.get_text(), label.get_window_extent()) for label in labels if label.get_text()]
    return [(a, b) for (a, box), (b, other) in itertools.pairwise(boxes) if box.overlaps(other)]


@pytest.mark.parametrize(("tasks", "layers"), [(10, 3), (10, 12), (50, 4)])
def test_ten_tasks_fit_one_column_with_readable_task_ticks(tasks, layers):
    net = tuple(layer(f"conv5x/{i}/conv1", (512, 8, 1, 1), bias=False) for i in range(layers))
    report = summarise_masks(make_checkpoint(net, random_masks(net, range(1, tasks + 1))))
    with figures.styled():
        fig = figures.mask_figure(report, per_unit=True)
        fig.canvas.draw()
    width, height = fig.get_size_inches()
    assert width == pytest.approx(COLUMN_WIDTH) and height <= 9
    for ax in fig.axes:
        assert not _overlapping(ax.get_yticklabels()), ax.get_title()
        shown = [int(label.get_text()) for label in ax.get_yticklabels() if label.get_text()]
        assert shown[0] == 1 and len(shown) >= 2  # the first task, and others, named
