"""Audit: which files may be compared, the rule each algorithm gets, and block-wise reading."""

import json

import numpy as np
import pytest
import torch
from support.brute_force import protected_params
from support.cli_runs import one_error_line, run
from support.inspect_checkpoints import (
    CONV,
    MLP,
    make_checkpoint,
    random_masks,
    random_weights,
    write_native,
)

from hatinspect.analysis.audit import AuditRefused, audit
from hatinspect.checkpoints import open_checkpoint
from hatinspect.native import blocks

TASKS_AFTER = random_masks(MLP, [1, 2, 3], seed=5)
TASKS_AFTER[1]["fc/0"][0] = 1  # unit 0 of fc/0 is protected from task 1 on
TASKS_BEFORE = {t: m for t, m in TASKS_AFTER.items() if t < 3}


def files(tmp_path, change=None, before_meta=None, after_meta=None, masks=(None, None)):
    """BEFORE (tasks 1, 2) and AFTER (tasks 1-3) of one run; `change(weights)` edits AFTER."""
    early = make_checkpoint(MLP, masks[0] or TASKS_BEFORE)
    late = make_checkpoint(MLP, masks[1] or TASKS_AFTER)
    weights = random_weights(early)
    before = write_native(tmp_path / "before.safetensors", early, weights, metadata=before_meta)
    weights = {k: v.copy() for k, v in weights.items()}
    if change:
        change(weights)
    after = write_native(tmp_path / "after.safetensors", late, weights, metadata=after_meta)
    return before, after


def audit_files(before, after, **options):
    return audit(open_checkpoint(before), open_checkpoint(after), **options)


def run_meta(algorithm, run="r1"):
    return {"run_id": run, "algorithm": algorithm}


def nudge(weights):  # fc/0 unit 0 is protected in TASKS_BEFORE: its row moves by 0.25
    weights["backbone.fc.0.weight"][0] += np.float32(0.25)


def test_unit_zero_of_fc0_is_protected():
    assert TASKS_BEFORE[1]["fc/0"][0] or TASKS_BEFORE[2]["fc/0"][0]


def test_swapped_files_are_refused(tmp_path):
    before, after = files(tmp_path, before_meta=run_meta("hat"), after_meta=run_meta("hat"))
    with pytest.raises(AuditRefused, match="lacks task 3 .* swapped"):
        audit_files(after, before)


def test_different_runs_are_refused(tmp_path):
    before, after = files(tmp_path, before_meta=run_meta("hat"), after_meta=run_meta("hat", "r2"))
    with pytest.raises(AuditRefused, match="not the same run: .* run id r1, .* has r2"):
        audit_files(before, after)


def test_changed_masks_are_refused(tmp_path):
    other = {t: {k: 1 - v for k, v in m.items()} for t, m in TASKS_AFTER.items()}
    before, after = files(tmp_path, masks=(None, other))
    with pytest.raises(AuditRefused, match="task 1's mask of layer fc/0 differs"):
        audit_files(before, after)


def test_files_without_run_id_get_a_note_each(tmp_path):
    before, after = files(tmp_path, after_meta=run_meta("hat"))
    report = audit_files(before, after)
    assert (
        report.ok
        and len(report.notes) == 1
        and "before.safetensors carries no run id" in report.notes[0]
    )
    assert (
        audit_files(*files(tmp_path, before_meta=run_meta("hat"), after_meta=run_meta("hat"))).notes
        == ()
    )


def test_different_algorithms_are_refused(tmp_path):
    before, after = files(tmp_path, before_meta=run_meta("hat"), after_meta=run_meta("adahat"))
    with pytest.raises(AuditRefused, match="different algorithms"):
        audit_files(before, after)


@pytest.mark.parametrize("algorithm", ["hat", None, "something-else"])
def test_hat_and_unknown_require_bit_identity(tmp_path, algorithm):
    meta = run_meta(algorithm) if algorithm else None
    report = audit_files(*files(tmp_path, nudge, meta, meta))
    assert report.rule == "bit-identical" and not report.ok
    assert report.algorithm == (algorithm if algorithm == "hat" else "unknown")
    assert report.changed == report.layers[0].changed == 6  # the whole row: fan-in 6


def test_adahat_drift_is_reported_and_passes(tmp_path):
    meta = run_meta("adahat")
    report = audit_files(*files(tmp_path, nudge, meta, meta))
    assert (report.algorithm, report.rule, report.ok) == ("adahat", "drift", True)
    fc0 = report.layers[0]
    assert fc0.changed == 6 and fc0.max_abs_change == pytest.approx(0.25, abs=1e-6)
    strict = audit_files(*files(tmp_path, nudge, meta, meta), strict=True)
    assert strict.rule == "bit-identical" and not strict.ok


@pytest.mark.parametrize("algorithm", ["hat", "adahat"])
def test_tolerance_applies_to_any_algorithm(tmp_path, algorithm):
    meta = run_meta(algorithm)
    pair = files(tmp_path, nudge, meta, meta)
    assert audit_files(*pair, tolerance=0.3).ok
    tight = audit_files(*pair, tolerance=0.1)
    assert (tight.rule, tight.ok, tight.tolerance) == ("tolerance", False, 0.1)


def test_nan_change_fails_a_tolerance(tmp_path):
    def poison(weights):
        weights["backbone.fc.0.weight"][0, 0] = np.nan

    assert not audit_files(*files(tmp_path, poison), tolerance=1e9).ok


def test_finetuning_protects_nothing(tmp_path):
    meta = run_meta("finetuning")
    report = audit_files(*files(tmp_path, nudge, meta, meta))
    assert (report.rule, report.ok, report.layers) == ("nothing protected", True, ())


def brute_force_changes(before, after, checkpoint):
    """Per layer, (protected, changed, max, sum) from whole arrays and explicit loops."""
    cumulative = {
        lay.name: np.max([checkpoint.masks[t][lay.name] for t in checkpoint.task_ids], axis=0)
        for lay in checkpoint.layers
    }
    out = {}
    for lay in checkpoint.layers:
        protected, changes = 0, []
        for key in (lay.weight_key, lay.bias_key):
            if key is None:
                continue
            a, b = before[key], after[key]
            for index in np.ndindex(a.shape):
                i = index[0]
                if key == lay.bias_key or lay.preceding is None:
                    on = cumulative[lay.name][i]
                else:
                    source = cumulative[lay.preceding]
                    on = cumulative[lay.name][i] and source[index[1] // (lay.fan_in // len(source))]
                if on:
                    protected += 1
                    if a[index].tobytes() != b[index].tobytes():
                        changes.append(abs(float(b[index]) - float(a[index])))
        out[lay.name] = (protected, len(changes), max(changes, default=0.0), sum(changes))
    return out


@pytest.mark.parametrize("block_bytes", [8, 40, 1 << 20], ids=["part-rows", "rows", "whole"])
def test_blockwise_reading_matches_brute_force(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", block_bytes)
    ckpt = make_checkpoint(CONV, random_masks(CONV, [0, 1], seed=3))
    weights = random_weights(ckpt, seed=1)
    later = {k: v.copy() for k, v in weights.items()}
    rng = np.random.default_rng(7)
    for value in later.values():
        flat = value.reshape(-1)
        flat[rng.random(flat.size) < 0.3] += np.float32(0.5)
    before = write_native(tmp_path / "b.safetensors", ckpt, weights)
    after = write_native(tmp_path / "a.safetensors", ckpt, later)
    report = audit_files(before, after)
    expected = brute_force_changes(weights, later, ckpt)
    for layer in report.layers:
        protected, changed, largest, total = expected[layer.name]
        assert (layer.protected, layer.changed) == (protected, changed)
        assert layer.max_abs_change == pytest.approx(largest)
        assert layer.mean_abs_change == pytest.approx(total / changed if changed else 0.0)


def test_row_blocks_cover_each_entry_once():
    for shape, itemsize, limit in [((5, 6), 4, 8), ((4, 3, 3, 3), 4, 40), ((7,), 2, 4)]:
        seen = np.zeros(shape[:2] if len(shape) > 1 else (shape[0], 1), dtype=int)
        for r0, r1, c0, c1 in blocks.row_blocks(shape, itemsize, limit):
            seen[r0:r1, c0:c1] += 1
        assert (seen == 1).all()


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_narrow_floats_decode_like_torch(dtype):
    codes = np.arange(256 if "8" in dtype else 65536, dtype=np.uint8 if "8" in dtype else np.uint16)
    expected = torch.from_numpy(codes.copy()).view(getattr(torch, dtype)).double().numpy()
    stored = {"bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}[dtype]
    np.testing.assert_array_equal(blocks.as_float64(codes, stored), expected)


def test_bf16_files_are_audited(tmp_path):
    from safetensors.torch import save_file

    from hatinspect.native import format as fmt

    ckpt = make_checkpoint()
    state = {k: torch.from_numpy(v).bfloat16() for k, v in random_weights(ckpt).items()}
    masks = {
        fmt.mask_key(t, name): torch.tensor(np.asarray(m), dtype=torch.uint8)
        for t in ckpt.task_ids
        for name, m in ckpt.masks[t].items()
    }
    header = fmt.encode_header(fmt.Header("HATMaskMLP", None, ckpt.layers, ckpt.task_ids))
    save_file({**state, **masks}, tmp_path / "b.safetensors", metadata=header)
    state["backbone.fc.0.weight"][0, 0] += 1.0  # unit 0 of fc/0 is kept by task 1
    save_file({**state, **masks}, tmp_path / "a.safetensors", metadata=header)
    report = audit_files(tmp_path / "b.safetensors", tmp_path / "a.safetensors")
    assert report.changed == 1 and report.layers[0].max_abs_change == pytest.approx(1.0, abs=0.02)


# --- the command ---------------------------------------------------------------------


def test_cli_refusal_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files(tmp_path, before_meta=run_meta("hat"), after_meta=run_meta("hat"))
    result = run("audit", "after.safetensors", "before.safetensors")
    assert result.exit_code == 1
    one_error_line(result, "lacks task 3", "swapped")


def test_cli_adahat_drift_passes_unless_strict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files(tmp_path, nudge, run_meta("adahat"), run_meta("adahat"))
    result = run("audit", "before.safetensors", "after.safetensors")
    assert result.exit_code == 0, result.stderr
    assert "AdaHAT drift: 6 of" in result.stdout
    doc = json.loads(run("audit", "before.safetensors", "after.safetensors", "-f", "json").stdout)
    assert (doc["algorithm"], doc["rule"], doc["ok"], doc["changed"]) == (
        "adahat",
        "drift",
        True,
        6,
    )
    strict = run("audit", "before.safetensors", "after.safetensors", "--strict")
    assert strict.exit_code == 1 and "FAILED: 6 of" in strict.stdout
    loose = run("audit", "before.safetensors", "after.safetensors", "--strict", "--tolerance", "1")
    assert loose.exit_code == 0 and "tolerance 1" in loose.stdout


def test_cli_finetuning_says_nothing_is_protected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files(tmp_path, nudge, run_meta("finetuning"), run_meta("finetuning"))
    result = run("audit", "before.safetensors", "after.safetensors")
    assert result.exit_code == 0 and "no masks: nothing is protected" in result.stdout


def test_cli_notes_missing_run_ids_on_stderr(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files(tmp_path)
    result = run("audit", "before.safetensors", "after.safetensors")
    assert result.exit_code == 0
    assert result.stderr.count("carries no run id") == 2 and "run id" not in result.stdout


def test_capacity_of_finetuning_says_nothing_is_protected(tmp_path, monkeypatch):
    from hatinspect.analysis.capacity import capacity

    monkeypatch.chdir(tmp_path)
    before, _ = files(tmp_path, before_meta=run_meta("finetuning"))
    assert capacity(open_checkpoint(before)).protects is False
    result = run("capacity", before.name)
    assert result.exit_code == 0 and "no masks: nothing is protected" in result.stdout
    assert json.loads(run("capacity", before.name, "-f", "json").stdout)["protects"] is False
    hat = capacity(open_checkpoint(files(tmp_path, before_meta=run_meta("hat"))[0]))
    assert hat.protects and hat.total.params_protected > 0


@pytest.mark.parametrize(
    ("algorithm", "options", "requirer", "hint"),
    [
        ("adahat", ["--strict"], "--strict", "moves protected parameters softly by design"),
        ("hat", [], "HAT", "the training between the two checkpoints did not respect the masks"),
        ("", [], "HAT's rule (no known algorithm named)", "an AdaHAT run drifts by design"),
    ],
)
def test_a_failed_audit_says_what_it_measured_against_which_rule(
    tmp_path, monkeypatch, algorithm, options, requirer, hint
):
    monkeypatch.chdir(tmp_path)
    meta = run_meta(algorithm) if algorithm else {"run_id": "r1"}
    files(tmp_path, nudge, meta, meta)
    protected = sum(protected_params(MLP, TASKS_BEFORE, [1, 2]).values())
    result = run("audit", "before.safetensors", "after.safetensors", *options)
    assert result.exit_code == 1
    # nudge moves the 6 weights of fc/0's unit 0, all protected (a first layer's inputs are)
    measured = f"6 of {protected:,} protected parameters changed, where {requirer} requires"
    line = one_error_line(result, measured, hint)
    assert algorithm == "hat" or "did not respect" not in line
    assert f"FAILED: {measured} them bit-identical." in " ".join(result.stdout.split())
