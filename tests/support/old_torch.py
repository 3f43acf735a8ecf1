"""``torch.save`` as torch 0.2 / 0.3 wrote it, the torch of PackNet's and Piggyback's own
code (their READMEs: ``torch==0.2.0.post3``): the legacy format; each tensor pickled as
``torch._utils._rebuild_tensor(storage, offset, size, stride)`` (their
``_TensorBase.__reduce__``); a Parameter or Variable as its class called on its data, then
the state ``(requires_grad, volatile, backward_hooks)`` (their ``Variable.__reduce_ex__``
at protocol 2); storages of a model trained on the GPU: located ``cuda:0`` and named by
``torch.cuda``'s storage classes."""

from __future__ import annotations

import collections
import io
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch


class OldVariable:
    """A ``torch.autograd.Variable`` attribute of a module, as torch 0.2 pickled one."""

    def __init__(self, data: torch.Tensor, requires_grad: bool = False):
        self.data, self.requires_grad = data, requires_grad

    def __reduce__(self):
        return torch.autograd.Variable, (self.data,), (self.requires_grad, False, {})


def _tensor(self, protocol):
    args = (self.storage(), self.storage_offset(), tuple(self.size()), self.stride())
    return torch._utils._rebuild_tensor, args


def _parameter(self, protocol):
    state = (self.requires_grad, False, collections.OrderedDict())
    return torch.nn.Parameter, (self.data,), state


@contextmanager
def _old_pickling():
    saved = (torch.Tensor.__reduce_ex__, torch.nn.Parameter.__reduce_ex__,
             torch.serialization.location_tag)  # fmt: skip
    torch.Tensor.__reduce_ex__, torch.nn.Parameter.__reduce_ex__ = _tensor, _parameter
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        yield
    finally:
        (torch.Tensor.__reduce_ex__, torch.nn.Parameter.__reduce_ex__,
         torch.serialization.location_tag) = saved  # fmt: skip


def save_as_torch_0_2(obj, path: Path) -> Path:
    buffer = io.BytesIO()
    with _old_pickling(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Tensor.storage(), TypedStorage: torch's deprecations
        torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    # protocol 2 names a global as "c<module>\n<name>\n": the GPU's storage classes
    data = re.sub(rb"ctorch\n(\w+Storage)\n", rb"ctorch.cuda\n\1\n", buffer.getvalue())
    path.write_bytes(data)
    return path
