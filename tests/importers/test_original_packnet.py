"""PackNet's own checkpoints (arunmallya/packnet): files written by its own classes and
``Manager.save_model`` (tests/fixtures/peers/packnet-arunmallya), zip and legacy, counted
against the producer's ``previous_masks`` weight by weight; hostile variants refused."""

from __future__ import annotations

import argparse
import json
import os
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support.cli_runs import one_error_line, run  # noqa: E402
from support.old_torch import save_as_torch_0_2  # noqa: E402
from support.paths import PEERS  # noqa: E402
from support.tensor_bytes import with_tensor_bytes  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.model.checkpoint import Covers  # noqa: E402

HERE = PEERS / "packnet-arunmallya"
TRUTH = json.loads((HERE / "truth.json").read_text())
LEGACY = "flowers_pruned_final.pt"  # torch.save(..., _use_new_zipfile_serialization=False)
# (BEFORE, AFTER): AFTER adds a task to BEFORE's, whose masks it keeps
PAIRS = [
    ("imagenet_pruned_final.pt", "cubs_cropped.pt"),
    ("imagenet_pruned_final.pt", "cubs_cropped_pruned_final.pt"),
    ("cubs_cropped_pruned_final.pt", "flowers.pt"),
    ("cubs_cropped_pruned_final.pt", LEGACY),
]


def _layers(name):
    """module index -> (layer name, owner values as an array of the weight's shape)."""
    truth = TRUTH[name]
    return {
        int(i): ("shared/" + truth["modules"][int(i)][0].replace(".", "/"),
                 np.array(values).reshape(truth["shapes"][i]))
        for i, values in sorted(truth["masks"].items(), key=lambda kv: int(kv[0]))
    }  # fmt: skip


def _weights(name, index):
    truth = TRUTH[name]
    return np.array(truth["weights"][str(index)], np.float32).reshape(truth["shapes"][str(index)])


def _task_count(name):
    return max(TRUTH[name]["dataset2idx"].values())


def test_the_legacy_fixture_is_legacy_and_the_others_zip():
    for name in TRUTH:
        assert zipfile.is_zipfile(HERE / name) == (name != LEGACY)


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_task_k_uses_the_weights_of_value_1_to_k(name):
    checkpoint = hatinspect.open_checkpoint(HERE / name)
    count = _task_count(name)
    layers = _layers(name)
    assert checkpoint.covers == Covers.PARAMETERS
    assert checkpoint.task_ids == tuple(range(1, count + 1))
    assert checkpoint.layer_names == [layer for layer, _ in layers.values()]
    for layer, values in layers.values():
        for task in checkpoint.task_ids:  # brute force, weight by weight
            expected = [int(0 < v <= task) for v in values.flatten().tolist()]
            assert checkpoint.masks[task][layer].flatten().tolist() == expected
    datasets = json.loads(checkpoint.metadata["packnet.datasets"])
    assert datasets == {str(t): d for d, t in TRUTH[name]["dataset2idx"].items()}
    indices = json.loads(checkpoint.metadata["packnet.module_index"])
    assert indices == {layer: index for index, (layer, _) in layers.items()}


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_capacity_counts_each_tasks_own_weights(name):
    values = np.concatenate([v.flatten() for _, v in _layers(name).values()])
    report = hatinspect.capacity(HERE / name)
    owned = {step.task: step.new_params for step in report.by_task}
    assert owned == {t: int((values == t).sum()) for t in range(1, _task_count(name) + 1)}
    assert report.total.params_protected == int((values > 0).sum())


def test_overlap_is_the_weights_both_tasks_use():
    name = "flowers.pt"
    values = np.concatenate([v.flatten() for _, v in _layers(name).values()])
    report = hatinspect.overlap(HERE / name)
    tasks = report.tasks
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            both = int(((values > 0) & (values <= min(a, b))).sum())
            assert int(report.network.shared[i, j]) == both


@pytest.mark.parametrize(("before", "after"), PAIRS)
def test_the_audit_finds_every_earlier_tasks_weight_frozen(before, after):
    report = hatinspect.audit(HERE / before, HERE / after)
    owned = changed = 0
    for index, (_, values) in _layers(before).items():
        protected = values > 0  # every task of BEFORE's
        owned += int(protected.sum())
        moved = _weights(before, index) != _weights(after, index)
        changed += int((moved & protected).sum())
    assert changed == 0  # PackNet's own training kept them
    assert report.ok and report.protected == owned and report.changed == 0


def test_an_audit_within_one_task_is_refused_its_mask_was_pruned():
    with pytest.raises(hatinspect.HatinspectError, match="task 3's mask of layer"):
        hatinspect.audit(HERE / "flowers.pt", HERE / LEGACY)


def _changed_copy(tmp_path, name, index, where):
    """The file with one weight of module ``index`` moved by 1, its bytes found by value."""
    weights = _weights(name, index)
    old = weights.tobytes()
    weights[where] += 1
    return with_tensor_bytes(HERE / name, old, weights.tobytes(), tmp_path / name)


@pytest.mark.parametrize("after", ["flowers.pt", LEGACY])
def test_a_moved_weight_of_an_earlier_task_fails_the_audit(tmp_path, after):
    before = "cubs_cropped_pruned_final.pt"
    index, (_, values) = next(iter(_layers(before).items()))
    where = tuple(np.argwhere(values == 1)[0])  # ImageNet's
    moved = _changed_copy(tmp_path, after, index, where)
    report = hatinspect.audit(HERE / before, moved)
    assert not report.ok and report.changed == 1


def test_a_moved_free_weight_passes_the_audit(tmp_path):
    before, after = "cubs_cropped_pruned_final.pt", "flowers.pt"
    index, (_, values) = next(iter(_layers(before).items()))
    where = tuple(np.argwhere(values == 0)[0])  # free before: flowers may train it
    report = hatinspect.audit(HERE / before, _changed_copy(tmp_path, after, index, where))
    assert report.ok and report.changed == 0


def test_the_commands_give_the_producers_numbers():
    name = "cubs_cropped_pruned_final.pt"
    values = np.concatenate([v.flatten() for _, v in _layers(name).values()])
    info = run("info", HERE / name, "--format", "json")
    assert info.exit_code == 0 and json.loads(info.stdout)["tasks"] == [1, 2]
    masks = json.loads(run("masks", HERE / name, "--format", "json").stdout)
    first = _layers(name)[min(_layers(name))][1]
    assert masks["layers"][0]["tasks"]["1"]["active"] == int((first == 1).sum())
    capacity = run("capacity", HERE / name, "--by-task", "--format", "json")
    assert capacity.exit_code == 0
    by_task = json.loads(capacity.stdout)["by_task_params"]
    assert [row["new_params"] for row in by_task] == [int((values == t).sum()) for t in (1, 2)]
    overlap = run("overlap", HERE / name, "--format", "json")
    shared = json.loads(overlap.stdout)["network"]["shared"]
    assert overlap.exit_code == 0 and shared[0][1] == int((values == 1).sum())
    audit = run("audit", HERE / name, HERE / LEGACY, "--format", "json")
    assert audit.exit_code == 0 and json.loads(audit.stdout)["protected"] == int((values > 0).sum())


# --- hostile variants: PackNet's keys around a network of the test's own --------------------


class Net(torch.nn.Module):
    """``shared.modules()``: 0 the Sequential, 1 a Conv2d, 2 a ReLU, 3 a Linear."""

    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Linear(4, 2)
        )


class Planted:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _payload():
    conv = torch.tensor([0, 1, 2], dtype=torch.uint8).repeat(36)[:108].reshape(4, 3, 3, 3)
    return {
        "args": argparse.Namespace(dataset="b", mode="finetune", prune_perc_per_layer=0.5),
        "dataset2idx": {"a": 1, "b": 2},
        "previous_masks": {1: conv, 3: torch.full((2, 4), 2, dtype=torch.uint8)},
        "model": Net(),
    }


def _planted(payload):
    payload["model"].planted = Planted()


def _mask(index, value):
    return lambda p: p["previous_masks"].__setitem__(index, value)


def _move(old, new):
    return lambda p: p["previous_masks"].__setitem__(new, p["previous_masks"].pop(old))


SHAPE = "not a uint8 tensor of its weight's shape"
HOSTILE = {
    "planted os.system": (_planted, "posix.system"),
    "mask shape": (_mask(3, torch.ones(2, 3, dtype=torch.uint8)), SHAPE),
    "mask dtype": (_mask(3, torch.ones(2, 4)), SHAPE),
    "index out of range": (_move(3, 9), "not the index of one of the 4 modules"),
    "index of a module without weight": (_move(3, 2), "no weight"),
    "mask past the tasks": (_mask(3, torch.full((2, 4), 7, dtype=torch.uint8)),
                            "names task 7, beyond the 2"),
    "huge task": (lambda p: p["dataset2idx"].__setitem__("b", 2**62), "not a task in 1..255"),
    "repeated task": (lambda p: p["dataset2idx"].__setitem__("b", 1), "of its own"),
    "no shared": (lambda p: delattr(p["model"], "shared"), "no shared module"),
}  # fmt: skip


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_packnet_file_is_one_line_of_error(tmp_path, monkeypatch, case, legacy):
    monkeypatch.chdir(tmp_path)  # where the planted call would write
    change, message = HOSTILE[case]
    payload = _payload()
    change(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(hatinspect.CheckpointError, match=message) as error:
        hatinspect.open_checkpoint(path)
    assert "\n" not in str(error.value) and not (tmp_path / "pwned").exists()
    one_error_line(run("info", path), message.split(",")[0])


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_the_test_network_itself_opens(tmp_path, legacy):
    path = tmp_path / "net.pt"
    torch.save(_payload(), path, _use_new_zipfile_serialization=not legacy)
    checkpoint = hatinspect.open_checkpoint(path)
    assert checkpoint.layer_names == ["shared/0", "shared/2"]
    assert int(checkpoint.masks[1]["shared/0"].sum()) == 36  # the 1s of 0, 1, 2 repeated
    assert int(checkpoint.masks[2]["shared/2"].sum()) == 8


def test_a_file_as_torch_0_2_wrote_it_reads_alike(tmp_path):
    """The authors' own files come from torch 0.2 (old tensor pickles, GPU storages)."""
    payload = _payload()
    new, old = tmp_path / "new.pt", save_as_torch_0_2(payload, tmp_path / "old.pt")
    torch.save(payload, new)
    a, b = hatinspect.open_checkpoint(new), hatinspect.open_checkpoint(old)
    assert a.layers == b.layers and a.task_ids == b.task_ids
    assert all((a.masks[t][n] == b.masks[t][n]).all() for t in a.task_ids for n in a.layer_names)
    report = hatinspect.audit(new, old)  # every weight read bit for bit alike
    owned = sum(int((mask > 0).sum()) for mask in payload["previous_masks"].values())
    assert report.ok and report.protected == owned and report.changed == 0


def _slashed_net(twin: bool):
    """``shared`` holding a Linear named "x/y" (``add_module`` allows a slash), and with
    ``twin`` a Sequential "x" whose "y" is another Linear: both read as layer shared/x/y."""
    net = Net()
    net.shared.add_module("x/y", torch.nn.Linear(2, 3))
    if twin:
        net.shared.add_module("x", torch.nn.Sequential())
        net.shared.x.add_module("y", torch.nn.Linear(2, 3))
    return net


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_module_name_with_a_slash_reads_its_own_weight(tmp_path, legacy):
    """A fuzz finding: the layer name was turned back into the module's by swapping the
    slashes for dots, which named no weight."""
    payload = _payload()
    payload["model"] = _slashed_net(twin=False)
    payload["previous_masks"][4] = torch.tensor([[1, 2], [0, 1], [2, 2]], dtype=torch.uint8)
    path = tmp_path / "slashed.pt"
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    checkpoint = hatinspect.open_checkpoint(path)
    layer = checkpoint.layer("shared/x/y")
    assert layer.weight_key == "shared.x/y.weight" and layer.weight_shape == (3, 2)
    assert checkpoint.masks[1]["shared/x/y"].tolist() == [[1, 0], [0, 1], [0, 0]]
    assert int(checkpoint.masks[2]["shared/x/y"].sum()) == 5


def test_two_modules_of_one_layer_name_are_one_line_of_error(tmp_path):
    payload = _payload()
    payload["model"] = _slashed_net(twin=True)
    mask = torch.ones(3, 2, dtype=torch.uint8)
    payload["previous_masks"].update({4: mask, 6: mask})  # "x/y", then "x.y"
    path = tmp_path / "twins.pt"
    torch.save(payload, path)
    message = "modules 'x/y' and 'x.y' of model.shared have one layer name"
    with pytest.raises(hatinspect.CheckpointError, match=message):
        hatinspect.open_checkpoint(path)
    one_error_line(run("info", path), message)
