"""Reading the PyTorch files other HAT implementations write, into one imported form.

``safety`` checks a file before and while it is unpickled; ``payload`` loads it inertly;
``dispatch`` finds its layout, one module each (``original_hat``, ``hat_cl``, ``clarena``,
``saved_models``, ``hatinspect_pt``); ``common`` and ``flow`` hold what they share."""

from hatinspect.importers.common import Imported
from hatinspect.importers.dispatch import import_checkpoint, read_torch_tensors

__all__ = ["Imported", "import_checkpoint", "read_torch_tensors"]
