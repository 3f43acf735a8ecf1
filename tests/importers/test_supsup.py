"""SupSup (RAIVNLab/supsup): checkpoints written by its own ``main()`` around its own
``MultitaskMaskConv`` / ``FastMultitaskMaskConv`` (tests/fixtures/peers/supsup), counted
against the masks their ``cache_masks()`` made and, from the raw scores, against a brute
force of each rule; the frozen random backbone audited; hostile variants refused."""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support.cli_runs import one_error_line, run  # noqa: E402
from support.paths import PEERS  # noqa: E402

import hatinspect  # noqa: E402
from hatinspect.importers.supsup import top_k  # noqa: E402
from hatinspect.model.checkpoint import Covers  # noqa: E402
from hatinspect.model.names import HPARAMS_KEY  # noqa: E402

HERE = PEERS / "supsup"
TRUTH = json.loads((HERE / "truth.json").read_text())
FILES = sorted(name for name in TRUTH if name.endswith(".pt"))
LEGACY = "supsup_topk_module_legacy.pt"


def _saved(name):
    """The file as their code reads it: ``args`` a Namespace, its state_dict's tensors."""
    with torch.serialization.safe_globals([argparse.Namespace, pathlib.PosixPath, torch.device]):
        return torch.load(HERE / name, weights_only=True)


def _scores(name):
    """module -> task -> raw scores (numpy), without DataParallel's prefix."""
    out = {}
    for key, value in _saved(name)["state_dict"].items():
        if ".scores." in key:
            module, task = key.removeprefix("module.").rsplit(".scores.", 1)
            out.setdefault(module, {})[int(task)] = value.numpy()
    return out


def _brute_topk(scores, sparsity):
    """Entry i is kept where at least int((1 - k) n) entries rank below it by (|s|, index),
    the order of a stable sort: counted pair by pair."""
    flat = np.abs(scores.reshape(-1)).tolist()
    dropped = int((1 - sparsity) * len(flat))
    below = [sum((flat[j], j) < (flat[i], i) for j in range(len(flat))) for i in range(len(flat))]
    return np.array([b >= dropped for b in below]).reshape(scores.shape)


def _brute(name, rule):
    """layer -> task -> mask; top-k at each module's sparsity as their live model had it
    (``args.sparsity``, or main()'s ER budget)."""
    layers = TRUTH[name]["layers"]
    return {
        module.replace(".", "/"): {
            task: _brute_topk(s, layers[module]["sparsity"] or TRUTH[name]["sparsity"])
            if rule == "topk"
            else s >= 0
            for task, s in tasks.items()
        }
        for module, tasks in _scores(name).items()
    }


def _rule_of(name):
    return "sign" if TRUTH[name]["conv_type"].startswith("Fast") else "topk"


def test_the_fixtures_are_zip_but_the_legacy_one_and_some_prefixed():
    for name in FILES:
        assert zipfile.is_zipfile(HERE / name) == (name != LEGACY)
        prefixed = all(k.startswith("module.") for k in TRUTH[name]["state_keys"])
        assert prefixed == ("module" in name)


@pytest.mark.parametrize("name", FILES)
def test_each_task_is_the_mask_their_code_makes_and_the_brute_force_agrees(name):
    truth = TRUTH[name]
    checkpoint = hatinspect.open_checkpoint(HERE / name)
    assert checkpoint.source == "supsup" and checkpoint.covers == Covers.PARAMETERS
    assert checkpoint.task_ids == tuple(range(truth["num_tasks"]))
    assert checkpoint.layer_names == [m.replace(".", "/") for m in truth["layers"]]
    brute = _brute(name, _rule_of(name))
    for module, layer in truth["layers"].items():
        for task, theirs in enumerate(layer["masks"]):
            ours = checkpoint.masks[task][module.replace(".", "/")]
            assert ours.reshape(-1).tolist() == theirs
            assert (ours.astype(bool) == brute[module.replace(".", "/")][task]).all()
    assert json.loads(checkpoint.metadata[HPARAMS_KEY])["mask_rule"] == _rule_of(name)
    assert any(f"{_rule_of(name).replace('topk', 'top-k')} rule" in n for n in checkpoint.notes)


@pytest.mark.parametrize("name", ["supsup_sign.pt", "supsup_topk.pt"])
def test_a_chosen_rule_replaces_the_files_own(name):
    other = "topk" if _rule_of(name) == "sign" else "sign"
    checkpoint = hatinspect.open_checkpoint(HERE / name, mask_rule=other)
    brute = _brute(name, other)
    for layer, tasks in brute.items():
        for task, mask in tasks.items():
            assert (checkpoint.masks[task][layer].astype(bool) == mask).all()
    assert any(f"chosen; args.conv_type {TRUTH[name]['conv_type']}" in n for n in checkpoint.notes)


def test_ties_at_the_top_k_boundary_fall_as_their_get_subnet_breaks_them():
    for case in TRUTH["ties"].values():
        scores = np.abs(np.array(case["scores"], np.float32))
        assert top_k(scores, case["k"]).astype(int).tolist() == case["mask"]
        assert _brute_topk(scores, case["k"]).astype(int).tolist() == case["mask"]


def test_the_commands_give_the_brute_force_numbers():
    name = "supsup_topk.pt"
    brute = _brute(name, "topk")
    first = {layer: tasks[0] for layer, tasks in brute.items()}
    info = json.loads(run("info", HERE / name, "--format", "json").stdout)
    assert info["source"] == "supsup" and info["tasks"] == [0, 1, 2]
    masks = json.loads(run("masks", HERE / name, "--format", "json").stdout)
    for layer in masks["layers"]:
        assert layer["tasks"]["0"]["active"] == int(first[layer["name"]].sum())
    capacity = json.loads(run("capacity", HERE / name, "--by-task", "--format", "json").stdout)
    union = {layer: tasks[0] | tasks[1] for layer, tasks in brute.items()}
    assert [row["new_params"] for row in capacity["by_task_params"][:2]] == [
        sum(int(m.sum()) for m in first.values()),
        sum(int((union[k] & ~first[k]).sum()) for k in union),
    ]
    overlap = json.loads(run("overlap", HERE / name, "--format", "json").stdout)["network"]
    assert overlap["shared"] == [
        [sum(int((t[a] & t[b]).sum()) for t in brute.values()) for b in range(3)] for a in range(3)
    ]
    chosen = json.loads(run("masks", HERE / name, "--mask-rule", "sign", "-f", "json").stdout)
    sign = _brute(name, "sign")
    for layer in chosen["layers"]:
        assert layer["tasks"]["1"]["active"] == int(sign[layer["name"]][1].sum())


def test_the_audit_finds_the_random_backbone_bit_identical():
    report = hatinspect.audit(HERE / "supsup_topk.pt", HERE / LEGACY)
    weights = sum(math.prod(layer["shape"]) for layer in TRUTH[LEGACY]["layers"].values())
    assert report.ok and report.protected == weights and report.changed == 0
    cli = run("audit", HERE / "supsup_topk.pt", HERE / "supsup_sign.pt", "--format", "json")
    assert cli.exit_code == 0 and json.loads(cli.stdout)["protected"] == weights


def test_a_moved_weight_fails_the_audit_even_where_no_mask_keeps_it(tmp_path):
    saved = _saved("supsup_topk.pt")
    used = np.zeros(TRUTH["supsup_topk.pt"]["layers"]["linear.0"]["shape"], bool)
    for mask in TRUTH["supsup_topk.pt"]["layers"]["linear.0"]["masks"]:
        used |= np.array(mask, bool).reshape(used.shape)
    position = np.argwhere(~used)[0]  # no task uses it: frozen all the same
    saved["state_dict"]["linear.0.weight"][tuple(position)] += 1
    moved = tmp_path / "moved.pt"
    torch.save(saved, moved)
    report = hatinspect.audit(HERE / "supsup_topk.pt", moved)
    assert not report.ok and report.changed == 1


@pytest.mark.parametrize("name", ["supsup_topk.pt", "supsup_sign_module.pt"])
def test_convert_packs_the_masks_the_rule_made(tmp_path, name):
    out = tmp_path / "out.safetensors"
    result = run("convert", HERE / name, out)
    assert result.exit_code == 0, result.stderr
    native = hatinspect.open_checkpoint(out)
    assert native.source == "supsup" and native.covers == Covers.PARAMETERS
    for module, layer in TRUTH[name]["layers"].items():
        for task, theirs in enumerate(layer["masks"]):
            assert native.masks[task][module.replace(".", "/")].reshape(-1).tolist() == theirs
    assert hatinspect.audit(HERE / name, out).ok


def test_a_rule_for_another_layout_is_refused_in_one_line(tmp_path):
    piggyback = PEERS / "piggyback" / "flowers_binarizer.pt"
    one_error_line(run("info", piggyback, "--mask-rule", "sign"), "applies to SupSup files only")
    one_error_line(run("info", HERE / "supsup_sign.pt", "--mask-threshold", "0.1"), "Piggyback")
    out = tmp_path / "out.safetensors"
    assert run("convert", HERE / "supsup_sign.pt", out).exit_code == 0
    one_error_line(run("masks", out, "--mask-rule", "topk"), "--mask-rule and --mask-threshold")
    assert run("masks", HERE / "supsup_sign.pt", "--mask-rule", "median").exit_code == 2


# --- hostile variants: SupSup's layout on tensors of the test's own ------------------------


def _payload(**args):
    """A two-layer SupSup file: 2 tasks, ``args`` a Namespace as their main.py saves it."""
    generator = torch.Generator().manual_seed(3)
    state = {}
    for module, shape in (("linear.0", (4, 6, 1, 1)), ("linear.2", (3, 4, 1, 1))):
        state[f"{module}.weight"] = torch.randn(shape, generator=generator)
        for task in range(2):
            state[f"{module}.scores.{task}"] = torch.randn(shape, generator=generator)
    namespace = argparse.Namespace(conv_type="MultitaskMaskConv", sparsity=0.5, **args)
    return {"epoch": 1, "arch": "Tiny", "state_dict": state, "args": namespace}


def _state(change):
    return lambda p: change(p["state_dict"])


def _args(**values):
    return lambda p: p["args"].__dict__.update(values)


def _without(attribute):
    return lambda p: delattr(p["args"], attribute)


SHAPE = "not a floating-point tensor of its weight's shape"
SPARSITY = "needs args.sparsity, the fraction of weights kept, in (0, 1]"
HOSTILE = {
    "scores shape": (_state(lambda s: s.__setitem__("linear.0.scores.1", torch.ones(4, 6))), SHAPE),
    "scores dtype": (_state(lambda s: s.__setitem__(
        "linear.0.scores.0", torch.ones(4, 6, 1, 1, dtype=torch.int64))), SHAPE),
    "scores NaN": (_state(lambda s: s["linear.2.scores.1"].view(-1)[2].fill_(float("nan"))),
                   "linear.2.scores.1 contains NaN"),
    "sparsity above 1": (_args(sparsity=1.5), SPARSITY),
    "sparsity 0": (_args(sparsity=0.0), SPARSITY),
    "sparsity negative": (_args(sparsity=-0.2), SPARSITY),
    "sparsity NaN": (_args(sparsity=float("nan")), SPARSITY),
    "sparsity text": (_args(sparsity="0.5"), SPARSITY),
    "sparsity missing": (_without("sparsity"), SPARSITY),
    "task hole": (_state(lambda s: [s.__setitem__(f"{m}.scores.3", s.pop(f"{m}.scores.1"))
                                    for m in ("linear.0", "linear.2")]),
                  "the scores are of tasks 0, 3, not 0..1"),
    "task huge": (_state(lambda s: s.__setitem__(f"linear.0.scores.{'9' * 5000}", torch.ones(1))),
                  "names a task above 2147483647"),
    "tasks differ": (_state(lambda s: s.pop("linear.2.scores.1")),
                     "linear.2 has the scores of tasks 0"),
    "no weight": (_state(lambda s: s.pop("linear.2.weight")), "linear.2 has scores but no weight"),
    "not a mask class": (_args(conv_type="BatchEnsembles"), "not a SupSup mask module"),
    "class not text": (_args(conv_type=["MultitaskMaskConv"]), "not a SupSup mask module"),
    "entry not a tensor": (_state(lambda s: s.__setitem__("linear.0.bias", [1, 2])),
                           "is not a named tensor"),
}  # fmt: skip


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_supsup_file_is_one_line_of_error(tmp_path, case, legacy):
    change, message = HOSTILE[case]
    payload = _payload()
    change(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(hatinspect.CheckpointError) as error:
        hatinspect.open_checkpoint(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    one_error_line(run("info", path), message)


def test_the_sign_rule_needs_no_sparsity_and_a_bare_state_dict_opens(tmp_path):
    payload = _payload()
    del payload["args"].sparsity
    path = tmp_path / "sign.pt"
    torch.save(payload, path)
    checkpoint = hatinspect.open_checkpoint(path, mask_rule="sign")
    scores = payload["state_dict"]["linear.2.scores.1"].numpy()
    assert int(checkpoint.masks[1]["linear/2"].sum()) == int((scores >= 0).sum())
    bare = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in payload["state_dict"].items()}, bare)
    opened = hatinspect.open_checkpoint(bare, mask_rule="sign")
    assert opened.layer_names == ["linear/0", "linear/2"]
    assert any("chosen" in note for note in opened.notes)
    with pytest.raises(hatinspect.CheckpointError, match="needs args.sparsity"):
        hatinspect.open_checkpoint(bare)  # topk assumed, and no sparsity stored


def test_er_sparsity_keeps_mains_per_layer_budget(tmp_path):
    payload = _payload(er_sparsity=True)
    path = tmp_path / "er.pt"
    torch.save(payload, path)
    checkpoint = hatinspect.open_checkpoint(path)
    for module, (out, inp) in (("linear.0", (4, 6)), ("linear.2", (3, 4))):
        k = min(0.5, 0.5 * (out + inp) / (out * inp))  # main.py's ER budget, 1x1 kernels
        scores = payload["state_dict"][f"{module}.scores.0"].numpy()
        expected = _brute_topk(scores, k)
        assert (checkpoint.masks[0][module.replace(".", "/")].astype(bool) == expected).all()


def test_the_api_functions_take_the_rule(tmp_path):
    name = "supsup_topk.pt"
    sign = _brute(name, "sign")
    report = hatinspect.masks(HERE / name, mask_rule="sign")
    assert report.to_dict()["layers"][0]["tasks"]["2"]["active"] == int(sign["linear/0"][2].sum())
    capacity = hatinspect.capacity(HERE / name, mask_rule="sign")
    assert capacity.total.params_protected == sum(
        int((t[0] | t[1] | t[2]).sum()) for t in sign.values()
    )
    assert (
        json.loads(hatinspect.info(HERE / name, mask_rule="sign").metadata[HPARAMS_KEY])[
            "mask_rule"
        ]
        == "sign"
    )
    out = hatinspect.convert(HERE / name, tmp_path / "sign.safetensors", mask_rule="sign")
    native = hatinspect.open_checkpoint(out)
    assert (native.masks[1]["linear/2"].astype(bool) == sign["linear/2"][1]).all()
    cli = run("convert", HERE / name, tmp_path / "cli.safetensors", "--mask-rule", "sign")
    assert cli.exit_code == 0 and "chosen" in cli.stderr
    with pytest.raises(hatinspect.CheckpointError, match="unknown mask rule 'median'"):
        hatinspect.open_checkpoint(HERE / name, mask_rule="median")


def test_a_rule_names_the_layout_it_does_not_apply_to():
    clarena = PEERS / "clarena_hat_mlp.pth"
    line = one_error_line(
        run("masks", clarena, "--mask-rule", "topk"), "--mask-rule (mask_rule=) applies"
    )
    assert "this is a clarena file" in line
    wsn = PEERS / "clarena-main" / "wsn_mlp" / "cl_model.pth"
    one_error_line(run("info", wsn, "--mask-threshold", "0.5"), "this is a clarena file")


def test_individual_heads_are_weights_not_masks_and_trained_weights_are_noted(tmp_path):
    path = tmp_path / "heads.pt"
    torch.save(_payload(individual_heads=True, train_weight_tasks=1), path)
    checkpoint = hatinspect.open_checkpoint(path)
    assert checkpoint.layer_names == ["linear/0"]
    assert any("linear.2, the last layer" in note for note in checkpoint.notes)
    assert any("during the first 1 task(s)" in note for note in checkpoint.notes)


def test_a_tie_at_the_top_k_boundary_is_noted_and_broken_as_a_stable_sort_breaks_it(tmp_path):
    payload = _payload()
    tied = payload["state_dict"]["linear.0.scores.1"]
    tied.view(-1)[:] = torch.tensor([0.5, -0.5] * 6 + [0.1] * 6 + [0.9] * 6)  # 24 entries
    path = tmp_path / "tied.pt"
    torch.save(payload, path)
    checkpoint = hatinspect.open_checkpoint(path)
    mask = checkpoint.masks[1]["linear/0"].reshape(-1)
    # sparsity 0.5 drops int(0.5 * 24) = 12: the six 0.1s and the first six of the 0.5s
    assert mask.tolist() == [0] * 6 + [1] * 6 + [0] * 6 + [1] * 6
    assert (mask.astype(bool) == _brute_topk(tied.numpy(), 0.5).reshape(-1)).all()
    (note,) = [n for n in checkpoint.notes if n.startswith("top-k ties")]
    assert "in 1 mask(s) (linear/0, task 1)" in note
    assert not any("top-k ties" in n for n in hatinspect.open_checkpoint(HERE / FILES[0]).notes)


@pytest.mark.parametrize(
    "command",
    ["info", "masks", "capacity", "measure", "overlap", "audit", "convert", "compare", "report"],
)
def test_every_command_that_opens_files_takes_the_rules(command):
    shown = run(command, "--help", COLUMNS="200").stdout
    assert "--mask-rule" in shown and "--mask-threshold" in shown
