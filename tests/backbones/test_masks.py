"""HAT mask maths, each checked against hand-computed or brute-force values."""

import math

import pytest
import torch
from torch import nn

from hatinspect.backbones import (
    MLP,
    HATMaskBackbone,
    HATMaskMLP,
    HATMaskResNet18,
    ResNet18,
    annealed_scale,
)


def tiny_hat(bias=True, activation=nn.ReLU) -> HATMaskMLP:
    torch.manual_seed(0)
    return HATMaskMLP(4, [3], 2, "sigmoid", activation_layer=activation, bias=bias)


def set_embeddings(net: HATMaskBackbone, values: dict[str, list[float]]) -> None:
    with torch.no_grad():
        for name, row in values.items():
            net.task_embedding_t[name].weight.copy_(torch.tensor([row]))


# --- annealing (HAT eq. 3) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_idx", "num_batches", "expected"),
    [
        (1, 5, 1 / 400),  # first batch: s = 1/s_max
        (5, 5, 400.0),  # last batch: s = s_max
        (3, 5, 1 / 400 + (400 - 1 / 400) * 0.5),  # halfway: 200.00125
        (1, 1, 400.0),  # a single batch: s_max, no division by zero
    ],
)
def test_annealed_scale(batch_idx, num_batches, expected):
    assert annealed_scale(400, batch_idx, num_batches) == pytest.approx(expected, rel=1e-12)


def test_train_mask_is_gate_of_scaled_embedding():
    net = tiny_hat()
    set_embeddings(net, {"fc/0": [0.01, -0.02, 0.0], "fc/1": [1.0, -1.0]})
    mask = net.get_mask("train", s_max=400, batch_idx=3, num_batches=5)
    s = 200.00125
    expected = [1 / (1 + math.exp(-s * e)) for e in (0.01, -0.02, 0.0)]
    assert mask["fc/0"].tolist() == pytest.approx(expected, rel=1e-6)
    assert mask["fc/0"].shape == (3,)
    first = net.get_mask("train", s_max=400, batch_idx=1, num_batches=5)
    assert first["fc/1"].tolist() == pytest.approx(
        [1 / (1 + math.exp(-1 / 400)), 1 / (1 + math.exp(1 / 400))], rel=1e-6
    )


def test_a_one_unit_layer_keeps_a_one_element_mask():
    net = HATMaskMLP(3, [2], 1, "sigmoid")
    for stage in ("validation", "train"):
        mask = net.get_mask(stage, s_max=400, batch_idx=1, num_batches=1)
        assert mask["fc/1"].shape == (1,)


def test_validation_mask_uses_s_max():
    net = tiny_hat()
    set_embeddings(net, {"fc/1": [0.001, -0.004]})
    mask = net.get_mask("validation", s_max=400)
    assert mask["fc/1"].tolist() == pytest.approx(
        [1 / (1 + math.exp(-0.4)), 1 / (1 + math.exp(1.6))], rel=1e-6
    )


def test_test_mask_is_returned_as_given():
    net = tiny_hat()
    given = {"fc/0": torch.tensor([1.0, 0.0, 1.0]), "fc/1": torch.tensor([0.0, 1.0])}
    assert net.get_mask("test", test_mask=given) is given


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stage="train", s_max=400, batch_idx=0, num_batches=5),
        dict(stage="train", s_max=400, batch_idx=6, num_batches=5),
        dict(stage="train", s_max=400, batch_idx=1, num_batches=0),
        dict(stage="train", s_max=400, batch_idx=None, num_batches=5),
        dict(stage="train", batch_idx=1, num_batches=5),
        dict(stage="validation"),
        dict(stage="test"),
        dict(stage="predict", s_max=400),
    ],
)
def test_get_mask_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        tiny_hat().get_mask(**kwargs)


# --- binary, cumulative and summative masks ------------------------------------------


def test_binary_mask_is_embedding_sign():
    net = tiny_hat()
    set_embeddings(net, {"fc/0": [0.3, -0.1, 0.0], "fc/1": [-2.0, 5.0]})
    binary = net.te_to_binary_mask()
    assert binary["fc/0"].tolist() == [1.0, 0.0, 0.0]
    assert binary["fc/1"].tolist() == [0.0, 1.0]


def test_cumulative_and_summative_after_several_tasks():
    net = tiny_hat()
    zeros = {"fc/0": [0.0, 0.0, 0.0], "fc/1": [0.0, 0.0]}
    assert {k: v.tolist() for k, v in net.get_cumulative_mask().items()} == zeros
    assert {k: v.tolist() for k, v in net.get_summative_mask().items()} == zeros
    signs = [
        {"fc/0": [1, -1, -1], "fc/1": [1, -1]},
        {"fc/0": [1, 1, -1], "fc/1": [-1, -1]},
        {"fc/0": [-1, 1, -1], "fc/1": [1, -1]},
    ]
    for task, values in enumerate(signs):
        net.setup_task_id(task)
        set_embeddings(net, values)
        net.store_mask()
    assert sorted(net.masks) == [0, 1, 2]
    assert net.masks[1]["fc/0"].tolist() == [1.0, 1.0, 0.0]
    assert net.get_cumulative_mask()["fc/0"].tolist() == [1.0, 1.0, 0.0]
    assert net.get_cumulative_mask()["fc/1"].tolist() == [1.0, 0.0]
    assert net.get_summative_mask()["fc/0"].tolist() == [2.0, 2.0, 0.0]
    assert net.get_summative_mask()["fc/1"].tolist() == [2.0, 0.0]
    assert net.summative_mask_for_previous_tasks["fc/0"].tolist() == [2.0, 2.0, 0.0]
    assert net.cumulative_mask_for_previous_tasks["fc/1"].tolist() == [1.0, 0.0]


def test_store_mask_needs_a_task():
    with pytest.raises(ValueError, match="setup_task_id"):
        tiny_hat().store_mask()


# --- the mask in the forward pass ----------------------------------------------------


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Sigmoid, nn.Tanh])
def test_zero_test_mask_silences_its_units(activation):
    net = tiny_hat(activation=activation)
    mask = {"fc/0": torch.tensor([1.0, 0.0, 1.0]), "fc/1": torch.tensor([0.0, 0.0])}
    feature, _, hidden = net(torch.randn(6, 4), "test", test_mask=mask)
    assert torch.all(hidden["fc/0"][:, 1] == 0)
    assert torch.all(hidden["fc/0"][:, [0, 2]] != 0) or activation is nn.ReLU
    assert torch.all(feature == 0)


@pytest.mark.parametrize("shape", [(1, -1), (-1, 1)], ids=["row", "column"])
def test_a_test_mask_of_another_shape_gates_like_a_flat_one(shape):
    net = tiny_hat()
    flat = {"fc/0": torch.tensor([1.0, 0.0, 1.0]), "fc/1": torch.tensor([0.0, 1.0])}
    shaped = {name: mask.reshape(*shape) for name, mask in flat.items()}
    x = torch.randn(3, 4)  # as many rows as fc/0 has units: a wrong broadcast would pass
    _, _, hidden = net(x, "test", test_mask=shaped)
    _, _, expected = net(x, "test", test_mask=flat)
    assert hidden["fc/0"].shape == (3, 3)
    assert torch.equal(hidden["fc/0"], expected["fc/0"])
    assert torch.all(hidden["fc/0"][:, 1] == 0)


def test_hat_forward_equals_a_hand_written_pass():
    net = tiny_hat()
    x = torch.randn(5, 4)
    out, mask, _ = net(x, "validation", s_max=2.0)
    h = torch.relu(net.fc[0](x)) * torch.sigmoid(2.0 * net.task_embedding_t["fc/0"].weight[0])
    expected = torch.relu(net.fc[1](h)) * torch.sigmoid(
        2.0 * net.task_embedding_t["fc/1"].weight[0]
    )
    torch.testing.assert_close(out, expected)


def test_shortcut_mask_gates_the_projection():
    """Silencing only the shortcut of a downsampling block leaves the main path alone."""
    torch.manual_seed(0)
    net = HATMaskResNet18(3, 512, "sigmoid").eval()
    ones = {n: torch.ones(e.weight.shape[1]) for n, e in net.task_embedding_t.items()}
    without = dict(ones, **{"conv3x/0/shortcut": torch.zeros(128)})
    x = torch.randn(1, 3, 32, 32)
    _, _, full = net(x, "test", test_mask=ones)
    _, _, cut = net(x, "test", test_mask=without)
    assert torch.all(cut["conv3x/0/shortcut"] == 0)
    torch.testing.assert_close(cut["conv3x/0/conv1"], full["conv3x/0/conv1"])
    assert not torch.equal(cut["conv3x/0/conv2"], full["conv3x/0/conv2"])


# --- parameter-wise measures --------------------------------------------------------


def brute_force_measure(net, measure, name, aggregation):
    layer = net.get_layer_by_name(name)
    preceding = net.preceding_layer_name(name)
    pick = min if aggregation == "min" else max
    weight = torch.empty_like(layer.weight)
    for i in range(weight.shape[0]):
        for j in range(weight.shape[1]):
            mine = float(measure[name][i])
            value = mine if preceding is None else pick(mine, float(measure[preceding][j]))
            weight[i, j] = value  # fills the whole kernel of a conv
    return weight


def random_measure(net, seed):
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randint(0, 4, (e.weight.shape[1],), generator=generator).float()
        for name, e in net.task_embedding_t.items()
    }


@pytest.mark.parametrize("aggregation", ["min", "max"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["fc/0", "fc/1"])
def test_measure_on_linear_layers_matches_brute_force(aggregation, bias, name):
    net = tiny_hat(bias=bias)
    measure = random_measure(net, seed=3)
    weight, bias_measure = net.get_layer_measure_parameter_wise(measure, name, aggregation)
    assert weight.shape == net.get_layer_by_name(name).weight.shape
    assert torch.equal(weight, brute_force_measure(net, measure, name, aggregation))
    if bias:
        assert torch.equal(bias_measure, measure[name])
    else:
        assert bias_measure is None


@pytest.mark.parametrize("aggregation", ["min", "max"])
@pytest.mark.parametrize("name", ["conv1", "conv2x/1/conv2", "conv3x/0/shortcut"])
def test_measure_on_conv_layers_matches_brute_force(aggregation, name):
    net = HATMaskResNet18(3, 512, "sigmoid")
    measure = random_measure(net, seed=4)
    weight, bias_measure = net.get_layer_measure_parameter_wise(measure, name, aggregation)
    assert weight.dim() == 4
    assert torch.equal(weight, brute_force_measure(net, measure, name, aggregation))
    assert bias_measure is None  # the HAT ResNets have bias-free convs by default


def test_measure_rejects_an_unknown_aggregation():
    net = tiny_hat()
    with pytest.raises(ValueError, match="aggregation"):
        net.get_layer_measure_parameter_wise(random_measure(net, 0), "fc/0", "mean")


# --- constructor and lookup errors ---------------------------------------------------


def test_unknown_gate_is_rejected():
    with pytest.raises(ValueError, match="gate"):
        HATMaskMLP(4, [3], 2, "tanh")


def test_embedding_initialisation_modes():
    net = HATMaskMLP(4, [512], 512, "sigmoid")
    ranges = {"U01": (0, 1), "U-10": (-1, 0), "U-11": (-1, 1)}
    for mode, (low, high) in ranges.items():
        net.initialise_task_embedding(mode)
        values = torch.cat([e.weight.detach().flatten() for e in net.task_embedding_t.values()])
        assert low <= values.min() and values.max() <= high, mode
        assert values.min() < low + 0.1 and values.max() > high - 0.1, mode
    net.initialise_task_embedding("N01")
    values = torch.cat([e.weight.detach().flatten() for e in net.task_embedding_t.values()])
    assert abs(float(values.mean())) < 0.15 and 0.85 < float(values.std()) < 1.15
    before = values.clone()
    net.initialise_task_embedding("last")
    after = torch.cat([e.weight.detach().flatten() for e in net.task_embedding_t.values()])
    assert torch.equal(before, after)
    with pytest.raises(ValueError, match="initialisation"):
        net.initialise_task_embedding("xavier")


@pytest.mark.parametrize("net", [MLP(4, [3], 2), tiny_hat()], ids=["MLP", "HATMaskMLP"])
def test_unknown_layer_names_are_value_errors(net):
    with pytest.raises(ValueError, match="no layer 'fc/9'"):
        net.get_layer_by_name("fc/9")
    with pytest.raises(ValueError, match="no layer 'fc/9'"):
        net.preceding_layer_name("fc/9")


@pytest.mark.parametrize(
    ("cls", "args", "right"),
    [(ResNet18, (3, 2048), 512), (HATMaskResNet18, (3, 100, "sigmoid"), 512)],
)
def test_wrong_output_dim_names_the_right_one(cls, args, right):
    with pytest.raises(ValueError, match=f"output_dim must be {right}"):
        cls(*args)
