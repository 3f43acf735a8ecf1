"""Piggyback (arunmallya/piggyback): training checkpoints written by its own classes and
``Manager.save_model``, and ``pack.py``'s files written by its own ``main()``
(tests/fixtures/peers/piggyback), counted against the producer's ``mask_real`` and
``dataset2masks`` weight by weight; the frozen backbone audited; hostile variants refused."""

from __future__ import annotations

import argparse
import json
import os
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support.cli_runs import one_error_line, run  # noqa: E402
from support.old_torch import OldVariable, save_as_torch_0_2  # noqa: E402
from support.paths import PEERS  # noqa: E402
from support.tensor_bytes import with_tensor_bytes  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.model.checkpoint import Covers  # noqa: E402
from hatinspect.model.names import HPARAMS_KEY  # noqa: E402

HERE = PEERS / "piggyback"
TRUTH = json.loads((HERE / "truth.json").read_text())
TRAINED = sorted(name for name in TRUTH if "layers" in TRUTH[name])
PACKED = sorted(name for name in TRUTH if "layers" not in TRUTH[name])
LEGACY = "cubs_cropped_ternarizer.pt"


def _layers(name):
    """module index -> its truth record, in module order."""
    return dict(sorted(((int(i), v) for i, v in TRUTH[name]["layers"].items())))


def _used(layer):
    """The weights the layer's thresholder keeps, by the rule of modnets/layers.py."""
    threshold, real = layer["threshold"], layer["mask_real"]
    if layer["threshold_fn"] == "Ternarizer":
        return [int(v < 0 or v > threshold) for v in real]
    return [int(v > threshold) for v in real]


def _packed(name):
    """dataset -> module index -> the stored values (flat)."""
    truth = TRUTH[name]
    return {d: dict(sorted((int(i), m) for i, m in truth["masks"][d].items()))
            for d in truth["datasets"]}  # fmt: skip


def test_the_legacy_fixture_is_legacy_and_the_others_zip():
    for name in TRUTH:
        assert zipfile.is_zipfile(HERE / name) == (name != LEGACY)


@pytest.mark.parametrize("name", TRAINED)
def test_a_training_checkpoint_is_its_datasets_task_thresholded(name):
    truth = TRUTH[name]
    checkpoint = hatinspect.open_checkpoint(HERE / name)
    task = truth["datasets"].index(truth["dataset"])
    assert checkpoint.covers == Covers.PARAMETERS and checkpoint.task_ids == (task,)
    layers = _layers(name)
    assert checkpoint.layer_names == [
        "shared/" + layer["name"].replace(".", "/") for layer in layers.values()
    ]
    for layer in layers.values():
        mask = checkpoint.masks[task]["shared/" + layer["name"].replace(".", "/")]
        assert mask.flatten().tolist() == _used(layer)
    assert json.loads(checkpoint.metadata["piggyback.datasets"]) == {str(task): truth["dataset"]}


@pytest.mark.parametrize("name", PACKED)
def test_a_packed_file_is_every_datasets_nonzero_entries(name):
    checkpoint = hatinspect.open_checkpoint(HERE / name)
    packed = _packed(name)
    assert checkpoint.task_ids == tuple(range(1, len(packed) + 1))
    for task, masks in enumerate(packed.values(), start=1):
        assert checkpoint.layer_names == [f"module/{i}" for i in masks]
        for index, values in masks.items():
            expected = [int(v != 0) for v in values]
            assert checkpoint.masks[task][f"module/{index}"].flatten().tolist() == expected


def test_pack_py_keeps_the_masks_the_rule_reads_from_mask_real():
    """Their own thresholders (pack.py:96) against the rule read from mask_real."""
    for packed, trained in [("packed_binary.pt", "cubs_cropped_binarizer.pt"),
                            ("packed_binary.pt", "flowers_binarizer.pt"),
                            ("packed_ternary.pt", LEGACY)]:  # fmt: skip
        stored = _packed(packed)[TRUTH[trained]["dataset"]]
        for index, layer in _layers(trained).items():
            assert [int(v != 0) for v in stored[index]] == _used(layer)
            if layer["threshold_fn"] == "Ternarizer":  # -1, cast to uint8 by pack.py:110
                assert [v == 255 for v in stored[index]] == [x < 0 for x in layer["mask_real"]]


def test_capacity_and_overlap_of_a_packed_file_count_its_masks():
    stored = list(_packed("packed_binary.pt").values())
    first = np.concatenate([np.array(m) != 0 for m in stored[0].values()])
    second = np.concatenate([np.array(m) != 0 for m in stored[1].values()])
    report = hatinspect.capacity(HERE / "packed_binary.pt")
    assert [s.new_params for s in report.by_task] == [
        int(first.sum()),
        int((second & ~first).sum()),
    ]
    assert report.total.params_protected == int((first | second).sum())
    overlap = hatinspect.overlap(HERE / "packed_binary.pt")
    assert int(overlap.network.shared[0, 1]) == int((first & second).sum())


@pytest.mark.parametrize("after", ["flowers_binarizer.pt", LEGACY])
def test_the_audit_finds_the_whole_backbone_frozen(after):
    before = "cubs_cropped_binarizer.pt"
    report = hatinspect.audit(HERE / before, HERE / after)
    weights = sum(len(layer["weight"]) for layer in _layers(before).values())
    moved = sum(
        a != b
        for old, new in zip(_layers(before).values(), _layers(after).values(), strict=True)
        for a, b in zip(old["weight"], new["weight"], strict=True)
    )
    assert moved == 0  # their training never touches the backbone
    assert report.ok and report.protected == weights and report.changed == 0


def _changed_copy(tmp_path, name, index, position):
    """The file with one backbone weight of module ``index`` moved by 1, found by value."""
    layer = _layers(name)[index]
    weights = np.array(layer["weight"], np.float32)
    old = weights.tobytes()
    weights[position] += 1
    return with_tensor_bytes(HERE / name, old, weights.tobytes(), tmp_path / name)


@pytest.mark.parametrize("after", ["flowers_binarizer.pt", LEGACY])
def test_a_moved_backbone_weight_fails_the_audit_even_where_no_mask_keeps_it(tmp_path, after):
    index, layer = next(iter(_layers(after).items()))
    position = _used(layer).index(0)  # a weight the task does not use: frozen all the same
    moved = _changed_copy(tmp_path, after, index, position)
    report = hatinspect.audit(HERE / "cubs_cropped_binarizer.pt", moved)
    assert not report.ok and report.changed == 1


def test_the_commands_give_the_producers_numbers():
    name = "packed_binary.pt"
    stored = list(_packed(name).values())
    first = [int(v != 0) for v in next(iter(stored[0].values()))]
    info = run("info", HERE / name, "--format", "json")
    assert info.exit_code == 0 and json.loads(info.stdout)["tasks"] == [1, 2]
    masks = json.loads(run("masks", HERE / name, "--format", "json").stdout)
    assert masks["layers"][0]["tasks"]["1"]["active"] == sum(first)
    capacity = run("capacity", HERE / name, "--by-task", "--format", "json")
    assert capacity.exit_code == 0 and json.loads(capacity.stdout)["by_task_params"][0][
        "new_params"
    ] == sum(sum(int(v != 0) for v in m) for m in stored[0].values())
    overlap = run("overlap", HERE / name, "--format", "json")
    assert overlap.exit_code == 0
    trained = [HERE / "cubs_cropped_binarizer.pt", HERE / "flowers_binarizer.pt"]
    audit = run("audit", *trained, "--format", "json")
    assert audit.exit_code == 0 and json.loads(audit.stdout)["protected"] == 200
    refused = run("audit", HERE / name, HERE / name)  # the files' notes, then one error
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.exit_code == 1 and "Traceback" not in refused.stderr
    assert last.startswith("error: ") and "holds masks only, no weights" in last


# --- hostile variants: Piggyback's layout on classes of the test's own -----------------------


class Binarizer:
    def __init__(self, threshold=5e-3):
        self.threshold = threshold


class ElementWiseConv2d(torch.nn.Module):
    """modnets.layers.ElementWiseConv2d's attributes: a plain weight, a mask_real parameter."""

    def __init__(self):
        super().__init__()
        self.weight = torch.randn(2, 3, 1, 1)
        self.register_parameter("bias", None)
        self.mask_real = torch.nn.Parameter(torch.linspace(-0.01, 0.01, 6).reshape(2, 3, 1, 1))
        self.threshold_fn = Binarizer()


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.datasets = ["imagenet", "b"]
        self.shared = torch.nn.Sequential(ElementWiseConv2d(), torch.nn.ReLU())


class Planted:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _trained():
    return {"args": argparse.Namespace(dataset="b", threshold_fn="binarizer"), "model": Net()}


def _conv(payload):
    return payload["model"].shared[0]


def _packed_payload():
    masks = {1: torch.ones(2, 3, 1, 1, dtype=torch.uint8), 3: torch.zeros(4, 2, dtype=torch.uint8)}
    return {"dataset2masks": {"a": masks, "b": {k: v.clone() for k, v in masks.items()}},
            "dataset2classifiers": {}}  # fmt: skip


def _set(attribute, value):
    return lambda p: setattr(_conv(p), attribute, value)


def _pack(dataset, key, value):
    return lambda p: p["dataset2masks"][dataset].__setitem__(key, value)


REAL = "not a floating-point tensor of its weight's shape"
THRESHOLDER = "not a Binarizer or Ternarizer with a finite threshold"
HOSTILE = {
    "planted os.system": (_trained, lambda p: setattr(_conv(p).threshold_fn, "x", Planted()),
                          "posix.system"),
    "mask_real shape": (_trained, _set("mask_real", torch.nn.Parameter(torch.ones(2, 3))), REAL),
    "mask_real dtype": (_trained, lambda p: _conv(p)._parameters.__setitem__(
        "mask_real", torch.ones(2, 3, 1, 1, dtype=torch.int64)), REAL),
    "mask_real NaN": (_trained, lambda p: _conv(p).mask_real.data.fill_(float("nan")),
                      "contains NaN"),
    "thresholder": (_trained, _set("threshold_fn", "binarizer"), THRESHOLDER),
    "threshold inf": (_trained, _set("threshold_fn", Binarizer(float("inf"))), THRESHOLDER),
    "no weight": (_trained, _set("weight", None), "weight is None, not a tensor"),
    "packed value": (_packed_payload, _pack("b", 1, torch.full((2, 3, 1, 1), 7, dtype=torch.uint8)),
                     "values other than 0, 1 and 255"),
    "packed dtype": (_packed_payload, _pack("b", 1, torch.ones(2, 3, 1, 1)), "not a uint8 tensor"),
    "packed shape": (_packed_payload, _pack("b", 1, torch.ones(2, 3, dtype=torch.uint8)),
                     "not a uint8 tensor of shape (2, 3, 1, 1)"),
    "packed index": (_packed_payload, lambda p: p["dataset2masks"]["a"].__setitem__(
        "conv", torch.ones(2, 2, dtype=torch.uint8)), "not a module index"),
    "packed modules differ": (_packed_payload, lambda p: p["dataset2masks"]["b"].pop(3),
                              "does not mask the modules"),
}  # fmt: skip


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_piggyback_file_is_one_line_of_error(tmp_path, monkeypatch, case, legacy):
    monkeypatch.chdir(tmp_path)  # where the planted call would write
    make, change, message = HOSTILE[case]
    payload = make()
    change(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(hatinspect.CheckpointError, match=message.replace("(", r"\(").replace(
        ")", r"\)")) as error:  # fmt: skip
        hatinspect.open_checkpoint(path)
    assert "\n" not in str(error.value) and not (tmp_path / "pwned").exists()
    one_error_line(run("info", path), message.split(" (")[0])


def test_a_packed_file_claiming_huge_numbers_of_masks_is_refused(tmp_path):
    mask = torch.ones(2, 3, dtype=torch.uint8)  # one tensor, named 280,000 times
    layers = {i: mask for i in range(1, 5)}
    path = tmp_path / "huge.pt"
    torch.save({"dataset2masks": {f"d{i}": layers for i in range(70_000)}}, path)
    with pytest.raises(hatinspect.CheckpointError, match="more masks than hatinspect reads"):
        hatinspect.open_checkpoint(path)


@pytest.mark.parametrize("make", [_trained, _packed_payload], ids=["trained", "packed"])
def test_the_test_layouts_themselves_open(tmp_path, make):
    path = tmp_path / "ok.pt"
    torch.save(make(), path)
    checkpoint = hatinspect.open_checkpoint(path)
    if make is _trained:  # linspace(-0.01, 0.01, 6): 0.006 and 0.01 are above 5e-3
        assert checkpoint.task_ids == (1,) and int(checkpoint.masks[1]["shared/0"].sum()) == 2
    else:
        assert checkpoint.layer_names == ["module/1", "module/3"]
        assert int(checkpoint.masks[2]["module/1"].sum()) == 6


def test_a_file_as_torch_0_2_wrote_it_reads_alike(tmp_path):
    """Piggyback's own files come from torch 0.2: its backbone weights are Variables."""
    payload = _trained()
    _conv(payload).weight = OldVariable(_conv(payload).weight)  # modnets/layers.py:84
    new, old = tmp_path / "new.pt", save_as_torch_0_2(payload, tmp_path / "old.pt")
    torch.save(payload, new)
    a, b = hatinspect.open_checkpoint(new), hatinspect.open_checkpoint(old)
    assert a.layers == b.layers and (a.masks[1]["shared/0"] == b.masks[1]["shared/0"]).all()
    report = hatinspect.audit(new, old)  # every backbone weight read bit for bit alike
    assert report.ok and report.protected == 6 and report.changed == 0


# --- a chosen threshold ------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.008, 0.012])
@pytest.mark.parametrize("name", TRAINED)
def test_a_chosen_threshold_replaces_every_modules_own(name, threshold):
    truth = TRUTH[name]
    task = truth["datasets"].index(truth["dataset"])
    checkpoint = hatinspect.open_checkpoint(HERE / name, mask_threshold=threshold)
    for layer in _layers(name).values():
        chosen = {**layer, "threshold": threshold}  # their rule, at the threshold chosen
        mask = checkpoint.masks[task]["shared/" + layer["name"].replace(".", "/")]
        assert mask.flatten().tolist() == _used(chosen)
    assert json.loads(checkpoint.metadata[HPARAMS_KEY])["threshold"] == threshold
    assert any("the threshold chosen, not the file's" in note for note in checkpoint.notes)


def test_the_ternarizer_keeps_its_negative_entries_at_any_threshold():
    layer = _layers(LEGACY)[1]
    checkpoint = hatinspect.open_checkpoint(HERE / LEGACY, mask_threshold=1.0)  # above all
    mask = checkpoint.masks[1]["shared/conv1"].flatten()
    assert mask.tolist() == [int(v < 0) for v in layer["mask_real"]]
    assert 0 < mask.sum() < mask.size


def test_the_command_line_takes_a_threshold_and_refuses_where_none_applies():
    name = "flowers_binarizer.pt"
    layers = _layers(name)
    result = run("masks", HERE / name, "--mask-threshold", "0.01", "--format", "json")
    counts = [layer["tasks"]["1"]["active"] for layer in json.loads(result.stdout)["layers"]]
    assert counts == [sum(_used({**layer, "threshold": 0.01})) for layer in layers.values()]
    one_error_line(run("info", HERE / "packed_binary.pt", "--mask-threshold", "0.01"),
                   "binary already; no mask threshold applies")  # fmt: skip
    assert run("info", HERE / name, "--mask-threshold", "inf").exit_code == 2
    assert run("info", HERE / name, "--mask-threshold", "nan").exit_code == 2


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), True, "0.01"])
def test_a_threshold_that_is_no_finite_number_is_refused(threshold):
    with pytest.raises(hatinspect.CheckpointError, match="is not a finite number"):
        hatinspect.open_checkpoint(HERE / "flowers_binarizer.pt", mask_threshold=threshold)
    chosen = hatinspect.open_checkpoint(HERE / "flowers_binarizer.pt", mask_threshold=np.float32(1))
    assert not any(mask.any() for mask in chosen.masks[1].values())  # no mask_real above 1
