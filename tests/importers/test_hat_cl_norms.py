"""HAT-CL's TaskIndexedBatchNorm2d, read from files made by hat-cl 0.1.1's own modules
(tests/fixtures/hat-cl/make_task_indexed_bn.py): each task's batch norm is found, kept
per task when converted, and audited."""

import torch
from support.paths import FIXTURES

import hatinspect
from hatinspect.analysis.audit import audit

HAT_CL = FIXTURES / "hat-cl"
AFTER = [HAT_CL / f"task_indexed_bn_after_task_{t}.pt" for t in (0, 1)]
FIELDS = ("bias", "num_batches_tracked", "running_mean", "running_var", "weight")


def test_each_tasks_batch_norm_is_found():
    checkpoint = hatinspect.open_checkpoint(AFTER[1])
    assert checkpoint.source == "hat-cl" and checkpoint.task_ids == (0, 1)
    for task in (0, 1):  # index 2 serves HAT-CL's task id None: no task's
        keys = [f"bn{k}.{task}.{field}" for k in (1, 2) for field in FIELDS]
        assert checkpoint.task_norms[task] == tuple(keys)
    assert set(checkpoint.task_norms) == {0, 1}


def test_hat_cl_left_task_0s_batch_norm_untouched_and_audit_says_so():
    report = hatinspect.audit(*AFTER)
    row = report.layers[-1]
    assert row.name == "batch norm of task 0"
    # bn1 (4 units) and bn2 (3): weight, bias, mean, variance per unit + a batch count each
    assert (row.protected, row.changed) == (4 * 4 + 1 + 3 * 4 + 1, 0)
    assert report.ok


def test_a_changed_hat_cl_batch_norm_fails_the_audit(tmp_path):
    state = torch.load(AFTER[1], weights_only=True)
    state["bn2.0.running_var"][1] += 0.5
    torch.save(state, tmp_path / "tampered.pt")
    report = hatinspect.audit(AFTER[0], tmp_path / "tampered.pt")
    assert report.layers[-1].changed == 1 and not report.ok


def test_converted_files_keep_one_batch_norm_per_task(tmp_path):
    native = []
    for path in AFTER:
        target = tmp_path / path.with_suffix(".safetensors").name
        hatinspect.convert(path, target)
        native.append(hatinspect.open_checkpoint(target))
    assert native[1].task_norms[1][0] == "backbone.bn1.per_task.1.bias"
    assert audit(*native).ok
    from hatinspect.checkpoints import read_tensors

    original = torch.load(AFTER[1], weights_only=True)
    key = "backbone.bn2.per_task.0.running_var"
    converted = read_tensors(native[1].path, [key])[key]
    assert (converted == original["bn2.0.running_var"].numpy()).all()


def test_a_report_audits_a_run_of_pytorch_files():
    report = hatinspect.report(*AFTER)
    (run,) = report.runs
    (checked,) = run.audits
    assert checked.ok and checked.layers == hatinspect.audit(*AFTER).layers
