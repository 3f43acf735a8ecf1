"""README's commands and Python snippets run in the order the page gives them, on a fresh
clone: a folder holding README.md and a copy of examples/. Left aside: the set-up lines
(venv, pip), the test suite itself, the fuzzer's long run and the benchmarks, and the
snippets that stand for the reader's own code (names such as ``my_tasks``, a GPU Trainer)."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
from support.paths import REPO

BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
ASIDE = ("python3 -m venv", ". .venv/bin/activate", "pip install", "python -m pytest",
         "python tests/fuzz/", "python benchmarks/")  # fmt: skip
READERS_OWN = ("my_", 'accelerator="gpu"')
NEEDED = ("torch", "pandas")


def steps(readme: str) -> list[tuple[str, str]]:
    """(language, code) of each README step to run: a bash block's hatinspect commands one
    by one (``a && b`` split), a python block whole."""
    out = []
    for language, code in BLOCK.findall(readme):
        if language == "python":
            if not any(marker in code for marker in READERS_OWN):
                out.append(("python", code))
            continue
        for line in code.splitlines():
            for part in (p.strip() for p in line.split("&&")):
                if part and not part.startswith(ASIDE):
                    assert part.startswith("hatinspect "), f"README line of unknown kind: {part}"
                    out.append(("bash", part))
    return out


def test_the_readme_gives_commands_to_run():
    found = steps((REPO / "README.md").read_text())
    assert ("bash", "hatinspect masks examples/hat-toy/after-task-5.safetensors") == found[0]
    assert sum(language == "python" for language, _ in found) >= 2


@pytest.mark.slow
@pytest.mark.torch
def test_the_readme_runs_in_order_on_a_fresh_clone(tmp_path):
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the README's snippets need {', '.join(missing)}")
    shutil.copy(REPO / "README.md", tmp_path)
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "100"}
    shell = f'hatinspect() {{ "{sys.executable}" -m hatinspect "$@"; }}\n'
    for language, code in steps((tmp_path / "README.md").read_text()):
        if "--engine lightning" in code and importlib.util.find_spec("lightning") is None:
            continue
        argv = ["bash", "-c", shell + code] if language == "bash" else [sys.executable, "-c", code]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, (code, done.stderr[-2000:])
        assert "error:" not in done.stderr, (code, done.stderr[-2000:])


def test_the_shipped_examples_carry_a_run_id_and_audit_without_notes():
    from support.cli_runs import run

    files = [REPO / "examples" / "hat-toy" / f"after-task-{t}.safetensors" for t in (2, 5)]
    result = run("audit", *files)
    assert result.exit_code == 0 and result.stderr == ""
    text = (REPO / "examples" / "README.md").read_text()
    assert "hatinspect train-demo --out examples/hat-toy\n" in text
