"""A live backbone inspected as it is now: saved, with every stored mask, to a private
temporary file that lives as long as the ``Checkpoint`` read from it."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from torch import nn

from hatinspect.model.checkpoint import Checkpoint
from hatinspect.model.errors import CheckpointError
from hatinspect.native.reader import open_native
from hatinspect.torch_io.save import save_checkpoint


def live_checkpoint(backbone: nn.Module) -> Checkpoint:
    """``backbone`` (any with hatinspect's layer API, e.g. a ``HATMaskMLP``) as a
    ``Checkpoint``: its weights and stored masks now, read as a saved file would be."""
    if not hasattr(backbone, "weighted_layer_names"):
        raise CheckpointError(
            f"a {type(backbone).__name__} is not a backbone hatinspect can inspect "
            "(it has no weighted_layer_names: build it on hatinspect.backbones)"
        )
    folder = Path(tempfile.mkdtemp(prefix="hatinspect-live-"))
    try:
        path = save_checkpoint(folder / f"{type(backbone).__name__}.safetensors", backbone)
        checkpoint = open_native(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # the audit reads the weights back from the file: it goes when the checkpoint does
    weakref.finalize(checkpoint, shutil.rmtree, folder, ignore_errors=True)
    return checkpoint
