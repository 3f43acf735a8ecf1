"""Run folders for the report tests, from plain numpy: plain, ResNet-shaped and hostile."""

import numpy as np

from support.inspect_checkpoints import layer, make_checkpoint, random_masks, write_native

HOSTILE = {
    "script": "<script>document.title='pwned'</script>",
    "attribute": '"><img src=x onerror="document.title=\'pwned\'">',
    "markdown": "| a | [link](javascript:alert(1)) `code` *b* _c_",
}
HOSTILE_NET = (
    layer(HOSTILE["script"], (4, 5)),
    layer(HOSTILE["attribute"], (3, 4), HOSTILE["script"]),
)


def resnet18_layers():
    """Weighted layers shaped like HATMaskResNet18 (basic blocks [2, 2, 2, 2])."""
    layers = [layer("conv1", (64, 3, 3, 3), bias=False)]
    channels, previous = 64, "conv1"
    for stage, width in enumerate((64, 128, 256, 512), start=2):
        for block in range(2):
            prefix = f"conv{stage}x/{block}"
            specs = [
                ("conv1", (width, channels, 3, 3), previous),
                ("conv2", (width, width, 3, 3), f"{prefix}/conv1"),
            ]
            if channels != width:
                specs.append(("shortcut", (width, channels, 1, 1), previous))
            layers += [layer(f"{prefix}/{n}", s, p, bias=False) for n, s, p in specs]
            channels, previous = width, f"{prefix}/conv2"
    return tuple(layers)


RESNET18 = resnet18_layers()


def write_run(folder, layers, tasks=(1, 2, 3), seed=0, metadata=None):
    folder.mkdir()
    masks = random_masks(layers, tasks, seed=seed)
    rng = np.random.default_rng(seed)
    weights = {}
    for lay in layers:
        weights[lay.weight_key] = rng.standard_normal(lay.weight_shape).astype(np.float32)
        if lay.has_bias:
            weights[lay.bias_key] = rng.standard_normal(lay.units).astype(np.float32)
    for t in range(1, len(tasks) + 1):  # HAT's promise kept: the same weights throughout
        stored = {task: masks[task] for task in tasks[:t]}
        path = folder / f"after-task-{tasks[t - 1]}.safetensors"
        write_native(path, make_checkpoint(layers, stored), weights, metadata=metadata)
    return folder


def hostile_run(folder):
    metadata = {HOSTILE["script"]: HOSTILE["attribute"], "algorithm": HOSTILE["markdown"]}
    return write_run(folder, HOSTILE_NET, metadata=metadata)
