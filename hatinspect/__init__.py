"""hatinspect: look inside HAT / AdaHAT continual-learning networks.

Importing the package is cheap: everything is loaded on first use. One function per
command (``masks``, ``capacity``, ``measure``, ``overlap``, ``audit``, ``info``, ``compare``,
``report``, ``trajectory``) returns the result the command renders, which shows itself in a
notebook;
``open_checkpoint`` reads native files without torch; the torch-side helpers
(``save_checkpoint``, ``load_backbone``, ``convert``) need the torch extra.
"""

from importlib import import_module

from hatinspect.model import presenters
from hatinspect.model.errors import CheckpointError, HatinspectError

__version__ = "0.1.0"

_API = (
    "masks", "capacity", "measure", "overlap", "audit", "info", "compare", "report", "trajectory",
)  # fmt: skip
_LAZY_EXPORTS = {
    **dict.fromkeys(_API, "hatinspect.api"),
    "open_checkpoint": "hatinspect.checkpoints",
    "read_tensors": "hatinspect.checkpoints",
    "Checkpoint": "hatinspect.model.checkpoint",
    "LayerInfo": "hatinspect.model.checkpoint",
    "save_checkpoint": "hatinspect.torch_io.save",
    "load_backbone": "hatinspect.torch_io.load",
    "convert": "hatinspect.torch_io.convert",
}

__all__ = ["CheckpointError", "HatinspectError", "__version__", *_LAZY_EXPORTS]


def __getattr__(name: str):
    if name in _LAZY_EXPORTS:
        module = import_module(_LAZY_EXPORTS[name])
        if name in _API:
            module.bind_annotations()  # for typing.get_type_hints; loads numpy, as a call would
        return getattr(module, name)
    raise AttributeError(f"module 'hatinspect' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, the lazy ones too (tab completion finds every command)."""
    return sorted({*(name for name in globals() if name.startswith("__")), *__all__})


# results show themselves (repr, notebooks, rich) through views the model cannot import
presenters.load_with(lambda: import_module("hatinspect.render.present"))
