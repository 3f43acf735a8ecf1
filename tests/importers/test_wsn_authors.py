"""The WSN authors' runs: files written by ``main_wsn_pmnist.py``'s own ``main`` and saving
lines (tests/fixtures/peers/wsn-authors), counted against what the producer handed them."""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import shutil
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support.cli_runs import one_error_line  # noqa: E402
from support.cli_runs import run as run_cli  # noqa: E402
from support.paths import PEERS  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.analysis.accuracy import accuracy_matrix  # noqa: E402
from hatinspect.model.checkpoint import Covers  # noqa: E402

HERE = PEERS / "wsn-authors"
TRUTH = json.loads((HERE / "truth.json").read_text())
RUNS = sorted(TRUTH)
TWO, THREE = (next(r for r in RUNS if TRUTH[r]["seed"] == 1 and TRUTH[r]["tasks"] == n)
              for n in (2, 3))  # fmt: skip
PARTS = (".pertask.npy", ".fullmask.npy", ".acc.npy", ".cap.npy", ".spar.npy", ".ptmodel")
LAYERS = ("fc1", "fc2")


def _bits(run: str, task: int | None, layer: str) -> np.ndarray:
    """A producer's mask, from truth.json's hex digits, in the weight's shape."""
    truth = TRUTH[run]
    digits = (truth["fullmask"] if task is None else truth["pertask"][str(task)])[layer + ".weight"]
    shape = truth["shapes"][layer + ".weight"]
    bits = [int(b) for d in digits for b in f"{int(d, 16):04b}"][: int(np.prod(shape))]
    return np.array(bits).reshape(shape)


def _file(run: str, part: str):
    return HERE / (run + part)


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("run", RUNS)
def test_each_file_of_a_run_finds_the_run_and_its_masks_are_the_producers(run, part):
    checkpoint = hatinspect.open_checkpoint(_file(run, part))
    tasks = TRUTH[run]["tasks"]
    assert checkpoint.covers == Covers.PARAMETERS and checkpoint.source == "wsn"
    assert checkpoint.task_ids == tuple(range(tasks)) and checkpoint.layer_names == list(LAYERS)
    assert checkpoint.metadata["wsn.run"] == run.rpartition("/")[2]
    for task in range(tasks):
        for layer in LAYERS:
            assert checkpoint.masks[task][layer].tolist() == _bits(run, task, layer).tolist()


@pytest.mark.parametrize("run", RUNS)
def test_capacity_counts_each_tasks_new_weights_as_a_brute_force_count(run):
    report = hatinspect.capacity(_file(run, ".pertask.npy"))
    seen = {layer: np.zeros_like(_bits(run, 0, layer)) for layer in LAYERS}
    total = sum(_bits(run, 0, layer).size for layer in LAYERS)
    for step in report.by_task:
        new = 0
        for layer in LAYERS:  # weight by weight: kept by this task, by no earlier one
            mask = _bits(run, step.task, layer)
            new += sum(1 for m, s in zip(mask.flat, seen[layer].flat, strict=True) if m and not s)
            seen[layer] |= mask
        assert step.new_params == new
        # the producer's own capacity (global_sparsity of consolidated_masks) after the task
        used = sum(int(seen[layer].sum()) for layer in LAYERS)
        assert used / total == pytest.approx(TRUTH[run]["cap"][step.task], abs=1e-12)
    assert report.total.params_protected == sum(int(_bits(run, None, la).sum()) for la in LAYERS)


@pytest.mark.parametrize("run", RUNS)
def test_overlap_is_the_weights_both_tasks_keep(run):
    report = hatinspect.overlap(_file(run, ".ptmodel"))
    for a in range(TRUTH[run]["tasks"]):
        for b in range(TRUTH[run]["tasks"]):
            both = sum(int((_bits(run, a, la) & _bits(run, b, la)).sum()) for la in LAYERS)
            assert report.network.shared[a, b] == both


def test_info_shows_the_rule_the_accuracy_capacity_and_sparsity():
    checkpoint = hatinspect.open_checkpoint(_file(THREE, ".acc.npy"))
    assert any("|w_m| at or above their 0.5 quantile (SPARSITY 0.5" in n for n in checkpoint.notes)
    assert json.loads(checkpoint.metadata["hparams"]) == {"sparsity": 0.5}
    assert set(TRUTH[THREE]["module_sparsity"].values()) == {0.5}  # 1 - c, as the note says
    acc = TRUTH[THREE]["acc"]
    expected = [[acc[t][j] / 100 for j in range(t + 1)] for t in range(len(acc))]
    assert accuracy_matrix(checkpoint) == expected
    caps = json.loads(checkpoint.metadata["wsn.capacity"])
    assert caps == pytest.approx(TRUTH[THREE]["cap"], abs=1e-6)
    spar = json.loads(checkpoint.metadata["wsn.sparsity"])
    for task, shares in TRUTH[THREE]["spar"].items():
        assert spar[task] == pytest.approx(shares, abs=1e-6)
        for layer in LAYERS:  # the share the union of tasks 0..task keeps, counted here
            union = np.any([_bits(THREE, t, layer) for t in range(int(task) + 1)], axis=0)
            assert shares[layer + ".weight"] == pytest.approx(union.mean(), abs=1e-6)


def test_two_runs_in_one_folder_do_not_mix():
    one, two = (r for r in RUNS if r.startswith("results2/"))
    assert _file(one, "").parent == _file(two, "").parent
    first, second = (hatinspect.open_checkpoint(_file(r, ".ptmodel")) for r in (one, two))
    assert first.metadata["wsn.run"] != second.metadata["wsn.run"]
    assert first.masks[1]["fc1"].tolist() == _bits(one, 1, "fc1").tolist()
    assert second.masks[1]["fc1"].tolist() == _bits(two, 1, "fc1").tolist()
    assert _bits(one, 1, "fc1").tolist() != _bits(two, 1, "fc1").tolist()


def test_the_model_is_found_in_the_folder_main_wsn_cifar100_100_puts_it(tmp_path):
    # main_wsn_cifar100_100.py: the .npy files under results_reinit/<dir>, the model under
    # results2/<dir>
    npy, models = tmp_path / "results_reinit" / "wsn_pmnist", tmp_path / "results2" / "wsn_pmnist"
    npy.mkdir(parents=True)
    models.mkdir(parents=True)
    for part in PARTS:
        shutil.copy(_file(TWO, part), (models if part == ".ptmodel" else npy))
    name = TWO.rpartition("/")[2]
    for given in (npy / (name + ".pertask.npy"), models / (name + ".ptmodel")):
        checkpoint = hatinspect.open_checkpoint(given)
        assert checkpoint.masks[0]["fc1"].tolist() == _bits(TWO, 0, "fc1").tolist()


@pytest.mark.parametrize(("kept", "missing"), [(".pertask.npy", ".ptmodel"),
                                               (".ptmodel", ".pertask.npy")])  # fmt: skip
def test_a_missing_part_is_named_in_one_line(tmp_path, kept, missing):
    shutil.copy(_file(TWO, kept), tmp_path)
    name = TWO.rpartition("/")[2]
    result = run_cli("info", tmp_path / (name + kept))
    assert result.exit_code == 1
    one_error_line(result, f"has no {name}{missing}", f"looked in {tmp_path}")


def test_the_saver_dict_every_run_overwrites_is_refused_with_where_to_look(tmp_path):
    saver = tmp_path / "pmnist.pickle"  # main_wsn_pmnist.py: save_pickle of saver_dict
    saver.write_bytes(pickle.dumps({0: {"per_task_masks": {}, "model": {}}}))
    for command in ("info", "capacity"):
        result = run_cli(command, saver)
        assert result.exit_code == 1
        one_error_line(result, "overwritten by every run", "<prefix>.pertask.npy")


def test_a_missing_optional_part_is_named_in_a_note(tmp_path):
    for part in (".pertask.npy", ".ptmodel"):
        shutil.copy(_file(TWO, part), tmp_path)
    name = TWO.rpartition("/")[2]
    checkpoint = hatinspect.open_checkpoint(tmp_path / (name + ".ptmodel"))
    note = next(n for n in checkpoint.notes if n.startswith("not beside it"))
    assert f"{name}.fullmask.npy" in note and f"{name}.acc.npy" in note
    assert "accuracy" not in checkpoint.metadata


def test_the_audit_finds_the_weights_of_earlier_tasks_unchanged():
    expected = TRUTH[THREE]["audit_of"][TWO]
    report = hatinspect.audit(_file(TWO, ".pertask.npy"), _file(THREE, ".ptmodel"))
    assert report.ok and report.protected == expected["protected"] and report.changed == 0


def test_a_moved_owned_weight_fails_the_audit(tmp_path):
    source = _file(THREE, ".ptmodel")
    name = THREE.rpartition("/")[2]
    shutil.copy(_file(THREE, ".pertask.npy"), tmp_path)
    index = int(np.flatnonzero(_bits(TWO, None, "fc1"))[0])
    with zipfile.ZipFile(source) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    for record, data in entries.items():  # every (2, 784) float32 record: fc1.weight among them
        if "/data/" in record and len(data) == 2 * 784 * 4:
            values = np.frombuffer(data, np.float32).copy()
            values[index] += 1
            entries[record] = values.tobytes()
    with zipfile.ZipFile(tmp_path / (name + ".ptmodel"), "w", zipfile.ZIP_STORED) as archive:
        for record, data in entries.items():
            archive.writestr(record, data)
    report = hatinspect.audit(_file(TWO, ".pertask.npy"), tmp_path / (name + ".pertask.npy"))
    assert not report.ok and report.changed == 1


@pytest.mark.parametrize("command", ["info", "masks", "capacity", "overlap"])
def test_the_commands_read_a_run(command):
    result = run_cli(command, _file(TWO, ".pertask.npy"))
    assert result.exit_code == 0, result.output


def test_the_cli_audits_compares_and_reports_runs(tmp_path):
    before, after = _file(TWO, ".pertask.npy"), _file(THREE, ".ptmodel")
    assert run_cli("audit", before, after).exit_code == 0
    assert run_cli("compare", before, _file(THREE, ".acc.npy")).exit_code == 0
    result = run_cli("report", _file(THREE, ".cap.npy"), "-o", tmp_path / "r.html")
    assert result.exit_code == 0 and (tmp_path / "r.html").is_file()
    result = run_cli("measure", before, "-l", "fc1")
    assert result.exit_code == 1 and "cover parameters, not units" in result.output


# hostile variants: the authors' file layout with crafted contents, saved by np.save as
# their safe_save does (utils.py), beside the run's real model


class _Reduced:
    """An object that pickles as ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _legacy_storage(record, body: bytes, key: str = "0") -> bytes:
    """A legacy torch.save of one storage, as TypedStorage.__reduce__ nests it."""
    info = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}  # fmt: skip
    parts = [0x1950A86A20F9469CFC6C, 1001, info]
    out = b"".join(pickle.dumps(p, protocol=2) for p in parts)
    return out + record + pickle.dumps([key], protocol=2) + body


def _tensor_of(blob: bytes, shape, stride):
    storage = _Reduced(torch.storage._load_from_bytes, blob)
    return _Reduced(torch._utils._rebuild_tensor_v2, storage, 0, shape, stride, False,
                    collections.OrderedDict())  # fmt: skip


def _record(numel: int, storage_type=None) -> bytes:
    """The storage record pickle: the persistent id ``('storage', torch.LongStorage, key,
    'cpu', numel, None)``, ``storage_type`` in the place of LongStorage where given."""
    record = ("storage", storage_type or torch.LongStorage, "0", "cpu", numel, None)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return record if obj is _STORAGE else None

    out = io.BytesIO()
    Pickler(out, protocol=2).dump(_STORAGE)
    return out.getvalue()


_STORAGE = object()


def _mask(tensor):
    return {0: {"fc1.weight": tensor, "fc1.bias": None, "fc2.weight": torch.ones(2, 2).long(),
                "fc2.bias": None}}  # fmt: skip


HOSTILE = {
    "a planted global in the nested blob": (
        lambda: _mask(_tensor_of(_legacy_storage(_record(1, os.system), b""), (2, 784), (784, 1))),
        "names posix.system",
    ),
    "a nested blob that is not a torch file": (
        lambda: _mask(_tensor_of(b"not a torch file at all", (2, 784), (784, 1))),
        "nested torch file",
    ),
    "a nested storage claiming 2**40 elements": (
        lambda: _mask(_tensor_of(_legacy_storage(_record(2**40), (2**40).to_bytes(8, "little")),
                                 (2, 784), (784, 1))),
        "claims 1,099,511,627,776 elements",
    ),
    "a tensor of huge shape over a small storage": (
        lambda: _mask(_tensor_of(_legacy_storage(_record(1), (1).to_bytes(8, "little") + bytes(8)),
                                 (10**6, 10**6), (10**6, 1))),
        "reaches outside its storage",
    ),
    "a float mask": (lambda: _mask(torch.ones(2, 784)), "not a 0/1 integer mask"),
    "a mask of 2s": (lambda: _mask(torch.full((2, 784), 2)), "not a binary (0/1) mask"),
    "a mask of another shape": (lambda: _mask(torch.ones(3, 5).long()), "not a tensor of shape"),
    "a planted global in the array": (
        lambda: {0: _Reduced(os.system, "true")},
        "names posix.system",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_masks_file_is_one_line_of_error(tmp_path, case):
    build, message = HOSTILE[case]
    name = TWO.rpartition("/")[2]
    np.save(tmp_path / (name + ".pertask.npy"), np.array(build(), dtype=object), allow_pickle=True)
    shutil.copy(_file(TWO, ".ptmodel"), tmp_path)
    for given in (".pertask.npy", ".ptmodel"):
        result = run_cli("info", tmp_path / (name + given))
        assert result.exit_code == 1
        one_error_line(result, message)


@pytest.mark.parametrize("shape", [(10**12,), (1,)])
def test_a_plain_array_claiming_other_than_it_holds_is_one_line_of_error(tmp_path, shape):
    name = TWO.rpartition("/")[2]
    for part in (".pertask.npy", ".ptmodel"):
        shutil.copy(_file(TWO, part), tmp_path)
    acc = tmp_path / (name + ".acc.npy")
    with acc.open("wb") as f:  # the header np.save writes, claiming `shape`; 4 numbers
        header = {"descr": "<f8", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(np.zeros(4).tobytes())
    result = run_cli("info", acc)
    assert result.exit_code == 1
    one_error_line(result, f"claims {8 * shape[0]:,} bytes of float64 {shape}; it holds 32")


@pytest.mark.parametrize("header", [b"{'descr': '<f8', 'fortran_order': False, 'shape': (4,",
                                    b"{'descr': '<f8', " + b"(" * 300])  # fmt: skip
def test_a_header_cut_short_or_nested_deep_is_one_line_of_error(tmp_path, header):
    """A header numpy's literal_eval refuses and then tokenizes (TokenError), or nests past
    the parser's limit: a found fuzz case, one line naming the file."""
    name = TWO.rpartition("/")[2]
    for part in (".pertask.npy", ".ptmodel"):
        shutil.copy(_file(TWO, part), tmp_path)
    acc = tmp_path / (name + ".acc.npy")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    acc.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    result = run_cli("info", acc)
    assert result.exit_code == 1
    one_error_line(result, "not a readable .npy file")


# main_wsn_five_dataset_resnet18.py's SubnetResNet18 (networks/resnet18.py): too large to
# commit, so a run of its module layout, saved by its lines (safe_save of .pertask, torch.save
# of the model), with stand-in classes of its names: a SubnetBasicBlock's conv3 is its
# projection shortcut, reading the block input


def _resnet_run(folder, monkeypatch):
    import types

    nn = torch.nn
    module = types.ModuleType("networks.resnet18")

    class SubnetBasicBlock(nn.Module):
        def __init__(self, inputs, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, planes, 3, stride, 1, bias=False)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.shortcut = None
            if stride != 1 or inputs != planes:
                self.shortcut = 1
                self.conv3 = nn.Conv2d(inputs, planes, 1, stride, bias=False)

    class SubnetResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 2, 3, 1, 1, bias=False)
            self.layer1 = nn.Sequential(SubnetBasicBlock(2, 2, 1))
            self.layer2 = nn.Sequential(SubnetBasicBlock(2, 4, 2))

    for cls in (SubnetBasicBlock, SubnetResNet):
        cls.__module__ = module.__name__
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    package = types.ModuleType("networks")
    package.resnet18 = module
    for name, value in (("networks", package), (module.__name__, module)):
        monkeypatch.setitem(sys.modules, name, value)
    model = SubnetResNet()
    generator = torch.Generator().manual_seed(3)
    masks = {t: {} for t in range(2)}
    for name, tensor in model.state_dict().items():
        for t in range(2):
            masks[t][name] = torch.randint(0, 2, tensor.shape, generator=generator)
            masks[t][name.replace(".weight", ".bias")] = None
    np.save(folder / "five_SEED_1_SPARSITY_0.50.pertask.npy", np.array(masks, dtype=object))
    torch.save(model, folder / "five_SEED_1_SPARSITY_0.50.ptmodel")
    return {t: {k: v.numpy() for k, v in m.items() if v is not None} for t, m in masks.items()}


def test_a_resnet18_runs_projection_shortcut_reads_its_block_input(tmp_path, monkeypatch):
    saved = _resnet_run(tmp_path, monkeypatch)
    checkpoint = hatinspect.open_checkpoint(tmp_path / "five_SEED_1_SPARSITY_0.50.ptmodel")
    preceding = {layer.name: layer.preceding for layer in checkpoint.layers}
    assert preceding == {"conv1": None, "layer1/0/conv1": "conv1",
                         "layer1/0/conv2": "layer1/0/conv1", "layer2/0/conv1": "layer1/0/conv2",
                         "layer2/0/conv2": "layer2/0/conv1",
                         "layer2/0/conv3": "layer1/0/conv2"}  # fmt: skip
    for task, masks in saved.items():
        for key, mask in masks.items():
            layer = key.removesuffix(".weight").replace(".", "/")
            assert checkpoint.masks[task][layer].tolist() == mask.tolist()
    assert any("(SPARSITY 0.5 in the run's name" in n for n in checkpoint.notes)
