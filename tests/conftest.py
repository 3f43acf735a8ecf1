"""Test-session policy for an install without torch (``pip install hatinspect``).

There, every test module is still collected. A module that cannot be imported for want of
torch (or an extra that needs it) is reported as skipped, with its reason, instead of being
left out by name; tests marked ``torch`` are skipped the same way. Every other test runs,
so an inspection path that imports torch fails instead of hiding, and a test that moves to
another file is still counted.
"""

from importlib.util import find_spec

import pytest

HAS_TORCH = find_spec("torch") is not None
TORCH_SIDE = frozenset({"torch", "lightning"})  # packages the light install never has
SKIP_REASON = "needs torch: pip install 'hatinspect[torch]'"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    if not HAS_TORCH and report.failed and _needs_torch(report):
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, f"Skipped: {SKIP_REASON}")
    return report


def _needs_torch(report) -> bool:
    """Whether a module failed to import only because the torch side is missing."""
    text = str(report.longrepr)
    return any(f"No module named '{name}'" in text for name in TORCH_SIDE)


def pytest_collection_modifyitems(config, items):
    if HAS_TORCH:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("torch"):
            item.add_marker(skip)
