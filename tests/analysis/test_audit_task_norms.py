"""audit covers per-task batch norms: an earlier task's batch norm that changed fails."""

import pytest
import torch
from torch import nn

import hatinspect
from hatinspect.analysis.audit import audit
from hatinspect.backbones.base import HATMaskBackbone
from hatinspect.backbones.task_norm import TaskBatchNorm2d
from hatinspect.model.errors import CheckpointError
from hatinspect.torch_io.save import save_checkpoint

FIELDS = ("bias", "num_batches_tracked", "running_mean", "running_var", "weight")


class TinyConvNet(HATMaskBackbone):
    """One masked conv followed by a per-task batch norm."""

    def __init__(self) -> None:
        super().__init__(output_dim=4, gate="sigmoid")
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = TaskBatchNorm2d(4)
        self.register_weighted_layer("conv", 4, None)

    def forward_gated(self, x, gate):
        return gate("conv", torch.relu(self.bn(self.conv(x)))).mean((2, 3))


def two_tasks(tmp_path, tamper=None):
    torch.manual_seed(0)
    net = TinyConvNet()
    for task in (1, 2):
        net.setup_task_id(task)
        net.initialise_task_embedding("U01")  # every unit used: the conv is fully protected
        net.train()
        net(torch.randn(4, 1, 5, 5), "train", 400.0, 1, 1)  # the task's own statistics
        net.store_mask()
        if task == 1:
            save_checkpoint(tmp_path / "before.safetensors", net)
    if tamper:
        with torch.no_grad():
            tamper(net)
    save_checkpoint(tmp_path / "after.safetensors", net)
    return [hatinspect.open_checkpoint(tmp_path / f"{n}.safetensors") for n in ("before", "after")]


def test_the_reader_lists_each_tasks_batch_norm_tensors(tmp_path):
    before, after = two_tasks(tmp_path)
    assert dict(before.task_norms) == {1: tuple(f"backbone.bn.per_task.1.{f}" for f in FIELDS)}
    assert sorted(after.task_norms) == [1, 2]


def test_an_untouched_earlier_batch_norm_passes(tmp_path):
    report = audit(*two_tasks(tmp_path))
    row = report.layers[-1]
    assert row.name == "batch norm of task 1"
    assert (row.protected, row.changed) == (4 * 4 + 1, 0)
    assert report.ok


def test_a_changed_earlier_batch_norm_fails(tmp_path):
    def nudge(net):
        net.bn.per_task["1"].running_var[2] += 0.25

    report = audit(*two_tasks(tmp_path, nudge))
    row = report.layers[-1]
    assert (row.changed, row.max_abs_change) == (1, pytest.approx(0.25))
    assert not report.ok


def test_a_missing_earlier_batch_norm_is_an_error(tmp_path):
    def drop(net):
        del net.bn.per_task["1"]

    with pytest.raises(CheckpointError, match="task 1's batch norm"):
        audit(*two_tasks(tmp_path, drop))


def test_stored_update_tasks_skip_keys_that_are_no_task_number():
    """AmnesiacHAT's update norms keyed by task; keys a file may hold instead ("²", which
    ``str.isdigit`` accepts and ``int`` refuses, 5,000 digits, "01") name no task."""
    from types import SimpleNamespace

    from hatinspect.analysis.audit import _update_tasks
    from hatinspect.model.names import UPDATE_NORMS_KEY

    keys = ["2", "²", "9" * 5000, "01", "-1", "3"]
    metadata = {UPDATE_NORMS_KEY: "{" + ", ".join(f'"{k}": {{}}' for k in keys) + "}"}
    assert _update_tasks(SimpleNamespace(metadata=metadata)) == {2, 3}
    assert _update_tasks(SimpleNamespace(metadata={UPDATE_NORMS_KEY: "[1]"})) is None
