"""The dispatch's list of layouts: one module each, named as the native format names them."""

import pytest

pytest.importorskip("torch")

from hatinspect.importers import dispatch  # noqa: E402
from hatinspect.native import format as fmt  # noqa: E402


def test_every_layout_the_format_names_has_one_module():
    assert sorted(dispatch.BY_NAME) == sorted(fmt.SOURCES)
    assert len(dispatch.LAYOUTS) == len(set(dispatch.LAYOUTS)) == len(fmt.SOURCES)


def test_an_unknown_source_lists_the_layouts_in_the_formats_order(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"")
    with pytest.raises(dispatch.CheckpointError, match=", ".join(fmt.SOURCES)):
        dispatch.import_checkpoint(path, source="nope")


def test_each_layout_detects_only_its_own_keys():
    states = {
        "hat-cl": ({"conv1.masker.attention.0": None}, {}),
        "clarena": ({"backbone.task_embedding_t.fc/0.weight": None}, {}),
        "hatinspect": ({}, {"masks": {}}),
    }
    for name, (state, extra) in states.items():
        found = [layout.NAME for layout in dispatch.LAYOUTS if layout.detects(state, extra)]
        assert found[0] == name
