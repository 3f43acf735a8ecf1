"""Seed files for the fuzzer: one small valid file of every layout the reader accepts."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the factories

from fuzz_mutations import _join, _split  # noqa: E402
from support.checkpoint_factories import hat_mlp, original_hat_state  # noqa: E402
from support.paths import FIXTURES  # noqa: E402

# peers' own files, when committed under tests/fixtures (read if present)
FINDINGS = "fuzz-findings"  # below FIXTURES: mutated files kept as regression cases
FIXTURE_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".pkz")
MAX_FIXTURE = 256 * 1024  # small ones only: every case is a mutated copy
# a WSN authors' run: a case of one of its files is written beside the run's other needed
# file, unchanged, under the case's own prefix (fuzz_harness.write_cases)
WSN_RUN = "peers/wsn-authors/results2/wsn_pmnist/wsn_pmnist_SEED_1_LR_0.01_SPARSITY_0.5"
WSN_PARTS = (".pertask.npy", ".ptmodel")


def companions() -> dict[str, dict[str, bytes]]:
    """A case's suffix -> the files written beside it (suffix -> bytes)."""
    files = {suffix: FIXTURES / (WSN_RUN + suffix) for suffix in WSN_PARTS}
    if not all(path.is_file() for path in files.values()):
        return {}
    data = {suffix: path.read_bytes() for suffix, path in files.items()}
    return {mine: {s: d for s, d in data.items() if s != mine} for mine in WSN_PARTS}


def build_seeds(folder: Path) -> dict[str, Path]:
    """Name -> path of each seed, written into ``folder``."""
    import torch

    import hatinspect

    folder.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, Path] = {}

    def save(name: str, obj, **kwargs) -> Path:
        seeds[name] = folder / name
        torch.save(obj, seeds[name], **kwargs)
        return seeds[name]

    backbone = hat_mlp(tasks=(0, 1))
    seeds["native-mlp.safetensors"] = hatinspect.save_checkpoint(
        folder / "native-mlp.safetensors", backbone, metadata={"s_max": 400, "note": "seed"}
    )
    seeds["native-bf16.safetensors"] = hatinspect.save_checkpoint(
        folder / "native-bf16.safetensors", hat_mlp(tasks=(0, 3)).to(torch.bfloat16)
    )
    original = save("original-hat.pt", original_hat_state(n_tasks=2)[0])
    save("original-hat-legacy.pt", original_hat_state(n_tasks=2)[0],
         _use_new_zipfile_serialization=False)  # fmt: skip
    save("hat-cl.pt", _hat_cl_state())
    save("clarena.ckpt", {"state_dict": _clarena_state(), "epoch": 4})
    masks = {t: {k: v.clone() for k, v in m.items()} for t, m in backbone.masks.items()}
    save(
        "hatinspect-full.pt",
        {
            "state_dict": backbone.state_dict(),
            "masks": masks,
            "backbone": type(backbone).__name__,
            "config": backbone.config,
            "task_id": 1,
            "heads": {"0.weight": torch.ones(2, 5)},
        },
    )
    save("hatinspect-state.pt", backbone.state_dict())
    # whole pickled networks in PackNet's and Piggyback's dicts (their own files are seeds
    # too, from tests/fixtures/peers): the legacy format, unpickled inertly
    save("original-packnet-legacy.pt", _packnet_payload(), _use_new_zipfile_serialization=False)
    save("piggyback-packed.pt", _piggyback_packed())
    # SupSup's dict (args a Namespace: a whole object), and one of plain containers with
    # DataParallel's prefix (their own files are seeds too, from tests/fixtures/peers)
    save("supsup-legacy.pt", _supsup_payload(), _use_new_zipfile_serialization=False)
    plain = _supsup_payload()
    state = {"module." + k: v for k, v in plain["state_dict"].items()}
    save("supsup-state.pt", {"state_dict": state, "args": vars(plain["args"])})
    for name, src in (("native-conv.safetensors", original), ("native-hatcl.safetensors",
                                                             seeds["hat-cl.pt"])):  # fmt: skip
        seeds[name] = hatinspect.convert(src, folder / name)
    norms = FIXTURES / "hat-cl" / "task_indexed_bn_after_task_1.pt"  # per-task batch norms
    if norms.is_file():
        seeds["native-norms.safetensors"] = hatinspect.convert(
            norms, folder / "native-norms.safetensors"
        )
    for name, peer in (
        ("native-packnet.safetensors", "avalanche/packnet_after_exp_2.pt"),
        ("native-wsn.safetensors", "clarena-main/wsn_mlp/cl_model.pth"),
    ):
        if (FIXTURES / "peers" / peer).is_file():  # masks of weights, packed (version 2)
            seeds[name] = hatinspect.convert(FIXTURES / "peers" / peer, folder / name)
    seeds["trajectory-task-2.safetensors"] = _trajectory(folder / "trajectory-task-2.safetensors")
    for name, path in seeds.items():  # safetensors writes its header in varying order
        if name.endswith(".safetensors"):
            path.write_bytes(_join(*_split(path.read_bytes()), sort=True))
    for suffix in WSN_PARTS if companions() else ():
        seeds["wsn-run" + suffix] = FIXTURES / (WSN_RUN + suffix)
    for fixture in sorted(FIXTURES.rglob("*")) if FIXTURES.is_dir() else ():
        if FINDINGS in fixture.parts:  # the fuzzer's own finds: each is refused
            continue
        if fixture.suffix in FIXTURE_SUFFIXES and fixture.stat().st_size <= MAX_FIXTURE:
            # the folder names too: CLArena names every run's last model cl_model.pth
            folders = fixture.relative_to(FIXTURES).parts[1:-1]
            seeds["-".join(("fixture", *folders, fixture.name))] = fixture
    return seeds


def _trajectory(path: Path) -> Path:
    """A recorded trajectory of a small HAT MLP's task: three records of three layers."""
    import torch

    from hatinspect.native.trajectory_file import write_trajectory
    from hatinspect.training.trajectory import TrajectoryRecorder

    torch.manual_seed(0)
    backbone = hat_mlp(tasks=(0, 1))
    recorder = TrajectoryRecorder(backbone, s_max=4.0, every=1)
    recorder.start(2, step=0)
    for epoch in (0, 1):
        with torch.no_grad():
            for embedding in backbone.task_embedding_t.values():
                embedding.weight.add_(torch.randn_like(embedding.weight))
        recorder.record(epoch, step=epoch + 1)
    return write_trajectory(path, recorder.finish(1, step=2), s_max=4.0)


def _hat_cl_state() -> dict:
    """HAT-CL's keys: ``<module>.masker.attention.<t>`` and ``_task_trained`` flags (the
    peers' own HAT-CL ResNet file is a seed too, from tests/fixtures)."""
    import torch

    g = torch.Generator().manual_seed(0)
    state = {}
    for module, shape in {"features.0": (4, 3, 3, 3), "classifier.0": (5, 16)}.items():
        state[f"{module}.weight"] = torch.randn(shape, generator=g)
        state[f"{module}.bias"] = torch.randn(shape[0], generator=g)
        for t in range(3):
            state[f"{module}.masker.attention.{t}"] = torch.randn(shape[0], generator=g)
        state[f"{module}.masker._task_trained"] = torch.tensor([True, False, True])
    return state


def _clarena_state() -> dict:
    """A CLArena HAT MLP's Lightning state_dict: one task's embeddings, heads per task."""
    import torch

    g = torch.Generator().manual_seed(0)
    state = {}
    for i, shape in enumerate([(5, 3), (4, 5)]):
        state[f"backbone.fc.{i}.weight"] = torch.randn(shape, generator=g)
        state[f"backbone.task_embedding_t.fc/{i}.weight"] = torch.randn(1, shape[0], generator=g)
    for t in (1, 2):
        state[f"heads.heads.{t}.weight"] = torch.randn(2, 4, generator=g)
    return state


def _packnet_payload() -> dict:
    """PackNet's main.py dict: ``previous_masks`` by index of ``model.shared.modules()``."""
    import argparse

    import torch

    model = torch.nn.Module()
    model.shared = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.ReLU(),
                                       torch.nn.Linear(3, 2))  # fmt: skip
    owners = torch.tensor([0, 1, 2], dtype=torch.uint8)
    return {
        "args": argparse.Namespace(dataset="b", mode="prune", prune_perc_per_layer=0.5),
        "dataset2idx": {"a": 1, "b": 2},
        "previous_masks": {
            1: owners.repeat(2).reshape(3, 2, 1, 1),
            3: owners.repeat(2)[:6].reshape(2, 3),
        },
        "model": model,
    }


def _piggyback_packed() -> dict:
    """Piggyback's pack.py dict: ``dataset2masks`` (1 used, 255 the ternarizer's -1)."""
    import torch

    mask = torch.tensor([0, 1, 255, 1, 0, 1], dtype=torch.uint8).reshape(3, 2, 1, 1)
    return {"dataset2masks": {"a": {1: mask}, "b": {1: 1 - mask.clamp(max=1)}},
            "dataset2classifiers": {}}  # fmt: skip


def _supsup_payload() -> dict:
    """SupSup's main.py dict: ``<module>.scores.<t>`` of the weight's shape, two tasks."""
    import argparse

    import torch

    g = torch.Generator().manual_seed(2)
    state = {}
    for module, shape in (("linear.0", (4, 3, 1, 1)), ("linear.2", (2, 4, 1, 1))):
        state[f"{module}.weight"] = torch.randn(shape, generator=g)
        for task in range(2):
            state[f"{module}.scores.{task}"] = torch.randn(shape, generator=g)
    args = argparse.Namespace(conv_type="MultitaskMaskConv", sparsity=0.5, num_tasks=2)
    return {"epoch": 1, "arch": "Tiny", "state_dict": state, "args": args}
