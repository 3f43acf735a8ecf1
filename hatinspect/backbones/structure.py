"""Building a backbone for its structure only: on the meta device, initialisers skipped.

On the meta device an initialiser (``nn.Embedding``'s ``normal_``, for one) runs through
torch's Python reference kernels, whose first call imports ``torch._dynamo`` (about a
second). A layout needs no values, so the initialisers are skipped instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

# In-place fills an initialiser ends in; each returns its tensor.
_FILLS = frozenset(
    getattr(torch.Tensor, name)
    for name in (
        "normal_",
        "uniform_",
        "fill_",
        "zero_",
        "copy_",
        "bernoulli_",
        "exponential_",
        "geometric_",
        "log_normal_",
        "cauchy_",
        "random_",
        "clamp_",
        "mul_",
        "add_",
        "sub_",
        "div_",
        "erfinv_",
    )
)


class _SkipInitialisers(TorchFunctionMode):
    """Every ``torch.nn.init`` function, and the in-place fills, leave their tensor as is."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init" or func in _FILLS:
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **(kwargs or {}))


@contextmanager
def structure_only() -> Iterator[None]:
    """Modules built inside have meta tensors (no memory) and skip their initialisers."""
    with torch.device("meta"), _SkipInitialisers():
        yield
