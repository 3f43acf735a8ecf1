"""Figures a paper can use as they are: the whole network at any depth, binary masks drawn
binary, TrueType fonts in PDFs, reproducible SVGs, colour scales that show the data."""

from __future__ import annotations

import numpy as np
import pytest
from support.cli_runs import one_error_line, run, write_examples
from support.inspect_checkpoints import (
    CONV,
    MLP,
    layer,
    make_checkpoint,
    random_masks,
    resnet152_layers,
)

from hatinspect.analysis.masks import summarise_masks
from hatinspect.analysis.measure import measure
from hatinspect.analysis.overlap import overlap
from hatinspect.render import figures
from hatinspect.render.figures import Look


@pytest.fixture(scope="module")
def resnet152():
    layers = resnet152_layers()
    return make_checkpoint(layers, random_masks(layers, range(20), seed=2), backbone="R152")


def test_whole_network_of_155_layers_is_one_pdf_page_with_truetype_fonts(resnet152, tmp_path):
    report = summarise_masks(resnet152)
    figures.mask_heatmap(report, tmp_path / "net.pdf")
    data = (tmp_path / "net.pdf").read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data  # Type 42 (TrueType), not Type 3
    assert data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") == 1


def test_whole_network_shows_each_task_share_and_cumulative_grouped_by_stage(resnet152):
    report = summarise_masks(resnet152)
    with figures.styled():
        fig = figures.mask_figure(report)
    tasks_ax, cumulative_ax = fig.axes[:2]
    labels = [label.get_text() for label in tasks_ax.get_yticklabels()]
    assert labels == ["conv1 (1)", "conv2x (10)", "conv3x (25)", "conv4x (109)", "conv5x (10)"]
    masks = resnet152.masks
    shares = np.array(
        [[masks[t][lay.name].sum() / lay.units for t in range(20)] for lay in resnet152.layers]
    )
    cumulative = [
        np.max([masks[t][lay.name] for t in range(20)], axis=0).mean() for lay in resnet152.layers
    ]
    np.testing.assert_allclose(tasks_ax.images[0].get_array(), shares)
    np.testing.assert_allclose(cumulative_ax.images[0].get_array()[:, 0], cumulative)


@pytest.mark.parametrize("cmap", ["Greys", "viridis"])
def test_binary_masks_are_drawn_with_two_colours_only(tmp_path, cmap):
    import matplotlib.image
    from matplotlib import colormaps

    layers = (layer("fc/0", (2048, 8)),)
    report = summarise_masks(make_checkpoint(layers, random_masks(layers, range(5), seed=4)))
    path = tmp_path / "strip.png"
    with figures.styled():
        fig = figures.mask_figure(report, Look(cmap=cmap), per_unit=True)
        fig.savefig(path, dpi=100)
    pixels = matplotlib.image.imread(path)[..., :3]
    x0, y0, x1, y1 = fig.axes[0].get_window_extent().extents.round().astype(int)
    inside = pixels[pixels.shape[0] - y1 + 2 : pixels.shape[0] - y0 - 2, x0 + 2 : x1 - 2]
    colours = np.unique((inside * 255).round().reshape(-1, 3), axis=0)
    expected = (np.array([colormaps[cmap](0.0)[:3], colormaps[cmap](1.0)[:3]]) * 255).round()
    assert len(colours) == 2 and inside.size > 1000
    np.testing.assert_allclose(np.sort(colours, axis=0), np.sort(expected, axis=0), atol=1)
    legend = {h.get_label(): h.get_facecolor() for h in fig.legends[0].legend_handles}
    assert legend["unit kept"] == pytest.approx(colormaps[cmap](1.0))  # the legend follows cmap
    assert legend["not used"] == pytest.approx(colormaps[cmap](0.0))


def test_svg_keeps_text_as_text_and_is_byte_identical(tmp_path):
    report = summarise_masks(make_checkpoint(MLP, random_masks(MLP, range(4))))
    for name in ("a.svg", "b.svg"):
        figures.mask_heatmap(report, tmp_path / name)
    first = (tmp_path / "a.svg").read_bytes()
    assert first == (tmp_path / "b.svg").read_bytes()
    assert b"<text" in first and b"Units kept per layer and task" in first
    assert b"<dc:date>" not in first


def test_overlap_leaves_out_the_diagonal_and_draws_jaccard_on_0_to_1():
    masks = random_masks(MLP, range(5), seed=7)
    report = overlap(make_checkpoint(MLP, masks))
    with figures.styled():
        image = figures.overlap_figure(report).axes[0].images[0]
    kept = [np.concatenate([masks[t][lay.name] for lay in MLP]).astype(bool) for t in range(5)]
    jaccard = np.array([[(a & b).sum() / (a | b).sum() for b in kept] for a in kept])
    off = ~np.eye(5, dtype=bool)
    drawn = image.get_array()
    assert drawn.mask[~off].all() and not drawn.mask[off].any()
    np.testing.assert_allclose(drawn.data[off], jaccard[off])
    assert (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)


@pytest.mark.parametrize("of", ["cumulative", "summative"])
def test_conv_measure_shows_one_value_per_unit_pair_in_its_own_range(of):
    masks = random_masks(CONV, range(3), seed=5)
    result = measure(make_checkpoint(CONV, masks), "block/conv1", of, "min")
    with figures.styled():
        fig = figures.measure_figure(result)
    ax, colorbar = fig.axes
    unit = {
        "cumulative": lambda name: np.max([masks[t][name] for t in range(3)], axis=0),
        "summative": lambda name: np.sum([masks[t][name] for t in range(3)], axis=0),
    }[of]
    expected = np.minimum.outer(unit("block/conv1"), unit("conv1"))  # (6 out, 4 in)
    np.testing.assert_array_equal(ax.images[0].get_array(), expected)
    top = max(1, int(expected.max()))  # a binary measure: 0 and 1 only, not a kernel's sum
    assert of == "summative" or top == 1
    assert list(colorbar.get_yticks()) == list(range(top + 1))
    assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())


def test_figsize_and_title_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)
    result = run(
        "overlap", "net.safetensors", "--heatmap", "o.svg", "--figsize", "5,3", "--title", "Mine"
    )
    assert result.exit_code == 0, result.stderr
    svg = (tmp_path / "o.svg").read_text()
    assert 'width="360pt" height="216pt"' in svg and "Mine" in svg
    bad = run("overlap", "net.safetensors", "--heatmap", "p.svg", "--figsize", "wide")
    assert bad.exit_code == 2
    one_error_line(bad, "WIDTH,HEIGHT")
