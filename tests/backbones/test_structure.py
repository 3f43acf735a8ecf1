"""Structure of every backbone: parameter counts, layer names, data flow, shapes."""

import pytest
import torch
from torch import nn

from hatinspect.backbones import (
    BACKBONES,
    MLP,
    HATMaskBackbone,
    HATMaskMLP,
    build_backbone,
)
from hatinspect.backbones.resnet import HAT_RESNETS, RESNETS

# torchvision's resnet parameter counts minus the 1000-class fc (512/2048 * 1000 + 1000)
TORCHVISION_COUNTS = {
    "ResNet18": 11_689_512 - 513_000,
    "ResNet34": 21_797_672 - 513_000,
    "ResNet50": 25_557_032 - 2_049_000,
    "ResNet101": 44_549_160 - 2_049_000,
    "ResNet152": 60_192_808 - 2_049_000,
}
FEATURES = {18: 512, 34: 512, 50: 2048, 101: 2048, 152: 2048}
_cache: dict[str, nn.Module] = {}


def network(cls):
    """Each network is built once per test session: the deep ones take a second."""
    if cls.__name__ not in _cache:
        torch.manual_seed(0)
        if cls in RESNETS:
            _cache[cls.__name__] = cls(3, FEATURES[cls.depth])
        elif cls in HAT_RESNETS:
            _cache[cls.__name__] = cls(3, FEATURES[cls.depth], "sigmoid")
    return _cache[cls.__name__]


def test_parameter_counts_match_the_stated_figures():
    assert TORCHVISION_COUNTS == {
        "ResNet18": 11_176_512,
        "ResNet34": 21_284_672,
        "ResNet50": 23_508_032,
        "ResNet101": 42_500_160,
        "ResNet152": 58_143_808,
    }


@pytest.mark.parametrize("cls", RESNETS, ids=lambda c: c.__name__)
def test_resnet_parameter_counts_equal_torchvision_without_fc(cls):
    count = sum(p.numel() for p in network(cls).parameters())
    assert count == TORCHVISION_COUNTS[cls.__name__]


@pytest.mark.parametrize("cls", HAT_RESNETS, ids=lambda c: c.__name__)
def test_hat_resnet_masks_every_conv_and_has_no_batch_norm(cls):
    net = network(cls)
    convs = {
        name.replace(".", "/")
        for name, module in net.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    }
    assert set(net.weighted_layer_names) == convs
    assert set(net.task_embedding_t.keys()) == convs
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    for name in net.weighted_layer_names:
        units = net.get_layer_by_name(name).out_channels
        assert net.task_embedding_t[name].weight.shape == (1, units)
    shortcuts = [n for n in net.weighted_layer_names if n.endswith("shortcut")]
    assert len(shortcuts) == 4 if cls.depth >= 50 else len(shortcuts) == 3


@pytest.mark.parametrize("cls", RESNETS + HAT_RESNETS, ids=lambda c: c.__name__)
def test_preceding_layer_is_shape_consistent(cls):
    net = network(cls)
    firsts = [n for n in net.weighted_layer_names if net.preceding_layer_name(n) is None]
    assert firsts == ["conv1"]
    for name in net.weighted_layer_names[1:]:
        preceding = net.preceding_layer_name(name)
        assert preceding in net.weighted_layer_names
        layer, source = net.get_layer_by_name(name), net.get_layer_by_name(preceding)
        assert layer.in_channels == source.out_channels, name


@pytest.mark.parametrize("cls", RESNETS + HAT_RESNETS, ids=lambda c: c.__name__)
def test_shortcut_reads_the_block_input_like_the_first_conv(cls):
    net = network(cls)
    for name in net.weighted_layer_names:
        if name.endswith("/shortcut"):
            first_conv = name.replace("/shortcut", "/conv1")
            assert net.preceding_layer_name(name) == net.preceding_layer_name(first_conv)


@pytest.mark.parametrize("cls", [HAT_RESNETS[0], HAT_RESNETS[2]], ids=lambda c: c.__name__)
def test_preceding_layer_follows_the_real_data_flow(cls):
    """Silence one random unit per layer: each layer's input is then zero exactly at the
    silenced unit of its preceding layer. Sigmoid activations are never zero, so any zero
    channel comes from a mask (which HAT applies after the activation)."""
    net = cls(3, FEATURES[cls.depth], "sigmoid", activation_layer=nn.Sigmoid)
    generator = torch.Generator().manual_seed(1)
    mask, silenced = {}, {}
    for name, embedding in net.task_embedding_t.items():
        units = embedding.weight.shape[1]
        silenced[name] = int(torch.randint(units, (1,), generator=generator))
        mask[name] = torch.ones(units)
        mask[name][silenced[name]] = 0.0
    inputs = {}
    hooks = [
        net.get_layer_by_name(name).register_forward_pre_hook(
            lambda module, args, name=name: inputs.__setitem__(name, args[0])
        )
        for name in net.weighted_layer_names
    ]
    try:
        net(torch.randn(2, 3, 32, 32), "test", test_mask=mask)
    finally:
        for hook in hooks:
            hook.remove()
    for name in net.weighted_layer_names[1:]:
        channel = silenced[net.preceding_layer_name(name)]
        assert torch.all(inputs[name][:, channel] == 0), name
        silent = (inputs[name] == 0).all(dim=3).all(dim=2).all(dim=0)
        assert silent.nonzero().flatten().tolist() == [channel], name


@pytest.mark.parametrize("cls", RESNETS + HAT_RESNETS, ids=lambda c: c.__name__)
def test_forward_shapes(cls):
    net = network(cls)
    x = torch.randn(2, 3, 32, 32)
    if isinstance(net, HATMaskBackbone):
        feature, mask, hidden = net(x, "train", s_max=400, batch_idx=1, num_batches=2)
        assert set(mask) == set(net.weighted_layer_names)
    else:
        feature, hidden = net(x, "train")
    assert feature.shape == (2, FEATURES[cls.depth])
    assert list(hidden) == net.weighted_layer_names or set(hidden) == set(net.weighted_layer_names)
    for name in net.weighted_layer_names:
        assert hidden[name].shape[1] == net.get_layer_by_name(name).out_channels


def test_mlp_layers_and_shapes():
    mlp = MLP(12, [8, 6], 4, batch_normalisation=True, dropout=0.1)
    assert mlp.weighted_layer_names == ["fc/0", "fc/1", "fc/2"]
    assert [mlp.preceding_layer_name(n) for n in mlp.weighted_layer_names] == [
        None,
        "fc/0",
        "fc/1",
    ]
    feature, hidden = mlp(torch.randn(5, 3, 4), "train")
    assert feature.shape == (5, 4)
    assert [h.shape[1] for h in hidden.values()] == [8, 6, 4]
    assert (hidden["fc/1"] >= 0).all()  # after the ReLU


def test_hat_mlp_has_no_batch_norm_and_an_embedding_per_layer():
    net = HATMaskMLP(12, [8, 6], 4, "sigmoid", bias=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in net.modules())
    assert {n: e.weight.shape for n, e in net.task_embedding_t.items()} == {
        "fc/0": (1, 8),
        "fc/1": (1, 6),
        "fc/2": (1, 4),
    }
    feature, mask, hidden = net(torch.randn(5, 12), "validation", s_max=400)
    assert feature.shape == (5, 4)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_config_rebuilds_the_same_architecture(name):
    cls = BACKBONES[name]
    if cls is MLP:
        original = MLP(10, [7], 3, activation_layer=nn.Tanh, batch_normalisation=True)
    elif cls is HATMaskMLP:
        original = HATMaskMLP(10, [7, 5], 3, "sigmoid", activation_layer=nn.GELU, dropout=0.2)
    else:
        original = network(cls)
    rebuilt = build_backbone(name, original.config)
    assert type(rebuilt) is cls
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in original.state_dict().items()
    }
    assert rebuilt.weighted_layer_names == original.weighted_layer_names
    assert repr(rebuilt) == repr(original)
