"""Deterministic task sequences for the demo: generated from a seed, nothing downloaded.

The toy tasks are two-class problems over one shared set of Gaussian clusters: every
task labels the same clusters differently (a random half of them class 1), so the
features one task shapes are pulled another way by the next, and an unprotected
network forgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from hatinspect.model.errors import HatinspectError

DATASETS = ("toy", "digits")
TOY_FEATURES = 32
IMAGE_SHAPE = (1, 16, 16)  # (channels, height, width) of the toy images for ResNet backbones
CLUSTERS = 12  # each task labels half of them 1
TRAIN_PER_TASK = 768
TEST_PER_TASK = 384
DIGITS_CLASSES = 10  # the digits 0-9
DIGITS_CLASSES_PER_TASK = 2


@dataclass(frozen=True)
class Task:
    """One classification task; inputs are (N, features) vectors or (N, C, H, W) images."""

    task_id: int  # counted from 1
    num_classes: int
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def make_tasks(dataset: str, num_tasks: int, seed: int, images: bool = False) -> list[Task]:
    """``num_tasks`` tasks of ``dataset`` ("toy" or "digits"), the same for the same seed."""
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
    generator = torch.Generator().manual_seed(seed)
    if dataset == "toy":
        # (clusters, features): smooth random images for ResNets, plain vectors for MLPs
        centres = _image_centres(generator) if images else _vector_centres(generator)
        return [_toy_task(t, centres, generator, images) for t in range(1, num_tasks + 1)]
    if dataset == "digits":
        return _digits_tasks(num_tasks, generator, images)
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def max_tasks(dataset: str) -> int | None:
    """The longest sequence a dataset can make, or None when it has no limit."""
    return DIGITS_CLASSES // DIGITS_CLASSES_PER_TASK if dataset == "digits" else None


def _toy_task(task_id: int, centres: Tensor, generator: torch.Generator, images: bool) -> Task:
    labels = torch.randperm(len(centres), generator=generator) % 2
    train_x, train_y = _sample(centres, labels, TRAIN_PER_TASK, generator)
    test_x, test_y = _sample(centres, labels, TEST_PER_TASK, generator)
    if images:
        train_x, test_x = train_x.view(-1, *IMAGE_SHAPE), test_x.view(-1, *IMAGE_SHAPE)
    return Task(task_id, 2, train_x, train_y, test_x, test_y)


def _vector_centres(generator: torch.Generator) -> Tensor:
    return 1.5 * torch.randn(CLUSTERS, TOY_FEATURES, generator=generator)


def _image_centres(generator: torch.Generator) -> Tensor:
    coarse = torch.randn(CLUSTERS, IMAGE_SHAPE[0], 4, 4, generator=generator)
    smooth = F.interpolate(coarse, size=IMAGE_SHAPE[1:], mode="bilinear", align_corners=False)
    return 1.5 * smooth.flatten(1)


def _sample(centres: Tensor, labels: Tensor, n: int, generator: torch.Generator):
    cluster = torch.randint(len(centres), (n,), generator=generator)
    noise = torch.randn(n, centres.shape[1], generator=generator)
    return centres[cluster] + noise, labels[cluster]


def _digits_tasks(num_tasks: int, generator: torch.Generator, images: bool) -> list[Task]:
    limit = max_tasks("digits")
    if num_tasks > limit:
        raise ValueError(f"the digits dataset makes at most {limit} two-class tasks")
    x, y = _load_digits()
    if images:
        x = x.view(-1, 1, 8, 8)
    tasks = []
    for t in range(1, num_tasks + 1):
        first = DIGITS_CLASSES_PER_TASK * (t - 1)
        chosen = torch.nonzero((y >= first) & (y < first + DIGITS_CLASSES_PER_TASK)).squeeze(1)
        chosen = chosen[torch.randperm(len(chosen), generator=generator)]
        split = len(chosen) * 3 // 4
        train, test = chosen[:split], chosen[split:]
        tasks.append(Task(t, 2, x[train], y[train] - first, x[test], y[test] - first))
    return tasks


def _load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled 8x8 digits as (1797, 64) standardised floats, int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise HatinspectError(
            "the digits dataset needs scikit-learn: pip install 'hatinspect[digits]'"
        ) from None
    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float32)
    # pixels 0..16, some always 0: per-pixel z-scores so the toy's learning rate suits them
    x = (x - x.mean(0)) / (x.std(0) + 1e-3)
    return x, torch.as_tensor(digits.target, dtype=torch.int64)
