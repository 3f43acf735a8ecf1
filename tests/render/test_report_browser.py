"""The report opened in a real browser (headless Chromium, from file://, no network)."""

import numpy as np
import pytest
from support.browser import needs_chromium, open_page, screenshot
from support.inspect_checkpoints import MLP, make_checkpoint, write_native
from support.report_runs import hostile_run

import hatinspect

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A hostile run folder (layer names and metadata that try to run script) beside a
    plain checkpoint: every section, the audit and the comparison in one page."""
    folder = tmp_path_factory.mktemp("report")
    hostile_run(folder / "hostile")
    write_native(folder / "plain.safetensors", make_checkpoint(MLP), metadata={"s_max": 400})
    hatinspect.report(folder / "hostile", folder / "plain.safetensors", output=folder / "r.html")
    return folder / "r.html"


def test_every_section_loads_offline_without_console_messages(report):
    page = open_page(report)
    assert page.console == []
    for run in ("run1", "run2"):
        for section in ("about", "capacity", "masks", "overlap", "measures"):
            assert f'id="{run}-{section}"' in page.dom
    assert 'id="run1-audit"' in page.dom and 'id="comparison"' in page.dom
    assert page.dom.count("<details>") >= 9


def test_hostile_strings_run_no_script(report):
    page = open_page(report)
    assert page.title == "hatinspect report"  # the injected document.title never ran
    assert page.console == []  # nor was any script blocked: none was there to run
    # the strings are text in the document, not elements: no tag of theirs was parsed
    assert "<script" not in page.dom and "<img src=x" not in page.dom
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in page.dom
    assert "&lt;img src=x onerror=\"document.title='pwned'\"&gt;" in page.dom


def test_the_browser_would_see_a_script_that_runs(tmp_path):
    """The checks above can fail: a page whose script does run changes its title."""
    page = tmp_path / "control.html"
    page.write_text(
        "<!DOCTYPE html><title>t</title><script>document.title='pwned';"
        "console.error('ran')</script>"
    )
    seen = open_page(page)
    assert seen.title == "pwned" and any("ran" in line for line in seen.console)


def test_figures_are_visible(report, tmp_path):
    pixels, console = screenshot(report, tmp_path / "page.png")
    assert console == []
    # colours only the figures draw: matplotlib's first line colour (#1f77b4, the capacity
    # and comparison curves) and viridis' top (#fde725, the overlap diagonal)
    for colour in ((0x1F, 0x77, 0xB4), (0xFD, 0xE7, 0x25)):
        close = np.abs(pixels * 255 - np.array(colour)).max(axis=-1) < 12
        assert close.sum() > 200, colour
    # colour over whole areas (the heatmaps), where text and rules are grey: tens of
    # thousands of pixels with the figures, a few hundred (the summary's border) without
    colourful = pixels.max(axis=-1) - pixels.min(axis=-1) > 0.35
    assert colourful.sum() > 20_000
