"""One HAT training step against the paper's rules written out plainly: the engine works
out the free units once per task, sums the regulariser as one dot product and compensates
in place, and every gradient it hands the optimiser must be the textbook one, bit for bit."""

import math

import pytest
import torch
from torch.nn import functional as F

from hatinspect.backbones import HATMaskMLP
from hatinspect.backbones.base import annealed_scale
from hatinspect.training import hat
from hatinspect.training.engine import TrainConfig, make_step, step_loss
from hatinspect.training.heads import TaskHeads

S_MAX, FACTOR = 400.0, 0.75


def network_after_one_task(seed: int) -> tuple[HATMaskMLP, TaskHeads]:
    torch.manual_seed(seed)
    backbone = HATMaskMLP(6, [5, 4], 3, gate="sigmoid")
    backbone.setup_task_id(1)
    backbone.store_mask()  # task 1: units where its random embedding is positive
    backbone.setup_task_id(2)
    heads = TaskHeads(backbone.output_dim)
    heads.add_task(2, 2)
    return backbone, heads


def textbook_gradients(backbone, heads, x, y, batch, batches) -> list[torch.Tensor]:
    """Eq. 2, 5 and the compensation as the paper states them, layer by layer."""
    s = annealed_scale(S_MAX, batch, batches)
    cumulative = backbone.get_cumulative_mask()
    masks = {n: torch.sigmoid(s * e.weight[0]) for n, e in backbone.task_embedding_t.items()}
    h = x
    for fc, name in zip(backbone.fc, backbone.weighted_layer_names, strict=True):
        h = torch.relu(fc(h)) * masks[name]
    used = sum((masks[n] * (1 - cumulative[n])).sum() for n in masks)
    free = sum((1 - cumulative[n]).sum() for n in masks)
    loss = F.cross_entropy(heads(h, 2), y) + FACTOR * used / free
    loss.backward()
    for fc, name in zip(backbone.fc, backbone.weighted_layer_names, strict=True):
        preceding = backbone.preceding_layer_name(name)
        rows = cumulative[name].reshape(-1, 1)
        cols = cumulative[preceding].reshape(1, -1) if preceding else torch.ones(1, 1)
        fc.weight.grad *= 1 - torch.minimum(rows, cols)
        fc.bias.grad *= 1 - cumulative[name]
    for embedding in backbone.task_embedding_t.values():
        e = embedding.weight.detach()
        numerator = torch.cosh(torch.clamp(s * e, -50, 50)) + 1
        embedding.weight.grad *= S_MAX * numerator / (s * (torch.cosh(e) + 1))
    return [p.grad.clone() for p in (*backbone.parameters(), *heads.parameters())]


def engine_gradients(step, backbone, heads, x, y, batch, batches) -> list[torch.Tensor]:
    loss, _ = step_loss(step, heads, 2, x, y, batch, batches)
    loss.backward()
    step.adjust_gradients()
    return [p.grad.clone() for p in (*backbone.parameters(), *heads.parameters())]


@pytest.mark.parametrize(("seed", "batch"), [(0, 1), (1, 5), (2, 12)])
def test_a_step_gives_the_textbook_gradients_bit_for_bit(seed, batch):
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(8) % 2
    backbone, heads = network_after_one_task(seed)
    # the task's rules; this draws the task's embeddings, which the reference then copies
    step = make_step(backbone, TrainConfig(s_max=S_MAX, sparsity_factor=FACTOR))
    reference, reference_heads = network_after_one_task(seed)
    reference.load_state_dict(backbone.state_dict())
    reference_heads.load_state_dict(heads.state_dict())
    assert reference.masks[1] and all(
        torch.equal(reference.masks[1][n], m) for n, m in backbone.masks[1].items()
    )
    ours = engine_gradients(step, backbone, heads, x, y, batch, 12)
    textbook = textbook_gradients(reference, reference_heads, x, y, batch, 12)
    assert len(ours) == len(textbook) == 11
    for ours_grad, textbook_grad in zip(ours, textbook, strict=True):
        assert torch.equal(ours_grad, textbook_grad)


def test_regulariser_is_equation_five_by_hand():
    cumulative = {"a": torch.tensor([1.0, 0.0, 0.0]), "b": torch.tensor([0.0, 1.0])}
    mask = {"a": torch.tensor([0.9, 0.2, 0.5]), "b": torch.tensor([0.25, 1.0])}
    # free units: a[1], a[2], b[0]
    expected = FACTOR * (0.2 + 0.5 + 0.25) / 3
    regulariser = hat.SparsityRegulariser(cumulative, FACTOR)
    assert regulariser(mask).item() == pytest.approx(expected, rel=1e-6)
    for values in mask.values():
        values.requires_grad_(True)
    regulariser(mask).backward()
    assert mask["a"].grad.tolist() == pytest.approx([0.0, FACTOR / 3, FACTOR / 3])
    assert mask["b"].grad.tolist() == pytest.approx([FACTOR / 3, 0.0])


def test_in_place_compensation_factor_matches_the_formula_in_float32():
    e = torch.linspace(-6, 6, 101)
    for s in (1 / S_MAX, 0.7, 33.0, S_MAX):
        formula = S_MAX * (torch.cosh(torch.clamp(s * e, -50, 50)) + 1) / (s * (torch.cosh(e) + 1))
        assert torch.equal(hat.embedding_gradient_factor(e, s, S_MAX), formula)
        assert not math.isinf(formula.max().item())
