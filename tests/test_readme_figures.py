"""README's figures each have a source: a marker naming the script that measures it.

No benchmark runs here. Each ``<!-- bench:SCRIPT.FIGURE -->`` marker must name a figure the
script lists in its ``README_FIGURES`` (and each listed figure must have a marker), and no
figure-looking number (a time, a size in MiB, a ratio) may stand in the Benchmarks section
or the fuzzer's last long run outside a marker, so that a new figure without a script fails.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_figures  # noqa: E402

SOURCES = {"fuzz": ROOT / "tests" / "fuzz" / "run.py"}  # else benchmarks/bench_SCRIPT.py
# a measured figure: seconds, memory in MiB/KiB, a ratio (workload sizes are in GB/GiB)
FIGURE = re.compile(r"\d[\d,.]*(?:\s?(?:ms|s|MiB|KiB)\b|×|\s?times\b)")


# figures measured by hand, each with its date and load in its own text: exempt, and named
# here so that each is a decision (a bullet, from its opening words to the next bullet)
BY_HAND = (
    "- **overlap of masks of weights**",  # a per-word cost analysis, no script prints it
)


def source(script: str) -> Path:
    return SOURCES.get(script, ROOT / "benchmarks" / f"bench_{script}.py")


def declared(path: Path) -> tuple[str, ...]:
    """The script's README_FIGURES, read from its source (importing a benchmark has side
    effects: it byte-compiles the package)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["README_FIGURES"]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} declares no README_FIGURES")


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def fuzz_paragraph(text: str) -> str:
    """The last long run's sentence (what earlier runs found follows it)."""
    start = text.index("Last long run (")
    return text[start : text.index("Earlier runs found", start)]


def unmarked_figures(text: str) -> list[str]:
    for opening in BY_HAND:
        if (start := text.find(opening)) >= 0:
            end = text.find("\n- ", start + 1)
            text = text[:start] + (text[end:] if end >= 0 else "")
    return FIGURE.findall(readme_figures.MARKER.sub("", text))


MARKED = sorted({name for name in readme_figures.readme_figures(README)})


@pytest.mark.parametrize("name", MARKED)
def test_each_marker_names_a_figure_its_script_declares(name):
    script, _, figure = name.partition(".")
    path = source(script)
    assert path.is_file(), f"{name}: no script {path.relative_to(ROOT)}"
    names = declared(path)
    assert figure == readme_figures.WHEN or figure in names, f"{name}: {path.name} lists {names}"
    text = path.read_text(encoding="utf-8")
    assert "readme.compare(" in text and f'"{script}"' in text, (
        f"{path.name} never hands README its figures as {script!r}"
    )


def test_every_declared_figure_has_a_marker():
    scripts = {name.partition(".")[0] for name in MARKED}
    for script in scripts:
        missing = [f for f in declared(source(script)) if f"{script}.{f}" not in MARKED]
        assert not missing, f"{script}: no marker in README for {missing}"
    for path in (ROOT / "benchmarks").glob("bench_*.py"):
        script = path.stem.removeprefix("bench_")
        if "README_FIGURES" in path.read_text():
            assert script in scripts, f"{path.name} declares figures README never shows"


def test_every_figure_in_the_benchmarks_section_is_marked():
    assert unmarked_figures(section(README, "Benchmarks")) == []


def test_the_last_long_fuzz_run_is_marked_whole():
    paragraph = fuzz_paragraph(README)
    assert re.findall(r"\d[\d,.]*", readme_figures.MARKER.sub("", paragraph)) == []


def test_only_the_named_bullets_are_exempt():
    for opening in BY_HAND:
        assert opening in section(README, "Benchmarks"), f"no bullet {opening!r}: drop it here"
    text = "- **a**: 3 ms\n- **overlap of masks of weights** 5 ms\n  9 ms\n- **b** 2 s\n"
    assert unmarked_figures(text) == ["3 ms", "2 s"]


def test_the_figure_pattern_catches_what_readme_states():
    # hand-picked: each is a figure, so unmarked it would fail the section's test
    for figure in ("17.5 s", "0.52 s", "1,311 MiB", "143 ms", "0.98×", "2.6 times"):
        assert FIGURE.fullmatch(figure), figure
    for size in ("52 GB", "10.1 GiB", "5 %", "640 tasks", "25.5 M weights"):
        assert not FIGURE.search(size), size


def test_replace_puts_fresh_text_in_its_marker_only():
    text = (
        "a <!-- bench:x.a -->1.0 s<!-- /bench --> b <!-- bench:x.b -->2 ms<!-- /bench -->"
        " c <!-- bench:x.a -->1.0 s<!-- /bench -->"
    )
    fresh = readme_figures.replace_figures(text, {"x.a": "0.5 s"})
    assert fresh == (
        "a <!-- bench:x.a -->0.5 s<!-- /bench --> b <!-- bench:x.b -->2 ms<!-- /bench -->"
        " c <!-- bench:x.a -->0.5 s<!-- /bench -->"
    )
    assert readme_figures.readme_figures(fresh) == {"x.a": "0.5 s", "x.b": "2 ms"}


def test_figures_are_worded_as_readme_words_them():
    assert readme_figures.ms(0.000612) == "0.6"
    assert readme_figures.ms(0.1434) == "143"
    assert readme_figures.ms(6.0921) == "6,092"
    assert readme_figures.slashed([0.0009, 0.0027], "ms") == "0.9 / 2.7 ms"
    assert readme_figures.times(264 / 258) == "1.02×"


def test_when_records_the_time_load_and_options_of_a_run():
    import datetime

    now = datetime.datetime(2026, 12, 8, 0, 5, tzinfo=datetime.UTC)
    text = readme_figures.when(now, ["--pairs", "7", "--write-readme"])
    assert re.fullmatch(r"2026-12-08 00:05 UTC, load average \d+\.\d–\d+\.\d, `--pairs 7`", text)
    assert readme_figures.when(now, ["--write-readme"]).endswith(tuple("0123456789"))
