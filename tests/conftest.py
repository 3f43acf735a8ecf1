"""Test-session policy for an install without torch (``pip install hatinspect``).

There, tests marked ``torch`` are skipped with one reason, and test modules that import
torch at their top are not collected; every other test runs, so an inspection path that
imports torch fails instead of hiding.
"""

import re
from importlib.util import find_spec
from pathlib import Path

import pytest

HAS_TORCH = find_spec("torch") is not None
TOP_LEVEL_TORCH = re.compile(r"^(import torch|from torch[ .])", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config):
    if HAS_TORCH or collection_path.suffix != ".py":
        return None
    if collection_path.name.startswith("test_"):
        return bool(TOP_LEVEL_TORCH.search(collection_path.read_text(encoding="utf-8")))
    return None


def pytest_collection_modifyitems(config, items):
    if HAS_TORCH:
        return
    skip = pytest.mark.skip(reason="needs torch: pip install 'hatinspect[torch]'")
    for item in items:
        if item.get_closest_marker("torch"):
            item.add_marker(skip)
