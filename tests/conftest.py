"""Test-session policy for an install without torch (``pip install hatinspect``).

There, tests marked ``torch`` are skipped with one reason; every other test runs, so an
inspection path that imports torch fails instead of hiding.
"""

from importlib.util import find_spec

import pytest

HAS_TORCH = find_spec("torch") is not None


def pytest_collection_modifyitems(config, items):
    if HAS_TORCH:
        return
    skip = pytest.mark.skip(reason="needs torch: pip install 'hatinspect[torch]'")
    for item in items:
        if item.get_closest_marker("torch"):
            item.add_marker(skip)
