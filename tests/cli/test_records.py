"""JSON and CSV output: exact keys, raw numbers, values checked against plain loops."""

import csv
import io
import json

import numpy as np
import pytest
from support.brute_force import growth, overlap_counts, parameter_wise, protected_params, used_units
from support.cli_runs import run, write_examples
from support.inspect_checkpoints import MLP, MLP_MASKS

TASKS = [1, 2, 4]


@pytest.fixture(autouse=True)
def examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path)


def as_json(*args):
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == 1
    return document


def as_csv(*args):
    result = run(*args, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_masks_json():
    doc = as_json("masks", "net.safetensors")
    assert set(doc) == {"schema", "checkpoint", "backbone", "tasks", "layers", "notes"}
    assert (doc["checkpoint"], doc["backbone"], doc["tasks"]) == (
        "net.safetensors",
        "HATMaskMLP",
        TASKS,
    )
    assert [layer["name"] for layer in doc["layers"]] == ["fc/0", "fc/1", "fc/2"]
    for lay, got in zip(MLP, doc["layers"], strict=True):
        assert set(got) == {"name", "units", "tasks", "cumulative", "summative"}
        used_by = [sum(MLP_MASKS[t][lay.name][u] for t in TASKS) for u in range(lay.units)]
        assert got["units"] == lay.units
        assert got["tasks"] == {
            str(t): {
                "active": sum(MLP_MASKS[t][lay.name]),
                "fraction": sum(MLP_MASKS[t][lay.name]) / lay.units,
            }
            for t in TASKS
        }
        active = sum(1 for n in used_by if n)
        assert got["cumulative"] == {"active": active, "fraction": active / lay.units}
        assert got["summative"] == {"max": max(used_by), "mean": sum(used_by) / lay.units}


def test_masks_json_follows_the_selection():
    doc = as_json("masks", "net.safetensors", "-t", "4", "-t", "1", "-l", "fc/1")
    assert doc["tasks"] == [1, 4]
    (layer,) = doc["layers"]
    assert set(layer["tasks"]) == {"1", "4"}
    assert layer["cumulative"]["active"] == 3  # units 0, 2, 3 of fc/1


# the capacity keys as the output contract lists them, in order
CAPACITY_KEYS = [
    "name",
    "units",
    "units_used",
    "unit_usage",
    "params",
    "params_protected",
    "param_usage",
    "free",
]


def test_capacity_json():
    doc = as_json("capacity", "net.safetensors")
    assert set(doc) == {
        "schema",
        "checkpoint",
        "tasks",
        "layers",
        "total",
        "by_task",
        "protects",
        "notes",
    }
    assert doc["protects"] is True
    keys = set(CAPACITY_KEYS)
    protected = protected_params(MLP, MLP_MASKS, TASKS)
    used = used_units(MLP, MLP_MASKS, TASKS)
    params = {
        lay.name: lay.weight_shape[0] * lay.weight_shape[1] + (lay.units if lay.has_bias else 0)
        for lay in MLP
    }
    for lay, got in zip(MLP, doc["layers"], strict=True):
        assert set(got) == {*keys, "preceding_inferred"} and got["preceding_inferred"] is False
        assert got["units_used"] == sum(used[lay.name])
        assert got["unit_usage"] == sum(used[lay.name]) / lay.units
        assert (got["params"], got["params_protected"]) == (params[lay.name], protected[lay.name])
        assert got["param_usage"] == protected[lay.name] / params[lay.name]
        assert got["free"] == pytest.approx(1 - got["param_usage"])
    total = doc["total"]
    assert set(total) == keys and total["name"] == "total"
    assert (total["params"], total["params_protected"]) == (
        sum(params.values()),
        sum(protected.values()),
    )
    for step, loops in zip(doc["by_task"], growth(MLP, MLP_MASKS, TASKS), strict=True):
        assert set(step) == {"task", "new_units", "reused_units", "network_sparsity", "param_usage"}
        assert (step["task"], step["new_units"], step["reused_units"]) == (
            loops["task"],
            loops["new"],
            loops["reused"],
        )
        assert step["network_sparsity"] == loops["new"] / loops["free"]
        assert step["param_usage"] == loops["protected"] / sum(params.values())


def test_capacity_csv_layers_and_total():
    rows = as_csv("capacity", "net.safetensors")
    assert list(rows[0]) == CAPACITY_KEYS
    assert [row["name"] for row in rows] == ["fc/0", "fc/1", "fc/2", "total"]
    assert rows[-1]["params_protected"] == str(
        sum(protected_params(MLP, MLP_MASKS, TASKS).values())
    )
    assert float(rows[0]["param_usage"]) == 28 / 35


def test_capacity_csv_by_task():
    rows = as_csv("capacity", "net.safetensors", "--by-task")
    assert list(rows[0]) == [
        "task",
        "new_units",
        "reused_units",
        "network_sparsity",
        "param_usage",
        "units_used",
        "params_protected",
    ]
    expected = growth(MLP, MLP_MASKS, TASKS)
    assert [int(row["params_protected"]) for row in rows] == [
        step["protected"] for step in expected
    ]


def test_measure_json_and_csv():
    doc = as_json(
        "measure", "net.safetensors", "-l", "fc/1", "--of", "summative", "--aggregation", "max"
    )
    assert set(doc) == {
        "schema",
        "checkpoint",
        "layer",
        "of",
        "aggregation",
        "weight",
        "bias",
        "notes",
        "preceding_inferred",
    }
    assert (doc["layer"], doc["of"], doc["aggregation"]) == ("fc/1", "summative", "max")
    weight, bias = parameter_wise(MLP, MLP_MASKS, TASKS, MLP[1], "summative", "max")
    values = list(weight.values())
    assert doc["weight"]["shape"] == [4, 5]
    assert doc["weight"]["count"] == len(values)
    assert (doc["weight"]["min"], doc["weight"]["max"]) == (min(values), max(values))
    assert doc["weight"]["mean"] == pytest.approx(sum(values) / len(values))
    assert doc["weight"]["histogram"] == [
        {"value": v, "count": values.count(v)} for v in sorted(set(values))
    ]
    assert doc["bias"]["histogram"] == [
        {"value": v, "count": bias.count(v)} for v in sorted(set(bias))
    ]
    rows = as_csv(
        "measure", "net.safetensors", "-l", "fc/1", "--of", "summative", "--aggregation", "max"
    )
    weight_rows = [(int(r["value"]), int(r["count"])) for r in rows if r["tensor"] == "weight"]
    assert weight_rows == [(v, values.count(v)) for v in sorted(set(values))]


def test_measure_json_without_bias():
    doc = as_json("measure", "net.safetensors", "-l", "fc/2")
    assert doc["bias"] is None


def test_overlap_json_and_csv():
    doc = as_json("overlap", "net.safetensors")
    assert set(doc) == {"schema", "checkpoint", "tasks", "network", "layers", "notes"}
    shared, union = overlap_counts(MLP, MLP_MASKS, TASKS)
    network = doc["network"]
    assert (network["units"], network["shared"], network["union"]) == (12, shared, union)
    assert network["jaccard"] == [
        [s / u for s, u in zip(*rows, strict=True)] for rows in zip(shared, union, strict=True)
    ]
    for lay, got in zip(MLP, doc["layers"], strict=True):
        assert (got["name"], got["shared"]) == (
            lay.name,
            overlap_counts([lay], MLP_MASKS, TASKS)[0],
        )
    assert {row["scope"] for row in as_csv("overlap", "net.safetensors")} == {"network"}
    rows = as_csv("overlap", "net.safetensors", "--per-layer")
    assert [row["scope"] for row in rows[::9]] == ["network", "fc/0", "fc/1", "fc/2"]
    first = rows[1]  # network, tasks 1 and 2
    assert (first["task_a"], first["task_b"], int(first["shared"])) == ("1", "2", shared[0][1])


def test_audit_json_and_csv():
    doc = as_json("audit", "net.safetensors", "net.safetensors")
    assert set(doc) == {
        "schema",
        "before",
        "after",
        "tasks",
        "algorithm",
        "soft_protection",
        "rule",
        "tolerance",
        "ok",
        "verdict",
        "protected",
        "changed",
        "layers",
        "notes",
    }
    assert (doc["algorithm"], doc["rule"], doc["tolerance"]) == ("unknown", "bit-identical", None)
    assert doc["verdict"] == f"OK: all {doc['protected']:,} protected parameters are bit-identical."
    assert doc["ok"] is True and doc["changed"] == 0
    assert doc["protected"] == sum(protected_params(MLP, MLP_MASKS, TASKS).values())
    assert [set(layer) for layer in doc["layers"]] == [
        {"name", "protected", "changed", "max_abs_change", "mean_abs_change"}
    ] * 3
    rows = as_csv("audit", "net.safetensors", "net.safetensors")
    assert [row["name"] for row in rows] == ["fc/0", "fc/1", "fc/2"]


def test_info_json_and_csv():
    doc = as_json("info", "net.safetensors")
    assert set(doc) == {
        "schema",
        "checkpoint",
        "backbone",
        "source",
        "tasks",
        "unlearned_tasks",
        "layers",
        "metadata",
        "notes",
    }
    assert doc["unlearned_tasks"] == []
    assert (doc["source"], doc["tasks"], doc["metadata"], doc["notes"]) == (
        "hatinspect",
        TASKS,
        {"s_max": 400},
        [],
    )
    assert doc["layers"][2] == {
        "name": "fc/2",
        "units": 3,
        "weight_shape": [3, 4],
        "has_bias": False,
        "preceding": "fc/1",
        "preceding_inferred": False,
        "params": 12,
    }
    rows = as_csv("info", "net.safetensors")
    assert rows[0] == {
        "name": "fc/0",
        "units": "5",
        "weight_shape": "5x6",
        "has_bias": "True",
        "preceding": "",
        "params": "35",
    }


def test_masks_csv_is_one_row_per_layer():
    rows = as_csv("masks", "net.safetensors")
    assert list(rows[0])[:4] == ["layer", "units", "task_1_active", "task_1_fraction"]
    assert [row["cumulative_active"] for row in rows] == ["4", "4", "3"]


def test_json_is_never_styled():
    result = run("capacity", "net.safetensors", "--format", "json", FORCE_COLOR="1", NO_COLOR=None)
    assert "\x1b" not in result.stdout
    json.loads(result.stdout)


def test_non_finite_changes_become_null(tmp_path):
    from support.inspect_checkpoints import make_checkpoint, random_weights, write_native

    ckpt = make_checkpoint()
    weights = random_weights(ckpt)
    write_native(tmp_path / "a.safetensors", ckpt, weights)
    weights["backbone.fc.0.weight"][0, 0] = np.inf
    write_native(tmp_path / "b.safetensors", ckpt, weights)
    result = run("audit", "a.safetensors", "b.safetensors", "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["changed"] == 1
    assert doc["layers"][0]["max_abs_change"] is None
