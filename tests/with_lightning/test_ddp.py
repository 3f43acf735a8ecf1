"""train-demo on Lightning with two processes (DDP over gloo, on CPU): one file per task
written by global rank zero, the same masks on both ranks, HAT's protection intact."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("lightning")

import hatinspect  # noqa: E402
from hatinspect.analysis.audit import audit  # noqa: E402

TIMEOUT_S = 300  # two interpreters importing torch and Lightning on a shared machine


def digest(checkpoint) -> str:
    """sha256 over the stored masks, tasks and layers in order, as uint8 bytes."""
    h = hashlib.sha256()
    for task in sorted(checkpoint.masks):
        for layer in sorted(checkpoint.masks[task]):
            h.update(f"{task}.{layer}".encode())
            h.update(np.asarray(checkpoint.masks[task][layer], dtype=np.uint8).tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_two_process_ddp_run(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "hatinspect", "train-demo", "--engine", "lightning"]
    command += ["--devices", "2", "--strategy", "ddp", "-n", "2", "-e", "1"]
    command += ["-o", str(out), "-f", "json"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one document: only global rank zero reports
    files = [out / f"after-task-{t}.safetensors" for t in (1, 2)]
    assert report["checkpoints"] == [str(path) for path in files]
    assert sorted(out.iterdir()) == files  # nothing else, no temporary file left
    assert report["forgetting"] == [0.0]
    checkpoints = [hatinspect.open_checkpoint(path) for path in files]
    for task, checkpoint in enumerate(checkpoints, start=1):
        assert checkpoint.task_ids == tuple(range(1, task + 1))
        meta = checkpoint.metadata
        assert json.loads(meta["world_size"]) == 2
        assert json.loads(meta["mask_digests"]) == [digest(checkpoint)] * 2  # both ranks
    protection = audit(*checkpoints)
    assert protection.ok and protection.protected > 0
