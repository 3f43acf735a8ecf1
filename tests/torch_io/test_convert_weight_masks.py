"""convert of files whose masks cover weights (Avalanche's PackNet, CLArena's WSN): the
native file holds them packed, gives them back bit for bit, and every analysis reads it as
it read the original."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from support.cli_runs import run as run_cli  # noqa: E402
from support.paths import PEERS  # noqa: E402
from support.weight_masks import loop_packed  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.model.bits import PackedMasks  # noqa: E402
from hatinspect.model.records import record  # noqa: E402
from hatinspect.native import format as fmt  # noqa: E402

FIXTURES = {
    "packnet": PEERS / "avalanche" / "packnet_after_exp_2.pt",
    "packnet-pruned": PEERS / "avalanche" / "packnet_pruned_exp_2.pt",
    "wsn": PEERS / "clarena-main" / "wsn_mlp" / "cl_model.pth",
}


@pytest.fixture(params=sorted(FIXTURES))
def pair(request, tmp_path):
    source = FIXTURES[request.param]
    target = hatinspect.convert(source, tmp_path / "w.safetensors")
    return hatinspect.open_checkpoint(source), hatinspect.open_checkpoint(target), target


def test_the_masks_come_back_bit_for_bit(pair):
    original, converted, path = pair
    assert isinstance(converted.masks, PackedMasks) and converted.covers == "parameters"
    assert converted.task_ids == original.task_ids

    def shapes(checkpoint):
        return [(layer.name, layer.weight_shape, layer.preceding, layer.bias_masked)
                for layer in checkpoint.layers]  # fmt: skip

    assert shapes(converted) == shapes(original)
    assert converted.source == original.source and converted.notes == original.notes
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        assert f.metadata()[fmt.VERSION_KEY] == "2"
        for task in original.task_ids:
            for layer in original.layers:
                dense = original.masks[task][layer.name]
                stored = f.get_tensor(fmt.packed_key(task, layer.name))
                assert stored.tobytes() == loop_packed(dense).tobytes()  # as documented
                assert converted.masks[task][layer.name].tobytes() == dense.tobytes()
        assert not [key for key in f.keys() if key.startswith(fmt.MASK_PREFIX)]


def _without_path(result) -> dict:
    document = record(result)
    document.pop("checkpoint")
    return document


def test_every_count_reads_the_converted_file_as_the_original(pair):
    original, converted, _ = pair
    for analysis in (hatinspect.capacity, hatinspect.overlap):
        assert _without_path(analysis(converted)) == _without_path(analysis(original))
    from hatinspect.analysis.masks import summarise_masks

    assert _without_path(summarise_masks(converted)) == _without_path(summarise_masks(original))


def test_the_audit_of_converted_packnet_files_matches_the_originals(tmp_path):
    before, after = (PEERS / "avalanche" / f"packnet_after_exp_{k}.pt" for k in (0, 1))
    native = [hatinspect.convert(p, tmp_path / f"{p.stem}.safetensors") for p in (before, after)]
    expected, report = hatinspect.audit(before, after), hatinspect.audit(*native)
    assert report.ok and (report.protected, report.changed) == (expected.protected, 0)
    assert report.protected > 0


def test_the_audit_of_converted_wsn_files_protects_the_masked_biases_too(tmp_path):
    folder = PEERS / "clarena-main" / "wsn_mlp"
    before, after = (folder / f"model_after_task_{k}.pth" for k in (1, 2))
    native = [hatinspect.convert(p, tmp_path / f"{p.stem}.safetensors") for p in (before, after)]
    converted = hatinspect.open_checkpoint(native[0])
    assert all(layer.bias_masked for layer in converted.layers)
    expected, report = hatinspect.audit(before, after), hatinspect.audit(*native)
    weights = sum(int(converted.masks[1][layer.name][:, :-1].sum()) for layer in converted.layers)
    assert report.ok and (report.protected, report.changed) == (expected.protected, 0)
    assert report.protected > weights  # the biases task 1 keeps count too


def test_the_commands_open_a_converted_file(tmp_path):
    path = hatinspect.convert(FIXTURES["wsn"], tmp_path / "w.safetensors")
    for command in (["info"], ["masks"], ["capacity"], ["overlap"], ["audit", str(path)]):
        result = run_cli(command[0], str(path), *command[1:], "--format", "json")
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)


def test_packed_masks_take_an_eighth_of_the_bytes(tmp_path):
    original = hatinspect.open_checkpoint(FIXTURES["wsn"])
    path = hatinspect.convert(FIXTURES["wsn"], tmp_path / "w.safetensors")
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        stored = [f.get_tensor(k).nbytes for k in f.keys() if k.startswith("pmask.")]
    dense = [m.size for masks in original.masks.values() for m in masks.values()]
    assert sorted(stored) == sorted(-(-size // 8) for size in dense)  # a byte for 8 weights
