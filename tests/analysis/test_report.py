"""report: what it holds, its escaping, its files; measures checked against brute force."""

import itertools
import json
import re
from collections import Counter

import numpy as np
import pytest
from markdown_it import MarkdownIt
from markupsafe import escape
from support.brute_force import protected_params
from support.cli_runs import one_error_line, run
from support.inspect_checkpoints import (
    CONV,
    MLP,
    make_checkpoint,
    random_masks,
    random_weights,
    write_native,
)
from support.report_runs import RESNET18, hostile_run, write_run

import hatinspect
from hatinspect.analysis.report import layer_measures
from hatinspect.render.report import markdown_cell

SECTIONS = ("about", "capacity", "masks", "overlap", "measures")


@pytest.mark.parametrize("layers", [MLP, CONV, RESNET18[:7]], ids=["mlp", "conv", "resnet"])
def test_measure_summary_is_the_measure_of_every_weight(layers):
    checkpoint = make_checkpoint(layers, random_masks(layers, (0, 1, 2, 3), seed=4))
    summative = {
        lay.name: [sum(int(checkpoint.masks[t][lay.name][u]) for t in checkpoint.task_ids)
                   for u in range(lay.units)]
        for lay in layers
    }  # fmt: skip
    cumulative = {name: [int(n > 0) for n in counts] for name, counts in summative.items()}
    for lay in layers:
        got = layer_measures(checkpoint, lay)
        for unit_wise, stats in ((cumulative, got.cumulative), (summative, got.summative)):
            values = weight_values(lay, unit_wise)
            assert stats.count == len(values)
            assert (stats.min, stats.max) == (min(values), max(values))
            assert stats.mean == pytest.approx(sum(values) / len(values))
            assert dict(stats.histogram) == dict(Counter(values))
        assert got.protected == weight_values(lay, cumulative).count(1)


def weight_values(lay, unit_wise) -> list[int]:
    """Every weight's min(m[i], m_preceding[j]) (m[i] in a first layer), by plain loops."""
    rows = unit_wise[lay.name]
    if lay.preceding is None:
        columns = [max(rows)] * lay.fan_in  # min(m[i], top) is m[i]
    else:
        source = unit_wise[lay.preceding]
        columns = [m for m in source for _ in range(lay.fan_in // len(source))]
    pairs = itertools.product(rows, columns)
    return [min(a, b) for a, b in pairs for _ in range(lay.kernel_size)]


@pytest.mark.parametrize("layers", [MLP, RESNET18], ids=["mlp", "resnet18"])
def test_sections_of_a_run_folder(tmp_path, layers):
    write_run(tmp_path / "run", layers)
    cli = run("report", tmp_path / "run", "-o", tmp_path / "report.html")
    assert cli.exit_code == 0, cli.stderr
    html = (tmp_path / "report.html").read_text()
    for section in (*SECTIONS, "audit"):
        assert f'id="run1-{section}"' in html
    assert 'id="comparison"' not in html
    summary = re.search(r'<p class="summary" id="summary">(.*?)</p>', html)[1]
    assert summary.startswith("3 tasks, ") and summary.endswith(
        ", audit of 2 file pairs: all pass, no protected parameter changed"
    )
    assert html.count('<img src="data:image/svg+xml;base64,') == 3
    assert "<details>" in html
    assert cli.stderr.startswith(f"wrote {tmp_path / 'report.html'}: 3 tasks")


def test_two_checkpoints_of_one_run_are_audited_and_two_runs_compared(tmp_path):
    write_run(tmp_path / "a", MLP)
    write_run(tmp_path / "b", MLP, seed=1)
    files = [tmp_path / "a/after-task-1.safetensors", tmp_path / "a/after-task-3.safetensors"]
    one = hatinspect.report(*files)
    assert len(one.runs) == 1 and len(one.runs[0].audits) == 1
    assert one.runs[0].audits[0].protected > 0 and one.comparison is None
    both = hatinspect.report(tmp_path / "a", tmp_path / "b/after-task-3.safetensors")
    assert [r.run.name for r in both.runs] == ["a", "after-task-3.safetensors"]
    assert both.comparison is not None and len(both.runs[1].audits) == 0
    html = tmp_path / "both.html"
    hatinspect.report(tmp_path / "a", tmp_path / "b", output=html)
    text = html.read_text()
    assert 'id="comparison"' in text and 'id="run2-capacity"' in text
    assert text.count('<img src="data:image/svg+xml;base64,') == 7


def test_self_contained_no_network_reference(tmp_path):
    write_run(tmp_path / "run", MLP)
    html = tmp_path / "r.html"
    hatinspect.report(tmp_path / "run", output=html)
    text = html.read_text()
    references = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert references and all(ref.startswith("data:") for ref in references)
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "<script" not in text


def test_hostile_strings_are_escaped(tmp_path):
    hostile_run(tmp_path / "run")
    hatinspect.report(tmp_path / "run", output=tmp_path / "r.html")
    hatinspect.report(tmp_path / "run", output=tmp_path / "r.md")
    html = (tmp_path / "r.html").read_text()
    assert "<script" not in html and "<img src=x" not in html and 'onerror="' not in html
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html
    markdown = (tmp_path / "r.md").read_text()
    shown = MarkdownIt("commonmark").enable("table").render(markdown)
    assert "<script" not in shown and "<img src=x" not in shown and "<a " not in shown
    assert "<code>" not in shown and "<em>" not in shown
    row = next(line for line in markdown.splitlines() if line.startswith("| algorithm |"))
    assert row.count("|") - row.count("\\|") == 3  # the value's own pipes cannot split it


def test_markdown_writes_its_figures_beside_it(tmp_path):
    write_run(tmp_path / "run", MLP)
    cli = run("report", tmp_path / "run", "-o", tmp_path / "r.md")
    assert cli.exit_code == 0, cli.stderr
    figures = sorted(p.name for p in (tmp_path / "r-figures").iterdir())
    assert figures == ["run1-capacity.svg", "run1-masks.svg", "run1-overlap.svg"]
    markdown = (tmp_path / "r.md").read_text()
    for name in figures:
        assert f"](r-figures/{name})" in markdown
    again = run("report", tmp_path / "run", "-o", tmp_path / "r.md")
    one_error_line(again, "r.md already exists", "--force")
    (tmp_path / "r.md").unlink()
    one_error_line(run("report", tmp_path / "run", "-o", tmp_path / "r.md"), "r-figures")


def test_json_is_the_api_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "a", MLP)
    write_native(tmp_path / "b.safetensors", make_checkpoint())
    cli = run("report", "a", "b.safetensors", "-o", "r.json")
    assert cli.exit_code == 0, cli.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert document == hatinspect.report("a", "b.safetensors").to_dict()
    assert [r["name"] for r in document["runs"]] == ["a", "b.safetensors"]
    capacity = hatinspect.capacity("a/after-task-3.safetensors").to_dict()
    assert document["runs"][0]["capacity"] == {k: v for k, v in capacity.items() if k != "schema"}


def test_bad_output_is_a_usage_error(tmp_path):
    write_run(tmp_path / "run", MLP)
    result = run("report", tmp_path / "run", "-o", tmp_path / "r.pdf")
    assert result.exit_code == 2 and "must be one of .html, .md, .json" in result.stderr


def test_a_file_without_tasks_still_reports(tmp_path):
    empty = make_checkpoint(MLP, {})
    write_native(tmp_path / "empty.safetensors", empty)
    write_native(tmp_path / "other.safetensors", make_checkpoint(CONV, {}))
    for suffix in ("html", "md"):
        output = tmp_path / f"r.{suffix}"
        result = hatinspect.report(
            tmp_path / "empty.safetensors", tmp_path / "other.safetensors", output=output
        )
        assert result.summary.startswith("empty.safetensors: 0 tasks, 0% of units used")
        assert "No task masks are stored." in output.read_text() or suffix == "md"
    assert not (tmp_path / "r-figures").exists()


def drifting_run(folder, algorithm):
    """Three files of one run (tasks 1, 1-2, 1-3) in which every weight moves by 0.5 from a
    file to the next; the metadata names `algorithm` (none for "unknown")."""
    folder.mkdir()
    masks = random_masks(MLP, (1, 2, 3), seed=1)  # protects 14, then 31
    metadata = None if algorithm == "unknown" else {"algorithm": algorithm}
    weights = random_weights(make_checkpoint(MLP, masks))
    for t in (1, 2, 3):
        stored = make_checkpoint(MLP, {task: masks[task] for task in range(1, t + 1)})
        write_native(folder / f"after-task-{t}.safetensors", stored, weights, metadata=metadata)
        weights = {key: value + np.float32(0.5) for key, value in weights.items()}
    return folder, masks


def audit_verdict(before, after) -> tuple[int, str]:
    """The audit command's exit code and verdict: its last line, on an output wide enough
    for no line to wrap."""
    result = run("audit", before, after, COLUMNS="1000")
    return result.exit_code, result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("algorithm", ["hat", "adahat", "finetuning", "unknown"])
def test_the_report_gives_each_audit_the_audit_commands_verdict(tmp_path, algorithm):
    folder, masks = drifting_run(tmp_path / algorithm, algorithm)
    files = [folder / f"after-task-{t}.safetensors" for t in (1, 2, 3)]
    verdicts = [audit_verdict(a, b) for a, b in itertools.pairwise(files)]
    for suffix in ("json", "html", "md"):
        assert run("report", folder, "-o", tmp_path / f"r.{suffix}").exit_code == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    html, markdown = (tmp_path / "r.html").read_text(), (tmp_path / "r.md").read_text()
    assert [audit["verdict"] for audit in doc["runs"][0]["audits"]] == [v for _, v in verdicts]
    for code, verdict in verdicts:
        assert (code == 0) == (algorithm in ("adahat", "finetuning"))
        assert str(escape(verdict)) in html
        assert markdown_cell(verdict) in markdown
    assert "intact" not in html + markdown
    # every weight moved: each pair changed all the parameters its earlier file protects
    protected = [sum(protected_params(MLP, masks, range(1, t + 1)).values()) for t in (1, 2)]
    expected = {
        "hat": f"FAILED: {protected[0]:,} of {protected[0]:,} protected parameters changed, "
        "where HAT requires them bit-identical.",
        "adahat": f"AdaHAT drift: {protected[0]:,} of {protected[0]:,} protected parameters "
        "changed (max |change| 0.5); AdaHAT updates them softly by design, so this passes "
        "(--strict to require bit-identity).",
        "finetuning": "no masks: nothing is protected (a fine-tuning run).",
        "unknown": f"FAILED: {protected[0]:,} of {protected[0]:,} protected parameters changed, "
        "where HAT's rule (no known algorithm named) requires them bit-identical.",
    }
    assert verdicts[0][1] == expected[algorithm]


@pytest.mark.parametrize(
    ("algorithm", "outcome"),
    [("hat", "2 of 2 fail"), ("adahat", "all pass by AdaHAT's drift rule")],
)
def test_the_summary_counts_changed_parameters_per_pair_not_summed(tmp_path, algorithm, outcome):
    folder, masks = drifting_run(tmp_path / "run", algorithm)
    protected = [sum(protected_params(MLP, masks, range(1, t + 1)).values()) for t in (1, 2)]
    assert protected[0] < protected[1]
    summary = hatinspect.report(folder).summary
    assert summary.endswith(
        f", audit of 2 file pairs: {outcome}, up to {protected[1]:,} of {protected[1]:,} "
        "protected parameters changed in one pair"
    )
    assert f"{sum(protected):,}" not in summary


def test_a_fine_tuning_run_is_reported_as_protecting_nothing(tmp_path):
    folder, _ = drifting_run(tmp_path / "ft", "finetuning")
    report = hatinspect.report(folder, output=tmp_path / "r.html")
    assert report.summary == (
        "3 tasks, "
        f"{report.runs[0].capacity.total.unit_usage:.0%} of units used, "
        "nothing protected (no masks: a fine-tuning run), audit of 2 file pairs: nothing protected"
    )
    total = report.runs[0].capacity.total
    assert (total.params_protected, total.param_usage, total.free) == (0, 0.0, 1.0)
    assert [m.protected for m in report.runs[0].measures] == [0] * len(MLP)
    html = (tmp_path / "r.html").read_text()
    assert "No masks: nothing is protected (a fine-tuning run); every parameter is free." in html
    hatinspect.report(folder, output=tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())["runs"][0]["capacity"]
    assert doc["total"]["params_protected"] == 0 and doc["total"]["free"] == 1.0
