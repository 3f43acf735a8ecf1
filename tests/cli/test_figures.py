"""Figures and exports written by the commands, then opened and checked."""

import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from support.cli_runs import one_error_line, run, run_in_fresh_python, write_examples
from support.inspect_checkpoints import layer, make_checkpoint, random_masks, write_native

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)


def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read(24)
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def assert_opens(path):
    data = open(path, "rb").read()
    if path.endswith(".png"):
        assert data.startswith(PNG)
    elif path.endswith(".svg"):
        assert ElementTree.fromstring(data).tag.endswith("svg")
    else:
        assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")


DRAWINGS = {
    "masks": ["masks", "conv.safetensors", "--heatmap"],
    "overlap": ["overlap", "conv.safetensors", "--heatmap"],
    "measure": ["measure", "conv.safetensors", "-l", "block/conv1", "--heatmap"],
    "capacity": ["capacity", "conv.safetensors", "--plot"],
}


@pytest.mark.parametrize("kind", ["png", "svg", "pdf"])
@pytest.mark.parametrize("command", DRAWINGS)
def test_figures_are_written_and_open(command, kind):
    path = f"{command}.{kind}"
    result = run(*DRAWINGS[command], path)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote {path}\n"
    assert result.stdout  # the table still comes
    assert_opens(path)


def test_force_overwrites_and_dpi_scales():
    run("overlap", "net.safetensors", "--heatmap", "o.png", "--dpi", "50")
    small = png_size("o.png")
    assert (
        run("overlap", "net.safetensors", "--heatmap", "o.png", "--dpi", "100").exit_code == 2
    )  # exists, no --force: a usage error
    result = run(
        "overlap",
        "net.safetensors",
        "--heatmap",
        "o.png",
        "--dpi",
        "100",
        "--force",
        "--cmap",
        "magma",
    )
    assert result.exit_code == 0
    assert png_size("o.png")[0] == pytest.approx(2 * small[0], abs=2)


def test_a_failed_run_leaves_no_temporary_files(tmp_path):
    run("masks", "net.safetensors", "-t", "9", "--heatmap", "m.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.safetensors", "net.safetensors"]


@pytest.mark.parametrize(("units", "tasks"), [(10, 1), (2048, 50)])
def test_mask_heatmaps_scale_with_units_and_tasks(tmp_path, units, tasks):
    layers = (layer("fc/0", (units, 8)), layer("fc/1", (units, units), "fc/0"))
    write_native(
        tmp_path / "big.safetensors", make_checkpoint(layers, random_masks(layers, range(tasks)))
    )
    for command in (["masks", "-l", "fc/*", "--heatmap"], ["overlap", "--heatmap"]):
        result = run(command[0], "big.safetensors", "--format", "json", *command[1:], "f.png")
        assert result.exit_code == 0, result.stderr
        width, height = png_size("f.png")
        assert 300 < width < 2000 and 150 < height < 2000
        (tmp_path / "f.png").unlink()


def test_too_many_layers_to_draw_unit_by_unit(tmp_path):
    layers = tuple(layer(f"fc/{i}", (4, 4), f"fc/{i - 1}" if i else None) for i in range(70))
    write_native(tmp_path / "deep.safetensors", make_checkpoint(layers, random_masks(layers, [0])))
    result = run("masks", "deep.safetensors", "--heatmap", "m.png", "-l", "fc/*")
    assert result.exit_code == 1
    one_error_line(result, "70 layers are too many to draw unit by unit", "--layer")
    assert run("masks", "deep.safetensors", "--heatmap", "m.png", "-l", "fc/1?").exit_code == 0
    whole = run("masks", "deep.safetensors", "--heatmap", "w.png")  # the whole-network view
    assert whole.exit_code == 0, whole.stderr


def test_saved_measures_read_back():
    from safetensors import safe_open

    result = run(
        "measure", "conv.safetensors", "-l", "head", "--of", "summative", "--save", "m.safetensors"
    )
    assert result.exit_code == 0, result.stderr
    with safe_open("m.safetensors", framework="numpy") as f:
        assert f.metadata()["layer"] == "head" and f.metadata()["of"] == "summative"
        weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    assert weight.shape == (3, 24) and bias.shape == (3,) and weight.dtype == np.float32
    again = run("measure", "conv.safetensors", "-l", "head", "--save", "m.safetensors")
    assert again.exit_code == 2 and "--force" in again.stderr


def test_drawing_uses_no_pyplot():
    checks = (
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
        "assert 'torch' not in sys.modules"
    )
    result = run_in_fresh_python([["overlap", "net.safetensors", "--heatmap", "o.svg"]], checks)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "command", [["masks", "--heatmap"], ["overlap", "--heatmap"], ["capacity", "--plot"]]
)
def test_nothing_to_draw_without_tasks(tmp_path, command):
    write_native(tmp_path / "empty.safetensors", make_checkpoint(masks={}))
    result = run(command[0], "empty.safetensors", command[1], "f.png")
    assert result.exit_code == 1
    one_error_line(result, "stores no task masks")
    assert not (tmp_path / "f.png").exists()
