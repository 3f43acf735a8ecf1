"""Stored masks travel with the module: dtype and device conversions, CUDA when present."""

import pytest
import torch

from hatinspect.backbones import HATMaskMLP, HATMaskResNet18

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def trained_twice(net):
    for task in (0, 1):
        net.setup_task_id(task)
        net.initialise_task_embedding("N01")
        net.store_mask()
    return net


def test_stored_masks_follow_dtype_conversion():
    net = trained_twice(HATMaskMLP(4, [3], 2, "sigmoid")).double()
    assert all(m.dtype == torch.float64 for mask in net.masks.values() for m in mask.values())
    assert net.get_cumulative_mask()["fc/0"].dtype == torch.float64


@pytest.mark.parametrize("device", DEVICES)
def test_hat_resnet_runs_on_device(device):
    torch.manual_seed(0)
    net = trained_twice(HATMaskResNet18(3, 512, "sigmoid")).to(device)
    x = torch.randn(2, 3, 32, 32, device=device)
    feature, mask, hidden = net(x, "test", test_mask=net.masks[1])
    assert feature.device.type == device and feature.shape == (2, 512)
    cumulative = net.get_cumulative_mask()
    assert all(m.device.type == device for m in cumulative.values())
    weight, _ = net.get_layer_measure_parameter_wise(cumulative, "conv2x/0/conv1", "min")
    assert weight.device.type == device
    expected = torch.minimum(
        cumulative["conv2x/0/conv1"][:, None], cumulative["conv1"][None, :]
    ).cpu()
    assert torch.equal(weight[:, :, 1, 1].cpu(), expected)
    net.train()
    feature, _, _ = net(x, "train", s_max=400, batch_idx=2, num_batches=3)
    feature.sum().backward()
    assert net.task_embedding_t["conv1"].weight.grad.device.type == device
