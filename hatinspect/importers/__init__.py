"""Reading the PyTorch files other HAT implementations write, into one imported form."""

from hatinspect.importers.hub import Imported, import_checkpoint, read_torch_tensors

__all__ = ["Imported", "import_checkpoint", "read_torch_tensors"]
