"""CLArena's newest saved models (HAT, AdaHAT and its modes, FG-AdaHAT, AmnesiacHAT on an
MLP and a ResNet), written by its own classes (tests/fixtures/peers/clarena-main), read
against the producer's ground truth and against AdaHAT's formulas written out here."""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support.cli_runs import run as run_cli  # noqa: E402
from support.paths import PEERS  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.analysis.adjustment import adjustment, network_capacity  # noqa: E402

HERE = PEERS / "clarena-main"
TRUTH = json.loads((HERE / "truth.json").read_text())
ALGORITHMS = {
    "HAT": "hat",
    "AdaHAT": "adahat",
    "FGAdaHAT": "fg-adahat",
    "AmnesiacHAT": "amnesiac-hat",
}
ADAHAT_FILES = sorted(n for n in TRUTH if TRUTH[n]["algorithm"] in ("AdaHAT", "FGAdaHAT"))


def _open(name):
    return hatinspect.open_checkpoint(HERE / name)


@pytest.mark.parametrize("name", sorted(n for n in TRUTH if TRUTH[n]["algorithm"] in ALGORITHMS))
def test_every_file_reads_as_its_producer_says(name):
    truth, checkpoint = TRUTH[name], _open(name)
    assert checkpoint.metadata["algorithm"] == ALGORITHMS[truth["algorithm"]]
    assert checkpoint.backbone == truth["backbone"]
    assert [
        (layer.name, list(layer.weight_shape), layer.preceding) for layer in checkpoint.layers
    ] == [(layer["name"], layer["weight_shape"], layer["preceding"]) for layer in truth["layers"]]
    assert checkpoint.task_ids == tuple(sorted(int(t) for t in truth["masks"]))
    for task, layers in truth["masks"].items():
        for layer, values in layers.items():
            assert checkpoint.masks[int(task)][layer].tolist() == [int(v) for v in values]
    hparams = json.loads(checkpoint.metadata["hparams"])
    for key, value in truth["hparams"].items():  # the producer's own save_hyperparameters
        assert hparams.get(key, value) == value
    assert {"s_max", "clamp_threshold", "mask_sparsity_reg_factor"} <= set(hparams)


def _union(masks: dict, tasks) -> dict[str, list[int]]:
    """Brute force: 1 where any of `tasks` uses the unit."""
    layers = next(iter(masks.values()))
    return {
        layer: [int(any(masks[str(t)][layer][i] > 0.5 for t in tasks)) for i in range(len(values))]
        for layer, values in layers.items()
    }


@pytest.mark.parametrize("network", ["amnesiac_hat_mlp", "amnesiac_hat_resnet"])
def test_an_unlearned_task_is_shown_and_counted_nowhere(network):
    name = f"{network}/model_after_task_3.pth"
    truth, checkpoint = TRUTH[name], _open(name)
    assert truth["unlearned_task_ids"] == [2]
    assert checkpoint.unlearned == (2,) and checkpoint.retained_task_ids == (1, 3)
    assert 2 in checkpoint.task_ids  # its masks are still there to be seen
    expected = _union(truth["masks"], [1, 3])
    assert {k: v.tolist() for k, v in checkpoint.cumulative_mask().items()} == expected
    # the producer's stored cumulative mask still counts task 2 (written before unlearning)
    assert truth["cumulative"] == _union(truth["masks"], [1, 2, 3]) != expected
    assert any("cumulative_mask_for_previous_tasks differs" in n for n in checkpoint.notes)
    report = hatinspect.capacity(checkpoint)
    assert report.tasks == (1, 3)
    assert report.total.units_used == sum(map(sum, expected.values()))
    assert any("training examples" in note for note in checkpoint.notes)


def test_the_stored_parameter_updates_are_measured_per_task_and_layer():
    name = "amnesiac_hat_mlp/model_after_task_3.pth"
    truth, checkpoint = TRUTH[name], _open(name)
    norms = json.loads(checkpoint.metadata["parameter_update_norms"])
    assert sorted(norms) == sorted(truth["update_norms"]) == ["1", "3"]  # 2's was deleted
    for task, keys in truth["update_norms"].items():
        for layer in checkpoint.layer_names:
            key = layer.replace("/", ".")
            expected = math.hypot(keys[f"{key}.weight"], keys.get(f"{key}.bias", 0.0))
            assert norms[task][layer] == pytest.approx(expected, rel=1e-5)


def test_audit_across_an_unlearning_protects_only_the_tasks_kept():
    before, after = (HERE / f"amnesiac_hat_mlp/model_after_task_{t}.pth" for t in (2, 3))
    report = hatinspect.audit(before, after)
    assert report.tasks == (1,) and report.soft and report.ok
    assert any("task 2 was unlearned" in n and "removed" in n for n in report.notes)
    truth = TRUTH["amnesiac_hat_mlp/model_after_task_2.pth"]
    task1 = {layer: [int(v) for v in m] for layer, m in truth["masks"]["1"].items()}
    protected = sum(  # brute force: a weight is protected when both its units are task 1's
        sum(
            task1[layer["name"]][i] * (task1[layer["preceding"]][j] if layer["preceding"] else 1)
            for i in range(layer["weight_shape"][0])
            for j in range(layer["weight_shape"][1])
        )
        + sum(task1[layer["name"]])  # the biases
        for layer in truth["layers"]
    )
    assert report.protected == protected
    strict = run_cli("audit", str(before), str(after), "--strict")
    assert strict.exit_code == 1 and "softly by design" in strict.output


def _paper_rate(alpha, epsilon, sparsity, importance):
    """AdaHAT eq. 9: r = alpha / (epsilon + s); the rate is r / (I + r)."""
    r = alpha / (epsilon + sparsity)
    return r / (importance + r)


def test_the_adjustment_rate_is_adahats_formula_written_out():
    name = "adahat_mlp/cl_model.pth"
    truth, checkpoint = TRUTH[name], _open(name)
    masks = {int(t): m for t, m in truth["masks"].items()}
    layers = {layer["name"]: layer for layer in truth["layers"]}
    for layer, info in layers.items():
        earlier = [masks[1][layer][i] + masks[2][layer][i] for i in range(info["weight_shape"][0])]
        free = [i for i in range(len(earlier)) if not (masks[1][layer][i] or masks[2][layer][i])]
        claimed = sum(masks[3][layer][i] for i in free)
        sparsity = claimed / len(free) if len(free) > 10 else 0.0
        out, inp = info["weight_shape"]
        previous = info["preceding"]
        expected = np.empty((out, inp))
        for i in range(out):
            for j in range(inp):
                importance = earlier[i]
                if previous:
                    importance = min(importance, masks[1][previous][j] + masks[2][previous][j])
                expected[i, j] = _paper_rate(0.1, 0.1, sparsity, importance)
        measured = hatinspect.measure(checkpoint, layer, of="adjustment")
        assert measured.adjustment["sparsity"] == pytest.approx(sparsity)
        np.testing.assert_allclose(measured.weight, expected, rtol=1e-6)
        np.testing.assert_allclose(
            measured.bias, [_paper_rate(0.1, 0.1, sparsity, e) for e in earlier], rtol=1e-6
        )


@pytest.mark.parametrize("name", ADAHAT_FILES)
def test_the_adjustment_rate_and_network_capacity_match_the_producers(name):
    truth, checkpoint = TRUTH[name]["adjustment"], _open(name)
    for layer in checkpoint.layer_names:
        measured = hatinspect.measure(checkpoint, layer, of="adjustment")
        np.testing.assert_allclose(measured.weight.ravel(), truth["weight"][layer], atol=1e-6)
        assert measured.adjustment["sparsity"] == pytest.approx(truth["network_sparsity"][layer])
    means = network_capacity(checkpoint, adjustment(checkpoint))
    assert means["clarena"] == pytest.approx(truth["network_capacity"], rel=1e-6)
    report = hatinspect.capacity(checkpoint)
    assert report.network_capacity["clarena"] == pytest.approx(truth["network_capacity"], rel=1e-6)


def test_the_per_parameter_mean_counts_only_the_parameters_there_are():
    name = "adahat_no_sum_mlp/cl_model.pth"
    checkpoint = _open(name)
    rates = adjustment(checkpoint)
    # adahat_no_sum: one rate r / (t + r) per layer; brute force over every parameter
    values = []
    for layer in checkpoint.layers:
        r = 0.1 / (0.1 + rates.sparsity[layer.name])
        values += [r / (3 + r)] * layer.params
    means = network_capacity(checkpoint, rates)
    assert means["per_parameter"] == pytest.approx(sum(values) / len(values))
    # CLArena counts each layer's single rate once for the weight and once for the bias
    per_layer = [0.1 / (0.1 + rates.sparsity[n]) for n in checkpoint.layer_names]
    assert means["clarena"] == pytest.approx(np.mean([r / (3 + r) for r in per_layer]))


def test_a_given_sparsity_replaces_the_stored_masks_one():
    checkpoint = _open("adahat_mlp/cl_model.pth")
    measured = hatinspect.measure(checkpoint, "fc/0", of="adjustment", sparsity=0.5)
    assert measured.adjustment["sparsity_given"] and measured.adjustment["sparsity"] == 0.5
    r = 0.1 / (0.1 + 0.5)
    assert measured.weight_stats.max == 1 and measured.weight_stats.min == pytest.approx(
        r / (2 + r)
    )


def test_fg_adahats_rate_is_its_formula_written_out():
    name = "fgadahat_mlp/cl_model.pth"
    truth, checkpoint = TRUTH[name], _open(name)
    hparams, masks = truth["hparams"], {int(t): m for t, m in truth["masks"].items()}
    alpha, base, linear = (hparams[k] for k in ("adjustment_intensity", "base_mask_sparsity_reg",
                                                 "base_linear"))  # fmt: skip
    # the importance the last task trained under: the earlier tasks' summed (add_latest)
    summed = {layer: [a + b for a, b in zip(truth["importances"]["1"][layer],
                                           truth["importances"]["2"][layer], strict=True)]
              for layer in checkpoint.layer_names}  # fmt: skip
    for info in truth["layers"]:
        layer, previous = info["name"], info["preceding"]
        pairs = zip(masks[1][layer], masks[2][layer], strict=True)
        free = [i for i, (a, b) in enumerate(pairs) if not a + b]
        sparsity = sum(masks[3][layer][i] for i in free) / len(free) if len(free) > 10 else 0.0
        k = (sparsity + base) * (3 + linear)  # linear_sparsity_reg, after task 3
        out, inp = info["weight_shape"]
        expected = np.empty((out, inp))
        for i in range(out):
            for j in range(inp):
                importance = (
                    min(summed[layer][i], summed[previous][j]) if previous else summed[layer][i]
                )
                expected[i, j] = alpha / (k * importance + alpha)
        measured = hatinspect.measure(checkpoint, layer, of="adjustment")
        np.testing.assert_allclose(measured.weight, expected, rtol=1e-5)


def test_fg_adahats_importances_read_as_the_producer_kept_them():
    name = "fgadahat_mlp/cl_model.pth"
    truth, checkpoint = TRUTH[name], _open(name)
    assert truth["importance_type"] == "output_weight_abs_sum"
    for task, layers in truth["importances"].items():
        for info in truth["layers"]:
            layer, previous = info["name"], info["preceding"]
            measured = hatinspect.measure(checkpoint, layer, of=f"importance:{task}")
            np.testing.assert_allclose(measured.bias, layers[layer], atol=1e-6)
            rows = np.array(layers[layer])[:, None]
            expected = np.minimum(rows, np.array(layers[previous])[None, :]) if previous else (
                np.repeat(rows, info["weight_shape"][1], axis=1))  # fmt: skip
            np.testing.assert_allclose(measured.weight, expected, atol=1e-6)
    summed = hatinspect.measure(checkpoint, "fc/0", of="importance")
    np.testing.assert_allclose(summed.bias, truth["summative_importance"]["fc/0"], atol=1e-6)
    missing = run_cli("measure", str(HERE / name), "-l", "fc/0", "--of", "importance:9")
    assert missing.exit_code == 1 and "it has 1, 2, 3" in missing.output


def test_a_hat_file_has_no_adjustment_rate_and_says_so_in_one_line():
    result = run_cli("measure", str(PEERS / "clarena_hat_mlp.pth"), "-l", "fc/0", "--of",
                     "adjustment")  # fmt: skip
    assert result.exit_code == 1 and "no adjustment rate" in result.output
    assert "Traceback" not in result.output


def test_info_names_the_algorithm_its_protection_and_hyperparameters():
    result = run_cli("info", str(HERE / "amnesiac_hat_mlp/model_after_task_3.pth"), "-f", "json")
    record = json.loads(result.stdout)
    assert record["unlearned_tasks"] == [2]
    assert record["metadata"]["algorithm"] == "amnesiac-hat"
    assert record["metadata"]["hparams"]["architecture"] == "AdaHAT"
    table = run_cli("info", str(HERE / "amnesiac_hat_mlp/model_after_task_3.pth"))
    assert "2 (unlearned)" in table.stdout and "AmnesiacHAT, soft protection" in table.stdout


def _planted(source, target):
    """The fixture's pickle with a call of os.system appended beside its top object."""
    with zipfile.ZipFile(source) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(n for n in entries if n.endswith("/data.pkl"))
    original = entries[name]
    assert original[:2] == b"\x80\x02" and original[-1:] == b"."

    class Planted:
        def __reduce__(self):
            return os.system, ("touch pwned",)

    extra = pickle.dumps(Planted(), protocol=2)
    entries[name] = original[:-1] + extra[2:-1] + b"\x86."  # (model, planted) as a tuple
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)


def test_a_planted_global_in_a_new_style_saved_model_is_refused_and_never_runs(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    _planted(HERE / "amnesiac_hat_mlp/model_after_task_3.pth", tmp_path / "model.pth")
    result = run_cli("info", "model.pth")
    assert result.exit_code == 1
    assert "refused" in result.output and (
        "os.system" in result.output or "posix.system" in result.output
    )
    assert not (tmp_path / "pwned").exists()


def test_compare_reads_a_clarena_output_folder_or_its_acc_csv():
    folder = HERE / "adahat_mlp"
    expected = TRUTH["adahat_mlp/cl_model.pth"]["accuracy"]
    for given in (folder, folder / "results" / "acc.csv"):
        (run,) = hatinspect.compare(given).runs
        assert run.accuracy_tasks == (1, 2, 3)
        assert [list(row) for row in run.accuracy] == [pytest.approx(r) for r in expected]
        last = run.steps[-1]
        assert last.accuracy == pytest.approx(sum(expected[2]) / 3)
        bwt = ((expected[2][0] - expected[0][0]) + (expected[2][1] - expected[1][1])) / 2
        assert last.backward_transfer == pytest.approx(bwt)


def test_an_unlearning_run_keeps_each_steps_accuracy_row_and_its_metrics():
    (run,) = hatinspect.compare(HERE / "amnesiac_hat_mlp").runs
    expected = TRUTH["amnesiac_hat_mlp/model_after_task_3.pth"]["accuracy"]
    assert [step.task for step in run.steps] == [1, 3]  # task 2 was unlearned
    assert run.steps[-1].accuracy == pytest.approx(sum(expected[2]) / 3)  # the row of task 3
    assert sorted(table.path.rsplit("/", 1)[1] for table in run.metrics) == ["ag.csv", "dd.csv"]
    record = json.loads(run_cli("compare", str(HERE / "amnesiac_hat_mlp"), "-f", "json").stdout)
    assert record["runs"][0]["metrics_files"][1]["average"].startswith("average_distribution")


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_the_report_shows_unlearning_accuracy_and_soft_protection(tmp_path, suffix):
    output = tmp_path / f"report{suffix}"
    result = run_cli("report", str(HERE / "amnesiac_hat_mlp"), "-o", str(output))
    assert result.exit_code == 0, result.output
    text = output.read_text()
    for fragment in ("2 (unlearned)", "backward transfer", "dd.csv", "Network capacity",
                     "AmnesiacHAT, soft protection"):  # fmt: skip
        assert fragment in text, fragment
    assert "parameter_update_norms" not in text  # shown as a table, never as raw metadata


def test_a_converted_file_reads_as_the_original(tmp_path):
    source = HERE / "amnesiac_hat_mlp/model_after_task_3.pth"
    native = hatinspect.convert(source, tmp_path / "m.safetensors")
    original, converted = _open(source.relative_to(HERE)), hatinspect.open_checkpoint(native)
    assert converted.unlearned == original.unlearned == (2,)
    assert converted.metadata["algorithm"] == "amnesiac-hat"
    for name in original.layer_names:
        assert (converted.cumulative_mask()[name] == original.cumulative_mask()[name]).all()
        a = hatinspect.measure(original, name, of="adjustment")
        b = hatinspect.measure(converted, name, of="adjustment")
        assert a.weight_stats == b.weight_stats
    assert hatinspect.capacity(converted).network_capacity == pytest.approx(
        hatinspect.capacity(original).network_capacity
    )


def test_the_overlap_of_importances_is_their_weighted_jaccard():
    name = "fgadahat_mlp/cl_model.pth"
    truth = TRUTH[name]["importances"]
    record = json.loads(run_cli("overlap", str(HERE / name), "--of", "importance", "-f",
                                "json").stdout)  # fmt: skip
    network = record["scopes"][0]["weighted_jaccard"]
    tasks = sorted(truth, key=int)
    for a, ta in enumerate(tasks):
        for b, tb in enumerate(tasks):
            x = [v for layer in truth[ta].values() for v in layer]
            y = [v for layer in truth[tb].values() for v in layer]
            low = sum(min(p, q) for p, q in zip(x, y, strict=True))
            high = sum(max(p, q) for p, q in zip(x, y, strict=True))
            assert network[a][b] == pytest.approx(low / high, abs=1e-5)
    refused = run_cli("overlap", str(HERE / "adahat_mlp/cl_model.pth"), "--of", "importance")
    assert refused.exit_code == 1 and "holds no importances" in refused.output


def test_the_report_of_fg_adahat_shows_its_importances(tmp_path):
    output = tmp_path / "r.html"
    result = run_cli("report", str(HERE / "fgadahat_mlp"), "-o", str(output))
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert "Importances" in text and "output_weight_abs_sum" in text
    run_cli("report", str(HERE / "fgadahat_mlp"), "-o", str(tmp_path / "r.json"))
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["runs"][0]["importance_overlap"]["tasks"] == [1, 2, 3]


def test_nested_copies_of_the_masks_agree_in_the_producers_resnet():
    checkpoint = _open("amnesiac_hat_resnet/model_after_task_3.pth")
    assert not any("nested blocks" in note for note in checkpoint.notes)


class _Block(torch.nn.Module):
    """A nested HAT block as CLArena's store_mask leaves it: its own copy of the masks."""

    def __init__(self, masks):
        super().__init__()
        self.weighted_layer_names = ["fc/1"]
        self.masks = masks


class _Backbone(torch.nn.Module):
    def __init__(self, masks, nested):
        super().__init__()
        self.fc = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)])
        self.task_embedding_t = torch.nn.ModuleDict(
            {"fc/0": torch.nn.Embedding(1, 4), "fc/1": torch.nn.Embedding(1, 2)}
        )
        self.weighted_layer_names = ["fc/0", "fc/1"]
        self.masks = masks
        self.block = _Block(nested)


def test_nested_copies_that_disagree_are_a_note_and_count_once(tmp_path):
    masks = {1: {"fc/0": torch.tensor([1.0, 0, 1, 0]), "fc/1": torch.tensor([1.0, 0])}}
    nested = {"1": {"fc/1": torch.tensor([0.0, 1])}}  # a copy under a string key, changed
    torch.save(_Backbone(masks, nested), tmp_path / "m.pth")
    checkpoint = hatinspect.open_checkpoint(tmp_path / "m.pth")
    assert checkpoint.masks[1]["fc/1"].tolist() == [1, 0]  # the backbone's own
    assert checkpoint.summative_mask()["fc/1"].tolist() == [1, 0]  # counted once
    assert any(
        "nested blocks differ" in note and "task 1, fc/1" in note for note in checkpoint.notes
    )


@pytest.mark.parametrize(
    ("name", "protection"),
    [("hat_mlp/cl_model.pth", "hard"), ("amnesiac_hat_on_hat_mlp/model_after_task_3.pth", "hard"),
     ("amnesiac_hat_mlp/model_after_task_3.pth", "soft"), ("adahat_mlp/cl_model.pth", "soft")],
)  # fmt: skip
def test_each_algorithm_protects_by_its_own_rule(name, protection):
    from hatinspect.native.format import protection_of

    checkpoint = _open(name)
    assert protection_of(checkpoint.metadata) == protection
    soft_note = any("protects earlier tasks softly" in note for note in checkpoint.notes)
    assert soft_note == (protection == "soft")
    assert (hatinspect.capacity(checkpoint).network_capacity is not None) == (protection == "soft")
    words = "bit-identical protection" if protection == "hard" else "soft protection"
    assert words in run_cli("info", str(HERE / name)).stdout


def test_unlearning_frees_units_and_names_the_compensation_sets():
    name = "amnesiac_hat_mlp/model_after_task_3.pth"
    masks = TRUTH[name]["masks"]
    (effect,) = hatinspect.capacity(_open(name)).unlearning
    assert (effect.task, effect.affected) == (2, (3,))
    for layer, values in masks["2"].items():  # brute force, unit by unit
        freed = sum(
            1
            for i, v in enumerate(values)
            if v and not (masks["1"][layer][i] or masks["3"][layer][i])
        )
        assert effect.freed_by_layer[layer] == freed
    shared = sum(
        1 for layer, values in masks["2"].items() for i, v in enumerate(values)
        if v and masks["3"][layer][i]
    )  # fmt: skip
    assert effect.compensation == {3: shared}
    record = json.loads(run_cli("capacity", str(HERE / name), "-f", "json").stdout)
    assert record["unlearning"][0]["compensation_units"] == {"3": shared}


def test_the_cross_regulariser_needs_a_given_sparsity():
    from dataclasses import replace

    checkpoint = _open("adahat_mlp/cl_model.pth")
    hparams = {**json.loads(checkpoint.metadata["hparams"]), "mask_sparsity_reg_mode": "cross"}
    cross = replace(checkpoint, metadata={**checkpoint.metadata, "hparams": json.dumps(hparams)})
    with pytest.raises(hatinspect.HatinspectError, match="give --sparsity"):
        hatinspect.measure(cross, "fc/0", of="adjustment")
    assert (
        hatinspect.measure(cross, "fc/0", of="adjustment", sparsity=0.2).adjustment["sparsity"]
        == 0.2
    )


@pytest.mark.parametrize(
    ("name", "of"),
    [("adahat_mlp/cl_model.pth", "adjustment"), ("fgadahat_mlp/cl_model.pth", "importance:2")],
)
def test_the_rate_and_importance_draw_as_heatmaps(tmp_path, name, of):
    figure = tmp_path / "m.svg"
    result = run_cli(
        "measure", str(HERE / name), "-l", "fc/1", "--of", of, "--heatmap", str(figure)
    )
    assert result.exit_code == 0, result.output
    assert figure.read_text().lstrip().startswith(("<?xml", "<svg"))
