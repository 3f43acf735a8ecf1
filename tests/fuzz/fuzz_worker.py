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
import warnings
from pathlib import Path

from fuzz_mutations import TRAJECTORY_CASE

FORBIDDEN_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                    "subprocess.Popen", "pty.spawn", "socket.connect", "ctypes.dlopen",
                    "os.remove", "os.rename", "shutil.rmtree")  # fmt: skip
executed: list[str] = []
armed = False
# the name a "-pathctl" case is opened under: every kind of control character
CONTROL_NAME = "ctl\n\r\t\x1b[31m\x7f\u2028\x85 case"
NOT_PATHS = ["ctl\x00.pt", 7, None, b"x.pt", ["x.pt"]]


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
    if "-selftest-warning" in name:
        warnings.warn("a warning planted by the harness's own test", stacklevel=1)
    if "-selftest-stderr" in name:
        os.write(2, b"text planted on stderr by the harness's own test\n")


def hostile_paths(path: Path) -> str | None:
    """What is no path, handed to every entry point with ``path`` beside it: each must be
    one HatinspectError line; the finding otherwise."""
    import hatinspect
    from hatinspect.checkpoints import read_tensors

    calls = {
        "open_checkpoint": hatinspect.open_checkpoint,
        "read_tensors": lambda p: read_tensors(p, []),
        "masks": hatinspect.masks,
        "capacity": hatinspect.capacity,
        "audit": lambda p: hatinspect.audit(path, p),
        "report": hatinspect.report,
        "convert": lambda p: hatinspect.convert(path, p),
        "heatmap": lambda p: hatinspect.masks(path, heatmap=p),
    }
    for name, call in calls.items():
        for value in NOT_PATHS:
            if value is None and name in ("convert", "heatmap"):
                continue  # None: the default output, or none
            try:
                call(value)
            except hatinspect.HatinspectError as exc:
                if "\n" in str(exc) or not str(exc):
                    return f"path {value!r} through {name}: not one line: {str(exc)[:200]!r}"
                continue
            except Exception as exc:  # noqa: BLE001 - what the promise rules out
                return f"path {value!r} through {name}: {type(exc).__name__}: {exc}"[:300]
            return f"path {value!r} through {name}: accepted"
    return None


def run_case(path: Path, scratch: Path) -> dict:
    """The case's outcome; a warning it raised or text it left on stderr is a finding."""
    run = _run_trajectory_case if TRAJECTORY_CASE in path.name else _run_case
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(path, scratch)
    if caught and not result["finding"]:
        first = caught[0]
        text = " ".join(str(first.message).split())[:200]
        result["finding"] = f"warning escaped: {first.category.__name__}: {text}"
    return result


def _run_case(path: Path, scratch: Path) -> dict:
    """``{"status": "loaded"|"refused", "finding": None|str}`` for one file."""
    import numpy as np

    import hatinspect
    from hatinspect.analysis.capacity import capacity
    from hatinspect.analysis.measure import measure
    from hatinspect.checkpoints import read_tensors
    from hatinspect.model.errors import one_line
    from hatinspect.native.reader import sniff

    global armed
    before = _digest(path)
    phase, status, finding = "open", "refused", None
    executed.clear()
    armed = True
    original = path
    try:
        _self_test(path.name)
        if "-pathctl" in path.name:  # the same file, named with control characters
            finding = hostile_paths(path)
            path = scratch / CONTROL_NAME
            shutil.copyfile(original, path)
        checkpoint = hatinspect.open_checkpoint(path)
        phase = "read_tensors"
        keys = [k for layer in checkpoint.layers for k in (layer.weight_key, layer.bias_key) if k]
        # pack.py's files hold masks only, the original HAT code's .pkz logs units alone
        weightless = checkpoint.metadata.get("masks_only") == "true" or not checkpoint.weights_known
        arrays = read_tensors(path, [] if weightless else keys) if checkpoint.weights_known else {}
        for layer in checkpoint.layers if not weightless else ():
            if arrays[layer.weight_key].shape != layer.weight_shape:
                finding = f"read_tensors gave {layer.weight_key} another shape than its layer"
        phase = "capacity"
        capacity(checkpoint)
        units = checkpoint.covers == "units"  # masks of weights: no unit measure
        phase = "measure"
        for layer in checkpoint.layers if units and not weightless else ():
            measure(checkpoint, layer.name)
        if not weightless and sniff(path) == "torch":  # masks of weights too: stored packed
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
    if status != "loaded" and "-seed-" in original.name and not finding:
        finding = "a valid seed file was refused"
    if executed:
        finding = f"executed: {', '.join(executed)}"
    if _digest(original) != before or _digest(path) != before:
        finding = "the input file changed"
    expected = {"converted.safetensors", CONTROL_NAME}
    left = sorted(p.name for p in scratch.iterdir() if p.name not in expected)
    if left:
        finding = f"files appeared: {left[:3]}"
    for item in scratch.iterdir():
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    return {"status": status, "finding": finding}


def _run_trajectory_case(path: Path, scratch: Path) -> dict:
    """A trajectory file's case: read by ``read_trajectory``, which loads it whole or
    refuses it in one line naming the file."""
    import hatinspect
    from hatinspect.model.errors import one_line
    from hatinspect.native.trajectory_file import read_trajectory

    global armed
    before, status, finding = _digest(path), "refused", None
    executed.clear()
    if "-pathctl" in path.name:  # the same file, named with control characters
        shutil.copyfile(path, scratch / CONTROL_NAME)
    opened = scratch / CONTROL_NAME if "-pathctl" in path.name else path
    armed = True
    try:
        trajectory = read_trajectory(opened)
        for layer in trajectory.layers:
            trajectory.binary(layer)
        status = "loaded"
    except hatinspect.CheckpointError as exc:
        text = str(exc)
        if "\n" in text or not text.startswith(one_line(str(opened))):
            finding = f"message not one line naming the file: {text[:300]!r}"
    except BaseException as exc:  # noqa: BLE001 - any other escape is what we look for
        finding = f"read_trajectory: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    finally:
        armed = False
    if status != "loaded" and "-seed-" in path.name and not finding:
        finding = "a valid seed file was refused"
    if executed:
        finding = f"executed: {', '.join(executed)}"
    if _digest(path) != before:
        finding = "the input file changed"
    left = sorted(p.name for p in scratch.iterdir() if p.name != CONTROL_NAME)
    if left:
        finding = f"files appeared: {left[:3]}"
    for item in scratch.iterdir():
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    return {"status": status, "finding": finding}


def main() -> None:
    manifest, start, memory_mb = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    import torch

    torch.set_num_threads(1)
    import hatinspect.analysis.capacity  # noqa: F401 - the first case's clock
    import hatinspect.analysis.measure  # noqa: F401
    import hatinspect.backbones  # noqa: F401 - everything imported before the limit and
    import hatinspect.importers.dispatch  # noqa: F401
    import hatinspect.native.trajectory_file  # noqa: F401
    import hatinspect.torch_io.convert  # noqa: F401

    limit = _vm_bytes() + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.addaudithook(_audit)
    paths = manifest.read_text().splitlines()
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-scratch-"))
    os.chdir(scratch)  # where a pickle that ran code would leave its mark
    stderr = _capture_stderr()
    for index in range(start, len(paths)):
        print(f"S {index}", flush=True)
        result = run_case(Path(paths[index]), scratch)
        text = _new_text(stderr)
        if text and not result["finding"]:  # a library's output, a warning printed
            result["finding"] = f"stderr: {' '.join(text.split())[:200]}"
        print(f"R {json.dumps(result)}", flush=True)


def _capture_stderr():
    """File descriptor 2 (Python's and C++'s stderr) redirected to a file read per case."""
    capture = tempfile.TemporaryFile()
    sys.stderr.flush()
    os.dup2(capture.fileno(), 2)
    return capture


def _new_text(capture) -> str:
    sys.stderr.flush()
    capture.seek(0)
    text = capture.read().decode("utf-8", "replace")
    capture.seek(0)
    capture.truncate()
    return text


if __name__ == "__main__":
    main()
