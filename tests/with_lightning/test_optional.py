"""Lightning is an optional extra: without it hatinspect works as before, and the
Lightning pieces say in one line what to install."""

import subprocess
import sys

import pytest
from support.cli_runs import modules_left_out, run_in_fresh_python, write_examples

WITHOUT_LIGHTNING = "import sys\nsys.modules['lightning'] = None  # as if not installed\n"
HINT = "hatinspect.lightning needs Lightning: pip install 'hatinspect[lightning]'"


def python(code: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


def test_inspection_never_imports_lightning(tmp_path):
    write_examples(tmp_path)
    # (module-level imports of lightning outside hatinspect/lightning are banned by ruff's
    # TID253; this checks what actually runs)
    commands = [["--help"], ["train-demo", "--help"], ["masks", "net.safetensors"]]
    result = run_in_fresh_python(commands, modules_left_out("lightning"), tmp_path)
    assert result.returncode == 0, result.stderr


def test_importing_the_lightning_pieces_without_lightning_says_what_to_install():
    result = python(WITHOUT_LIGHTNING + "import hatinspect\nimport hatinspect.lightning")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"ImportError: {HINT}"


def test_the_lightning_engine_without_lightning_is_one_error_line(tmp_path):
    code = WITHOUT_LIGHTNING + (
        "from hatinspect.cli.app import main\n"
        "sys.argv = ['hatinspect', 'train-demo', '--engine', 'lightning', '-o', 'out']\n"
        "main()\n"
    )
    result = python(code, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {HINT}"
    assert not (tmp_path / "out").exists()


@pytest.mark.torch  # train-demo asks for torch before it looks for a logger
def test_a_logger_without_lightning_is_one_error_line(tmp_path):
    code = WITHOUT_LIGHTNING + (
        "from hatinspect.cli.app import main\n"
        "sys.argv = ['hatinspect', 'train-demo', '--logger', 'csv', '-o', 'out']\n"
        "main()\n"
    )
    result = python(code, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {HINT}"
    assert not (tmp_path / "out").exists()
