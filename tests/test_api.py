"""The Python API: each function's result is what its command renders, JSON for JSON."""

import csv
import io
import json

import pytest
from support.cli_runs import modules_left_out, run, run_in_fresh_python, write_examples

import hatinspect
from hatinspect import open_checkpoint
from hatinspect.model.errors import HatinspectError

CALLS = {
    "masks": (["net.safetensors"], {}),
    "masks-chosen": (
        ["net.safetensors", "--task", "1", "--task", "4", "--layer", "fc/*", "-x", "fc/2"],
        {"task": [1, 4], "layer": "fc/*", "exclude": ["fc/2"]},
    ),
    "capacity": (["conv.safetensors"], {}),
    "measure": (
        ["net.safetensors", "--layer", "fc/1", "--of", "task:2", "--aggregation", "max"],
        {"layer": "fc/1", "of": "task:2", "aggregation": "max"},
    ),
    "overlap": (["conv.safetensors", "--task", "0", "--task", "2"], {"task": (0, 2)}),
    "audit": (["net.safetensors", "conv.safetensors"], {}),
    "info": (["net.safetensors"], {}),
}
CSV_OPTIONS = {"capacity": {"by_task": True}, "overlap": {"per_layer": True}}


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)


def call(case: str):
    args, options = CALLS[case][0], dict(CALLS[case][1])
    command = case.partition("-")[0]
    function = getattr(hatinspect, command)
    if command == "measure":
        return function(args[0], options.pop("layer"), **options)
    if command == "audit":
        return None  # needs two files of one network: see test_audit_matches_the_command
    return function(args[0], **options)


@pytest.mark.parametrize("case", [c for c in CALLS if c != "audit"])
def test_to_dict_is_the_commands_json(case):
    args, _ = CALLS[case]
    cli = run(case.partition("-")[0], *args, "--format", "json")
    assert cli.exit_code == 0, cli.stderr
    assert call(case).to_dict() == json.loads(cli.stdout)


def test_audit_matches_the_command(tmp_path):
    from support.inspect_checkpoints import make_checkpoint, write_native

    write_native(tmp_path / "later.safetensors", make_checkpoint(), metadata={"s_max": 400})
    cli = run("audit", "net.safetensors", "later.safetensors", "--format", "json")
    result = hatinspect.audit("net.safetensors", "later.safetensors")
    assert result.to_dict() == json.loads(cli.stdout)
    assert result.ok == (cli.exit_code == 0)


@pytest.mark.parametrize("case", ["masks", "capacity", "measure", "overlap", "info"])
def test_to_pandas_is_the_commands_csv(case):
    pytest.importorskip("pandas", reason="to_pandas is optional")
    args, _ = CALLS[case]
    options = CSV_OPTIONS.get(case, {})
    flags = [f"--{key.replace('_', '-')}" for key in options]
    cli = run(case, *args, *flags, "--format", "csv")
    rows = list(csv.reader(io.StringIO(cli.stdout)))
    frame = call(case).to_pandas(**options)
    assert list(frame.columns) == rows[0]
    assert [[_cell(v) for v in row] for row in frame.itertuples(index=False)] == rows[1:]


def _cell(value) -> str:
    return "" if value is None else str(value)


def test_an_opened_checkpoint_is_accepted_as_is():
    checkpoint = open_checkpoint("net.safetensors")
    assert hatinspect.info(checkpoint) is checkpoint
    assert hatinspect.capacity(checkpoint) == hatinspect.capacity("net.safetensors")


def test_errors_are_the_commands_errors():
    with pytest.raises(HatinspectError, match="no layer 'fc/9'"):
        hatinspect.measure("net.safetensors", "fc/9")
    with pytest.raises(ValueError, match="is not one of"):
        hatinspect.measure("net.safetensors", "fc/1", of="tasks")
    with pytest.raises(HatinspectError, match="no such file"):
        hatinspect.masks("missing.safetensors")


def test_importing_the_package_loads_neither_torch_nor_numpy():
    then = "import hatinspect\n" + modules_left_out("torch", "matplotlib", "numpy")
    result = run_in_fresh_python([], then)
    assert result.returncode == 0, result.stderr


def test_native_results_need_no_torch(tmp_path):
    then = (
        "import hatinspect\n"
        "for name in ('masks', 'capacity', 'overlap', 'info'):\n"
        "    getattr(hatinspect, name)('net.safetensors').to_dict()\n"
        "hatinspect.measure('net.safetensors', 'fc/1').to_dict()\n"
        + modules_left_out("torch", "matplotlib")
    )
    result = run_in_fresh_python([], then, tmp_path)
    assert result.returncode == 0, result.stderr


def test_figures_are_keyword_arguments_too(tmp_path):
    result = hatinspect.masks("net.safetensors", heatmap="masks.svg", cmap="Blues")
    assert result == hatinspect.masks("net.safetensors")
    hatinspect.capacity("conv.safetensors", plot="growth.png", dpi=30)
    hatinspect.measure("net.safetensors", "fc/1", save="m.safetensors")
    assert (tmp_path / "masks.svg").read_text().startswith("<?xml")
    assert (tmp_path / "growth.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "m.safetensors").stat().st_size > 0
    with pytest.raises(ValueError, match="extension must be one of"):
        hatinspect.overlap("net.safetensors", heatmap="overlap.txt")


def test_compare_and_report_keep_torch_out(tmp_path):
    commands = [
        ["compare", "--help"],
        ["report", "--help"],
        ["compare", "net.safetensors", "conv.safetensors", "-f", "json"],
    ]
    light = run_in_fresh_python(commands, modules_left_out("torch", "matplotlib"), tmp_path)
    assert light.returncode == 0, light.stderr
    drawn = run_in_fresh_python(
        [["report", "net.safetensors", "-o", "r.html"]], modules_left_out("torch"), tmp_path
    )
    assert drawn.returncode == 0, drawn.stderr


@pytest.mark.parametrize("command", ["masks", "capacity", "overlap", "compare"])
def test_the_files_notes_are_in_both(tmp_path, command):
    from support.inspect_checkpoints import make_checkpoint, write_native

    write_native(tmp_path / "noted.safetensors", make_checkpoint(), notes=["a caveat"])
    cli = run(command, "noted.safetensors", "--format", "json")
    assert cli.exit_code == 0, cli.stderr
    document = getattr(hatinspect, command)("noted.safetensors").to_dict()
    assert document == json.loads(cli.stdout) and document["notes"] == ["a caveat"]
