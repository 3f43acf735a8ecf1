"""The API as an editor and a type checker see it: every export listed, every annotation
resolvable, the package marked as typed."""

from __future__ import annotations

import tomllib
import typing
from importlib.resources import files

from support.cli_runs import modules_left_out, run_in_fresh_python
from support.paths import REPO

import hatinspect

API = ("masks", "capacity", "measure", "overlap", "audit", "info", "compare", "report")
EXPORTS = (*API, "open_checkpoint", "read_tensors", "Checkpoint", "LayerInfo",
           "save_checkpoint", "load_backbone", "convert")  # fmt: skip


def test_dir_lists_every_lazy_export():
    assert set(EXPORTS) <= set(dir(hatinspect))
    assert not {"import_module", "presenters"} & set(dir(hatinspect))


def test_listing_loads_nothing_heavy():
    then = "import hatinspect\ndir(hatinspect)\n" + modules_left_out("torch", "numpy")
    result = run_in_fresh_python([], then)
    assert result.returncode == 0, result.stderr


def test_every_api_function_has_resolvable_hints():
    from hatinspect.analysis.capacity import CapacityReport
    from hatinspect.analysis.runs import Run, RunCapacity

    for name in API:
        hints = typing.get_type_hints(getattr(hatinspect, name))
        assert "return" in hints, name
    hints = typing.get_type_hints(hatinspect.capacity)
    assert hints["return"] == CapacityReport | RunCapacity
    assert Run in typing.get_args(hints["checkpoint"])
    assert hints["figsize"] == tuple[float, float] | None


def test_py_typed_is_shipped():
    assert files("hatinspect").joinpath("py.typed").is_file()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["hatinspect"]


def test_the_notebook_extra_is_in_dev_and_out_of_the_light_install():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"nbclient", "ipykernel", "nbformat"} <= {_name(d) for d in extras["notebook"]}
    assert any("notebook" in d for d in extras["dev"] if d.startswith("hatinspect["))
    assert not {"nbclient", "ipykernel", "nbformat"} & {_name(d) for d in project["dependencies"]}


def _name(requirement: str) -> str:
    return requirement.split(">")[0].split("=")[0].split("[")[0].strip()
