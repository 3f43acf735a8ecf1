"""Tables hold all their data: piped output has no width limit, a table too wide for a set
width is folded (never cut to "…"), notes go to stderr, and JSON is stable and typed.

The checkpoints are real networks written by `save_checkpoint`: an MLP with 20 tasks and
a HATMaskResNet152 (155 masked layers) with 3.
"""

from __future__ import annotations

import json

import pytest
import torch
from support.cli_runs import run

import hatinspect
from hatinspect.backbones import HATMaskMLP, HATMaskResNet152
from hatinspect.render.demo import print_table

PIPED = {"COLUMNS": None}  # no COLUMNS and not a terminal: no width limit


def _random_masks(net, tasks, seed=0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        task: {
            name: (torch.rand(embedding.weight.shape[1], generator=generator) < 0.4).float()
            for name, embedding in net.task_embedding_t.items()
        }
        for task in tasks
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("complete")
    mlp = HATMaskMLP(input_dim=6, hidden_dims=[12, 9], output_dim=7, gate="sigmoid")
    mlp.restore_masks(_random_masks(mlp, range(20)))
    metadata = {"s_max": 400.0, "algorithm": "hat", "seed": 3, "name": "run", "lrs": [0.1]}
    hatinspect.save_checkpoint(folder / "mlp20.safetensors", mlp, metadata=metadata)
    resnet = HATMaskResNet152(input_channels=3, output_dim=2048, gate="sigmoid")
    resnet.restore_masks(_random_masks(resnet, range(3), seed=1))
    hatinspect.save_checkpoint(folder / "r152.safetensors", resnet)
    return folder


def _json(*args) -> dict:
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _piped(*args) -> str:
    result = run(*args, **PIPED)
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout and "do not fit" not in result.stdout
    return result.stdout


def _rows(text: str) -> dict[str, list[str]]:
    """Body rows of every table in `text`, by their first cell (later tables add cells)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            rows.setdefault(cells[0], []).extend(cells[1:])
    return rows


@pytest.mark.parametrize("name", ["mlp20", "r152"])
def test_piped_masks_table_holds_every_number_of_the_json(files, name):
    path = files / f"{name}.safetensors"
    doc = _json("masks", path)
    rows = _rows(_piped("masks", path))
    assert len(doc["layers"]) == (3 if name == "mlp20" else 155)
    for layer in doc["layers"]:
        per_task = [
            f"{layer['tasks'][str(t)]['active']:,} ({layer['tasks'][str(t)]['fraction']:.0%})"
            for t in doc["tasks"]
        ]
        cumulative = f"{layer['cumulative']['active']:,} ({layer['cumulative']['fraction']:.0%})"
        summative = [str(layer["summative"]["max"]), f"{layer['summative']['mean']:.2f}"]
        assert rows[layer["name"]] == [f"{layer['units']:,}", *per_task, cumulative, *summative]


@pytest.mark.parametrize("name", ["mlp20", "r152"])
def test_piped_capacity_table_holds_every_number_of_the_json(files, name):
    path = files / f"{name}.safetensors"
    doc = _json("capacity", path)
    rows = _rows(_piped("capacity", path))
    for usage in [*doc["layers"], doc["total"]]:
        assert rows[usage["name"]][:7] == [
            f"{usage['units']:,}",
            f"{usage['units_used']:,}",
            f"{usage['unit_usage']:.1%}",
            f"{usage['params']:,}",
            f"{usage['params_protected']:,}",
            f"{usage['param_usage']:.1%}",
            f"{1 - usage['param_usage']:.1%}",
        ]
    for step in doc["by_task"]:
        assert rows[str(step["task"])][2] == f"{step['network_sparsity']:.1%}"


def test_piped_overlap_of_twenty_tasks_holds_every_matrix_cell(files):
    path = files / "mlp20.safetensors"
    doc = _json("overlap", path, "--per-layer")
    result = run("overlap", path, "--per-layer", **PIPED)
    assert result.exit_code == 0 and result.stderr == ""
    blocks = result.stdout.split("Shared units (Jaccard) between tasks, ")[1:]
    scopes = [doc["network"], *doc["layers"]]
    assert len(blocks) == len(scopes)
    for block, scope in zip(blocks, scopes, strict=True):
        rows = _rows(block)
        for a, task in enumerate(doc["tasks"]):
            assert rows[str(task)] == [
                f"{scope['shared'][a][b]:,} ({scope['jaccard'][a][b]:.2f})"
                for b in range(len(doc["tasks"]))
            ]


def test_a_set_width_folds_the_twenty_task_overlap_without_losing_cells(files):
    path = files / "mlp20.safetensors"
    doc = _json("overlap", path)
    text = run("overlap", path, "--width", "80", **PIPED).stdout
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    rows = _rows(text)
    network = doc["network"]
    for a, task in enumerate(doc["tasks"]):
        assert rows[str(task)] == [
            f"{network['shared'][a][b]:,} ({network['jaccard'][a][b]:.2f})" for b in range(20)
        ]


def test_narrow_masks_fold_without_notes_and_chosen_tasks_stay(files):
    path = files / "r152.safetensors"
    narrow = run("masks", path, "--width", "60", **PIPED)
    assert narrow.stderr == "" and "…" not in narrow.stdout
    chosen = run("masks", path, "-t", "0", "-t", "1", "-t", "2", "--width", "80", **PIPED)
    out = chosen.stdout
    assert all(f" task {t} " in out or f" t{t} " in out for t in range(3)), out
    assert "--task" not in chosen.stderr and "…" not in chosen.stdout


def test_wide_overlap_is_summarised_with_a_note(tmp_path):
    from support.inspect_checkpoints import MLP, make_checkpoint, random_masks, write_native

    tasks = range(70)
    write_native(tmp_path / "wide.safetensors", make_checkpoint(MLP, random_masks(MLP, tasks)))
    doc = _json("overlap", tmp_path / "wide.safetensors")
    result = run("overlap", tmp_path / "wide.safetensors", "--per-layer", **PIPED)
    assert result.stderr.count("note:") == 1 and "--format json" in result.stderr
    rows = _rows(result.stdout.split("layer fc/0")[0])
    jaccard = doc["network"]["jaccard"]
    for a, task in enumerate(doc["tasks"]):
        others = [jaccard[a][b] for b in range(len(tasks)) if b != a]
        kept, mean, closest, best, farthest, worst = rows[str(task)]
        assert kept == f"{doc['network']['shared'][a][a]:,}"
        assert mean == f"{sum(others) / len(others):.2f}"
        assert best == f"{max(others):.2f}" and worst == f"{min(others):.2f}"
        assert jaccard[a][doc["tasks"].index(int(closest))] == max(others)


def test_info_json_keeps_metadata_types_and_is_byte_identical(files):
    path = files / "mlp20.safetensors"
    first = run("info", path, "--format", "json").stdout
    assert all(run("info", path, "--format", "json").stdout == first for _ in range(3))
    metadata = json.loads(first)["metadata"]
    assert list(metadata) == sorted(metadata)
    assert len(metadata.pop("run_id")) == 32  # save_checkpoint's, one per training run
    assert metadata == {"algorithm": "hat", "lrs": [0.1], "name": "run", "s_max": 400.0, "seed": 3}


class _Demo:
    algorithm, backbone, dataset, seed, epochs = "hat", "mlp", "toy", 0, 1
    tasks = 12
    accuracy = tuple(tuple(0.5 + 0.01 * t + 0.001 * j for j in range(t + 1)) for t in range(12))
    forgetting = tuple(0.0123 * j for j in range(11))
    capacity = tuple(0.05 * t for t in range(12))
    checkpoints = ()
    average_accuracy = 0.6
    mean_forgetting = 0.01


@pytest.mark.parametrize("width", [None, 80, 50])
def test_wide_accuracy_matrix_is_folded_never_ellipsised(capsys, monkeypatch, width):
    monkeypatch.delenv("COLUMNS", raising=False)
    print_table(_Demo(), width)
    text = capsys.readouterr().out
    assert "…" not in text
    if width:
        assert max(map(len, text.splitlines())) <= width
    rows = _rows(text)
    for t, row in enumerate(_Demo.accuracy, start=1):
        cells = [cell for cell in rows[f"task {t}"] if cell]
        assert cells == [f"{a:.1%}" for a in row] + [f"{_Demo.capacity[t - 1]:.1%}"]
    forgetting = [cell for cell in rows["forgetting"] if cell]
    assert forgetting == [f"{100 * f:.1f}" for f in _Demo.forgetting]
