"""Runs fuzz cases one after another in this process, under an address-space limit.

Usage: ``python fuzz_worker.py MANIFEST START MEMORY_MB``. For each case path from line
START of MANIFEST it prints ``S <index>`` before and ``R <json>`` after, so the parent
that watches the clock can blame a hang or a crash on the case that was running.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

FORBIDDEN_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                    "subprocess.Popen", "pty.spawn", "socket.connect", "ctypes.dlopen",
                    "os.remove", "os.rename", "shutil.rmtree")  # fmt: skip
executed: list[str] = []
armed = False


def _audit(event: str, args) -> None:
    if armed and event.startswith(FORBIDDEN_EVENTS):
        executed.append(event)
        raise RuntimeError(f"forbidden event {event}")


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _memory_cause(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__context__ or exc.__cause__, seen + 1
    return False


def _self_test(name: str) -> None:
    """Cases that prove the harness catches what it is for (see test_fuzz_slice.py)."""
    if "-selftest-hang" in name:
        import time

        time.sleep(3600)
    if "-selftest-crash" in name:
        os.abort()
    if "-selftest-escape" in name:
        raise TypeError("an escape planted by the harness's own test")


def run_case(path: Path, scratch: Path) -> dict:
    """``{"status": "loaded"|"refused", "finding": None|str}`` for one file."""
    import numpy as np

    import hatinspect
    from hatinspect.checkpoints import read_tensors
    from hatinspect.core.capacity import capacity
    from hatinspect.core.errors import one_line
    from hatinspect.core.measure import measure
    from hatinspect.core.reader import sniff

    global armed
    before = _digest(path)
    phase, status, finding = "open", "refused", None
    executed.clear()
    armed = True
    try:
        _self_test(path.name)
        checkpoint = hatinspect.open_checkpoint(path)
        phase = "read_tensors"
        keys = [k for layer in checkpoint.layers for k in (layer.weight_key, layer.bias_key) if k]
        arrays = read_tensors(path, keys)
        for layer in checkpoint.layers:
            if arrays[layer.weight_key].shape != layer.weight_shape:
                finding = f"read_tensors gave {layer.weight_key} another shape than its layer"
        phase = "capacity"
        capacity(checkpoint)
        phase = "measure"
        for layer in checkpoint.layers:
            measure(checkpoint, layer.name)
        if sniff(path) == "torch":
            phase = "convert"
            armed = False  # convert writes and replaces its own temporary file
            converted = hatinspect.convert(path, scratch / "converted.safetensors")
            armed = True
            phase = "open converted"
            again = hatinspect.open_checkpoint(converted)
            if again.task_ids != checkpoint.task_ids or any(
                not np.array_equal(again.masks[t][n], checkpoint.masks[t][n])
                for t in checkpoint.task_ids
                for n in checkpoint.layer_names
            ):
                finding = "convert changed the masks"
        status = "loaded"
    except hatinspect.CheckpointError as exc:
        text = str(exc)
        if phase != "open":
            finding = f"accepted, then {phase} refused it: {text[:300]}"
        elif "\n" in text or not text.startswith(one_line(str(path))):
            finding = f"message not one line naming the file: {text[:300]!r}"
        elif _memory_cause(exc):
            finding = f"ran out of memory: {text[:300]}"
    except BaseException as exc:  # noqa: BLE001 - any other escape is what we look for
        finding = f"{phase}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    finally:
        armed = False
    if status != "loaded" and "-seed-" in path.name and not finding:
        finding = "a valid seed file was refused"
    if executed:
        finding = f"executed: {', '.join(executed)}"
    if _digest(path) != before:
        finding = "the input file changed"
    left = sorted(p.name for p in scratch.iterdir() if p.name != "converted.safetensors")
    if left:
        finding = f"files appeared: {left[:3]}"
    for item in scratch.iterdir():
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    return {"status": status, "finding": finding}


def main() -> None:
    manifest, start, memory_mb = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    import torch

    torch.set_num_threads(1)
    import hatinspect.backbones  # noqa: F401 - everything imported before the limit and
    import hatinspect.core.capacity  # noqa: F401 - the first case's clock
    import hatinspect.core.measure  # noqa: F401
    import hatinspect.storage.convert  # noqa: F401
    import hatinspect.storage.importers  # noqa: F401

    limit = _vm_bytes() + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.addaudithook(_audit)
    paths = manifest.read_text().splitlines()
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-scratch-"))
    os.chdir(scratch)  # where a pickle that ran code would leave its mark
    for index in range(start, len(paths)):
        print(f"S {index}", flush=True)
        result = run_case(Path(paths[index]), scratch)
        print(f"R {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main()
