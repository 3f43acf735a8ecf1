"""`masks --show`: a legend says what each shade stands for, and says it truly."""

import numpy as np
import pytest
from support.cli_runs import run, write_examples

from hatinspect.render.terminal_heatmap import SHADES, legend, shade


def meanings() -> dict[str, str]:
    parts = legend()[1].plain.split("  ")
    pairs = [(" ", p[4:]) if p.startswith("│ │") else (p[0], p[2:]) for p in parts]
    return dict(pairs)


@pytest.mark.parametrize(
    ("kept", "of", "meaning"),
    [(0, 6, "none"), (1, 6, "up to 1/3"), (2, 6, "up to 1/3"), (3, 6, "up to 2/3"),
     (4, 6, "up to 2/3"), (5, 6, "over 2/3"), (6, 6, "all")],
)  # fmt: skip
def test_each_shade_means_what_the_legend_says(kept, of, meaning):
    mask = np.array([1] * kept + [0] * (of - kept), dtype=np.uint8)
    assert meanings()[shade(mask, 1)] == meaning


def test_the_legend_names_every_shade_and_shows_under_the_masks(tmp_path, monkeypatch):
    assert set(meanings()) == set(SHADES)
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)
    result = run("masks", "net.safetensors", "--show", COLUMNS="60")
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[-2] == "shades: the share of a character's units the task keeps"
    assert lines[-1] == "█ all  ▓ over 2/3  ▒ up to 2/3  ░ up to 1/3  │ │ none"
    assert "--show" not in result.stdout + result.stderr  # no note suggesting it
