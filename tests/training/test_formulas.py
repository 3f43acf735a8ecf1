"""HAT and AdaHAT training rules against values worked out by hand on a 2-3-2 network.

Stored masks (3 tasks):            fc/0 (3 units)   fc/1 (2 units)
  task 1                            1 0 1            0 1
  task 2                            1 0 0            0 1
  task 3                            0 0 0            0 1
  cumulative (max)                  1 0 1            0 1
  summative (sum)                   2 0 1            0 3
"""

import math

import pytest
import torch

from hatinspect.backbones import HATMaskMLP
from hatinspect.training import adahat, hat

CURRENT = {"fc/0": torch.tensor([0.5, 0.8, 0.3]), "fc/1": torch.tensor([0.6, 0.9])}


@pytest.fixture
def network():
    torch.manual_seed(0)
    backbone = HATMaskMLP(2, [3], 2, gate="sigmoid")
    rows = {"fc/0": ([1, 0, 1], [1, 0, 0], [0, 0, 0]), "fc/1": ([0, 1], [0, 1], [0, 1])}
    backbone.restore_masks(
        {
            t + 1: {name: torch.tensor(rows[name][t], dtype=torch.float32) for name in rows}
            for t in range(3)
        }
    )
    return backbone


def gradients_of_ones(backbone):
    for parameter in backbone.parameters():
        parameter.grad = torch.ones_like(parameter)


def test_hat_conditioning_is_one_minus_min_of_cumulative(network):
    gradients_of_ones(network)
    hat.HATConditioning(network)(CURRENT)
    # first layer: 1 - cum[i] per row; then 1 - min(cum_fc1[i], cum_fc0[j])
    assert network.fc[0].weight.grad.tolist() == [[0, 0], [1, 1], [0, 0]]
    assert network.fc[0].bias.grad.tolist() == [0, 1, 0]
    assert network.fc[1].weight.grad.tolist() == [[1, 1, 1], [0, 1, 0]]
    assert network.fc[1].bias.grad.tolist() == [1, 0]


def test_conditioning_zeroes_exactly_whatever_the_gradient(network):
    for parameter in network.parameters():
        parameter.grad = torch.randn_like(parameter) * 1e30
    hat.HATConditioning(network)(CURRENT)
    assert network.fc[1].weight.grad[1, 0].item() == 0.0
    assert network.fc[1].weight.grad[1, 2].item() == 0.0


def test_sparsity_regulariser(network):
    cumulative = network.get_cumulative_mask()
    # free units: fc/0 unit 1 (a = 0.8), fc/1 unit 0 (a = 0.6): 0.75 * 1.4 / 2
    value = hat.sparsity_regularisation(CURRENT, cumulative)
    assert value.item() == pytest.approx(0.525)
    assert hat.sparsity_regularisation(CURRENT, cumulative, factor=1.0).item() == pytest.approx(0.7)


def test_sparsity_regulariser_before_any_task_and_when_full():
    mask = {"a": torch.tensor([0.5, 1.0]), "b": torch.tensor([0.0])}
    zeros = {"a": torch.zeros(2), "b": torch.zeros(1)}
    ones = {"a": torch.ones(2), "b": torch.ones(1)}
    assert hat.sparsity_regularisation(mask, zeros).item() == pytest.approx(0.75 * 1.5 / 3)
    assert hat.sparsity_regularisation(mask, ones).item() == 0.0


@pytest.mark.parametrize(
    ("e", "s", "expected_cosh_argument"),
    [(0.5, 2.0, 1.0), (-0.3, 7.0, -2.1), (1.0, 100.0, 50.0), (-2.0, 400.0, -50.0)],
)
def test_embedding_gradient_factor(e, s, expected_cosh_argument):
    s_max = 400.0
    expected = s_max * (math.cosh(expected_cosh_argument) + 1) / (s * (math.cosh(e) + 1))
    factor = hat.embedding_gradient_factor(torch.tensor([e], dtype=torch.float64), s, s_max)
    assert factor.item() == pytest.approx(expected, rel=1e-12)


def test_compensation_multiplies_embedding_gradients(network):
    embedding = network.task_embedding_t["fc/1"].weight
    with torch.no_grad():
        embedding.copy_(torch.tensor([[0.5, -1.0]]))
    embedding.grad = torch.tensor([[2.0, 3.0]])
    hat.compensate_embedding_gradients(network, s=2.0, s_max=400.0)
    by_hand = [
        2.0 * 400 * (math.cosh(1.0) + 1) / (2 * (math.cosh(0.5) + 1)),
        3.0 * 400 * (math.cosh(-2.0) + 1) / (2 * (math.cosh(-1.0) + 1)),
    ]
    assert embedding.grad[0].tolist() == pytest.approx(by_hand, rel=1e-6)


def test_embeddings_clamped_to_six(network):
    embedding = network.task_embedding_t["fc/0"].weight
    with torch.no_grad():
        embedding.copy_(torch.tensor([[-10.0, 3.0, 7.0]]))
    hat.clamp_embeddings(network)
    assert embedding.tolist() == [[-6.0, 3.0, 6.0]]


def test_network_sparsity_per_layer(network):
    sparsity = adahat.network_sparsity(CURRENT, network.get_cumulative_mask())
    assert sparsity == pytest.approx({"fc/0": 0.8, "fc/1": 0.6})


def test_adahat_adjustment_rates(network):
    gradients_of_ones(network)
    adahat.AdaHATAdjustment(network, alpha=0.1, epsilon=0.1)(CURRENT)
    r0, r1 = 0.1 / (0.8 + 0.1), 0.1 / (0.6 + 0.1)  # alpha / (R_l + eps)

    def rate(r, n):
        return r / (n + r)

    # first layer: summative of the row's unit; then min(sum_fc1[i], sum_fc0[j])
    row0, row1, row2 = rate(r0, 2), rate(r0, 0), rate(r0, 1)
    assert network.fc[0].weight.grad.flatten().tolist() == pytest.approx(
        [row0, row0, row1, row1, row2, row2]
    )
    assert network.fc[0].bias.grad.tolist() == pytest.approx([row0, row1, row2])
    assert network.fc[1].weight.grad.flatten().tolist() == pytest.approx(
        [1, 1, 1, rate(r1, 2), 1, rate(r1, 1)]
    )
    assert network.fc[1].bias.grad.tolist() == pytest.approx([1, rate(r1, 3)])


def test_adahat_leaves_unused_parameters_free_and_damps_shared_ones():
    summative = torch.tensor([0.0, 1.0, 4.0])
    rates = adahat.adjustment_rate(summative, sparsity=0.2, alpha=0.1, epsilon=0.1)
    r = 0.1 / 0.3
    assert rates.tolist() == pytest.approx([1.0, r / (1 + r), r / (4 + r)])
