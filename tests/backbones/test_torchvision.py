"""The plain ResNets against torchvision's, weight for weight (where torchvision is installed)."""

import re

import pytest
import torch

from hatinspect.backbones.resnet import RESNETS

models = pytest.importorskip("torchvision.models")

FEATURES = {18: 512, 34: 512, 50: 2048, 101: 2048, 152: 2048}


def hatinspect_key(torchvision_key: str) -> str:
    """``layer2.0.downsample.1.weight`` -> ``conv3x.0.shortcut_bn.weight``."""
    key = re.sub(r"^layer(\d)", lambda m: f"conv{int(m.group(1)) + 1}x", torchvision_key)
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut_bn")


@pytest.mark.parametrize("cls", RESNETS, ids=lambda c: c.__name__)
def test_same_weights_give_the_same_features(cls):
    torch.manual_seed(0)
    reference = getattr(models, f"resnet{cls.depth}")(weights=None).eval()
    reference.fc = torch.nn.Identity()
    ours = cls(3, FEATURES[cls.depth]).eval()
    state = {hatinspect_key(k): v for k, v in reference.state_dict().items()}
    ours.load_state_dict(state)  # strict: every key maps, none is left over
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, "test")[0], reference(x))
