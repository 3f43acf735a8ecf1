"""Tables in a real terminal: the CLI runs in a pseudo-terminal of 80 and 120 columns (its
size set as `stty` sets it, no COLUMNS), and every table folds to fit: nothing cut to an
ellipsis, every header whole, every task column present."""

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from support.inspect_checkpoints import layer, make_checkpoint, random_masks, write_native
from support.terminal import read_terminal

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STEP_HEADERS = [
    "units used",
    "params protected",
    "new units",
    "reused units",
    "network sparsity",
    "accuracy",
    "forgetting",
    "backward transfer",
]
WIDE = (  # a ResNet's last stage: ten tasks of 512 channels each
    layer("conv5x/2/conv1", (512, 8, 1, 1), bias=False),
    layer("conv5x/2/conv2", (512, 8, 1, 1), bias=False),
    layer("conv5x/2/conv3", (2048, 8, 1, 1), bias=False),
)
MLP = (
    layer("fc/0", (100, 32)),
    layer("fc/1", (100, 100), "fc/0"),
    layer("fc/2", (100, 100), "fc/1"),
)


def in_terminal(columns: int, *args, cwd: Path) -> tuple[str, str]:
    """stdout of `hatinspect ARGS` in a pseudo-terminal `columns` wide; stderr apart."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", NO_COLOR="1", PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(
        [sys.executable, "-m", "hatinspect", *map(str, args)],
        stdout=follower, stderr=subprocess.PIPE, stdin=follower, cwd=cwd, env=env,
    )  # fmt: skip
    os.close(follower)
    text = read_terminal(leader).replace("\r\n", "\n")
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, stderr
    return ANSI.sub("", text), stderr


def header_cells(text: str) -> list[str]:
    """The header cells of every table in `text`, a cell's lines joined by a space."""
    cells, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("┏"):
            header = []
            for row in lines[i + 1 :]:
                if not row.startswith("┃"):
                    break
                header.append(row.split("┃")[1:-1])
            columns = zip(*header, strict=True)
            cells += [" ".join(" ".join(part.split()) for part in c).strip() for c in columns]
    return cells


def fits(text: str, columns: int) -> None:
    assert "…" not in text
    assert max(map(len, text.splitlines())) <= columns


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs")
    accuracy = [[0.99], [0.98, 1.0], [0.83, 0.86, 0.997]]
    for seed, name in enumerate(("hat", "adahat", "finetuning")):
        (folder / name).mkdir()
        masks = random_masks(MLP, (1, 2, 3), seed=seed)
        for t in (1, 2, 3):
            stored = {k: masks[k] for k in range(1, t + 1)}
            metadata = {"algorithm": name, "accuracy": json.dumps(accuracy[:t])}
            write_native(folder / name / f"after-task-{t}.safetensors",
                         make_checkpoint(MLP, stored), metadata=metadata)  # fmt: skip
    return folder


@pytest.mark.parametrize("columns", [80, 120])
def test_compare_of_three_runs_folds_in_a_terminal(three_runs, columns):
    text, stderr = in_terminal(columns, "compare", "hat", "adahat", "finetuning", cwd=three_runs)
    fits(text, columns)
    steps = text.split("Final usage per layer")[0]
    headers = header_cells(steps)
    for header in STEP_HEADERS:
        assert headers.count(header) == 1, (header, headers)
    tables = headers.count("after")
    assert tables == headers.count("run") == (1 if columns == 120 else 2)
    for run in ("hat", "adahat", "finetuning"):  # every run's row in every part, name whole
        assert sum(f"│ {run} " in line for line in steps.splitlines()) == 3 * tables
    assert text.count("accuracy after each task") == 3 and stderr == ""


@pytest.mark.parametrize("columns", [80, 120])
def test_masks_of_a_layer_with_ten_tasks_keeps_every_task_column(tmp_path, columns):
    write_native(
        tmp_path / "r50.safetensors", make_checkpoint(WIDE, random_masks(WIDE, range(1, 11)))
    )
    text, stderr = in_terminal(
        columns, "masks", "r50.safetensors", "-l", "conv5x/2/*", cwd=tmp_path
    )
    fits(text, columns)
    headers = header_cells(text.split("by how many")[0])
    shown = [h for h in headers if re.fullmatch(r"t(ask )?\d+", h)]
    assert sorted(int(h.split("t")[-1].split()[-1]) for h in shown) == list(range(1, 11))
    for header in ("cumulative", "summative max", "summative mean"):
        assert headers.count(header) == 1, headers
    assert stderr == ""  # nothing left out, so no note
    for name in ("conv5x/2/conv1", "conv5x/2/conv2", "conv5x/2/conv3"):
        assert sum(f"│ {name} " in line for line in text.splitlines()) == headers.count("layer")
