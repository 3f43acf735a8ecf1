"""Paths that never compile keep torch._dynamo out: convert and a train-demo run."""

import torch
from support.checkpoint_factories import hat_mlp, original_hat_state, torch_save
from support.cli_runs import modules_left_out, run_in_fresh_python

from hatinspect.backbones import HATMaskMLP, HATMaskResNet18
from hatinspect.backbones.layers import describe_layers
from hatinspect.backbones.structure import structure_only
from hatinspect.training.engine import PlainSGD


def test_convert_and_train_demo_never_import_dynamo(tmp_path):
    backbone = hat_mlp(tasks=(0, 1))
    bundle = {
        "state_dict": backbone.state_dict(),
        "masks": backbone.masks,
        "backbone": type(backbone).__name__,
        "config": backbone.config,
    }
    torch_save(tmp_path / "bundle.pt", bundle)
    torch_save(tmp_path / "hat.pt", original_hat_state(n_tasks=2)[0])
    commands = [
        ["convert", "bundle.pt", "bundle.safetensors"],
        ["convert", "hat.pt", "hat.safetensors"],
        ["train-demo", "-n", "1", "-e", "1", "-o", "demo", "-f", "json"],
    ]
    done = run_in_fresh_python(commands, modules_left_out("torch._dynamo"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bundle.safetensors").exists() and (tmp_path / "demo").is_dir()


def test_structure_only_builds_the_same_layers():
    for build in (
        lambda: HATMaskMLP(6, [5, 4], 3, "sigmoid"),
        lambda: HATMaskResNet18(3, 512, "sigmoid"),
    ):
        with structure_only():
            meta = build()
        assert next(meta.parameters()).device.type == "meta"
        assert describe_layers(meta) == describe_layers(build())


def test_plain_sgd_makes_torch_sgd_updates_bit_for_bit():
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))]
    models.append(
        torch.nn.Sequential(*[torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)])
    )
    models[1].load_state_dict(models[0].state_dict())
    ours = PlainSGD(models[0].parameters(), lr=0.05)
    theirs = torch.optim.SGD(models[1].parameters(), lr=0.05, momentum=0.0, weight_decay=0.0)
    for step in range(5):
        x = torch.randn(8, 4)
        for model, optimiser in zip(models, (ours, theirs), strict=True):
            optimiser.zero_grad()
            model(x).pow(2).sum().backward()
            optimiser.step()
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
            assert torch.equal(a, b), step
