"""audit and measure keep their memory flat on a file far larger than the bound.

Two 2 GiB sparse checkpoints (weights in holes: no disk used) are audited and measured in
a fresh interpreter, whose peak RSS must stay under 200 MiB; reading them whole, as an
audit holding both files would, needs over 4 GiB.
"""

from __future__ import annotations

import json

import numpy as np
from safetensors import safe_open
from support.cli_runs import run_in_fresh_python
from support.sparse_files import leading_masks, wide_layers, write_sparse

BOUND_MIB = 200

# VmHWM: this process's own peak (ru_maxrss may carry the parent's over from exec)
PRINT_PEAK = """
import json
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(json.dumps({"peak_mib": int(status.split()[0]) // 1024}), file=sys.stderr)
"""


def peak_mib(commands, cwd) -> int:
    done = run_in_fresh_python(commands, PRINT_PEAK, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])["peak_mib"]


def test_audit_and_measure_memory_is_flat(tmp_path):
    layers = wide_layers(16384)  # two 1 GiB weights: 2 GiB a file
    masks = leading_masks(layers, tasks=3, share=0.02)
    meta = {"run_id": "one", "algorithm": "hat"}
    before = write_sparse(tmp_path / "before.safetensors", layers, masks, meta)
    after = write_sparse(tmp_path / "after.safetensors", layers, masks, meta)
    medium = write_sparse(
        tmp_path / "medium.safetensors",
        wide_layers(5000),
        leading_masks(wide_layers(5000), tasks=2, share=0.5),
    )
    assert before.stat().st_size > 2 * 2**30 and before.stat().st_blocks * 512 < 2**20
    commands = [
        ["audit", before.name, after.name, "-f", "json"],
        ["measure", before.name, "-l", "fc/1", "--of", "summative", "-f", "json"],
        ["measure", medium.name, "-l", "fc/1", "--save", "saved.safetensors"],
    ]
    try:
        assert peak_mib(commands, tmp_path) < BOUND_MIB
        with safe_open(tmp_path / "saved.safetensors", framework="numpy") as f:
            weight = f.get_slice("weight")
            assert weight.get_shape() == [5000, 5000]
            # rows 0..2499 are kept by some task, as are the columns fed by them: min is 1
            # exactly where both are, in the streamed blocks as in the whole
            corner = weight[2495:2505, 2495:2505]
            expected = np.zeros((10, 10), dtype=np.float32)
            expected[:5, :5] = 1
            np.testing.assert_array_equal(corner, expected)
    finally:
        for path in tmp_path.glob("*.safetensors"):
            path.unlink()
