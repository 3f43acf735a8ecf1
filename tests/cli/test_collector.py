"""The console script's own process: heavy imports run with the cyclic collector paused
and are then frozen, and whatever is alive at exit is frozen too (the interpreter's last
collections over torch's objects took 0.4-0.6 s of every exit)."""

import gc

import pytest
from support.cli_runs import run_in_fresh_python

from hatinspect.cli.heavy import heavy_imports


@pytest.fixture
def collector():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


@pytest.mark.parametrize("enabled", [True, False])
def test_heavy_imports_pause_then_freeze_and_restore_the_collector(collector, enabled):
    (gc.enable if enabled else gc.disable)()
    gc.unfreeze()
    with heavy_imports():
        assert not gc.isenabled()
        made_inside = [[index] for index in range(1000)]
    assert gc.isenabled() is enabled
    assert gc.get_freeze_count() >= len(made_inside)
    assert all(gc.is_tracked(item) for item in made_inside)


def test_heavy_imports_restore_the_collector_after_a_failed_import(collector):
    gc.enable()
    with pytest.raises(ModuleNotFoundError), heavy_imports():
        import hatinspect_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_the_console_script_freezes_what_is_alive_at_exit(tmp_path):
    then = "import gc; assert gc.get_freeze_count() > 0, gc.get_freeze_count()"
    done = run_in_fresh_python([["--version"]], then, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
