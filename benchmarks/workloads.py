"""What the benchmarks share: the HATMaskResNet152 they measure, and a median timer."""

from __future__ import annotations

import statistics
import time


def hat_resnet152(tasks: int):
    """A HATMaskResNet152 with ``tasks`` stored masks (random embeddings, seed 0)."""
    import torch

    from hatinspect.backbones import HATMaskResNet152

    torch.manual_seed(0)
    backbone = HATMaskResNet152(3, 2048, "sigmoid")
    for task in range(tasks):
        backbone.setup_task_id(task)
        backbone.initialise_task_embedding("N01")
        backbone.store_mask()
    return backbone


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
