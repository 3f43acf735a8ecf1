"""HATMaskTrajectory on a real Trainer: the files it writes (gates recomputed by hand from
the checkpointed embeddings) and what the real TensorBoard and CSV loggers receive."""

import csv
import io

import numpy as np
import pytest
import torch
from safetensors import safe_open

pytest.importorskip("lightning")

from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: E402
from support.lightning_modules import CLArenaShapedHAT, SpanningHAT, loader  # noqa: E402

from hatinspect.backbones import HATMaskMLP  # noqa: E402
from hatinspect.lightning import HATMaskCheckpoint, HATMaskTrajectory, HATModule  # noqa: E402
from hatinspect.model.errors import CheckpointError  # noqa: E402
from hatinspect.native.trajectory_file import read_trajectories, read_trajectory  # noqa: E402

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
ALONE = dict(logger=False, enable_checkpointing=False, **QUIET)  # no file but the trajectory
S_MAX = 400.0
LAYERS = ("fc/0", "fc/1", "fc/2")


def by_hand(embedding: np.ndarray, s_max: float = S_MAX) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(400 e) of a negative e: inf, the gate 0
        return 1.0 / (1.0 + np.exp(-s_max * embedding.astype(np.float64)))


def embeddings(path) -> dict[str, np.ndarray]:
    """Layer -> the (units,) embedding the checkpoint at ``path`` holds."""
    with safe_open(path, framework="numpy") as f:
        return {
            layer: f.get_tensor(f"backbone.task_embedding_t.{layer}.weight")[0] for layer in LAYERS
        }


def train_two_tasks(tmp_path, loggers, trajectory: HATMaskTrajectory, epochs: int = 2):
    torch.manual_seed(0)
    module = HATModule(HATMaskMLP(4, [6, 5], 5, gate="sigmoid"), "hat", lr=0.1, s_max=S_MAX)
    checkpoint = HATMaskCheckpoint(tmp_path / "run")
    for task in (1, 2):
        module.start_task(task, 2)
        callbacks = [checkpoint, trajectory]
        trainer = Trainer(max_epochs=epochs, callbacks=callbacks, logger=loggers, **QUIET)
        trainer.fit(module, loader(n=32))
    return module


def test_files_hold_the_gates_of_the_checkpointed_embeddings(tmp_path):
    trajectory = HATMaskTrajectory(tmp_path / "run", every_n_epochs=1)
    module = train_two_tasks(tmp_path, False, trajectory)
    recorded = read_trajectories(tmp_path / "run")
    assert [t.task for t in recorded] == [1, 2]
    for t in recorded:
        assert (t.points, t.unit, t.layers) == ((-1, 0, 1), "epoch", LAYERS)
        checkpoint = tmp_path / "run" / f"after-task-{t.task}.safetensors"
        for layer, embedding in embeddings(checkpoint).items():
            np.testing.assert_allclose(t.gates[layer][-1], by_hand(embedding), atol=1e-6)
            stored = module.backbone.masks[t.task][layer].numpy().astype(bool)
            assert (t.binary(layer)[-1] == stored).all()
        # the record before training is of the freshly initialised embeddings: not the last
        assert any(not np.allclose(t.gates[layer][0], t.gates[layer][-1]) for layer in LAYERS)
    assert trajectory.paths == {t: tmp_path / "run" / f"trajectory-task-{t}.safetensors"
                                for t in (1, 2)}  # fmt: skip


def test_steps_are_recorded_every_n_and_at_the_end(tmp_path):
    # 32 samples in batches of 8: 4 steps per epoch, 3 epochs = 12 steps per task's fit
    trajectory = HATMaskTrajectory(tmp_path / "run", every_n_steps=5)
    train_two_tasks(tmp_path, False, trajectory, epochs=3)
    for t in read_trajectories(tmp_path / "run"):
        assert (t.unit, t.points) == ("step", (-1, 5, 10, 12))


def test_real_tensorboard_and_csv_loggers_get_scalars_and_heatmaps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tensorboard = TensorBoardLogger(tmp_path / "tb", name="run")
    table = CSVLogger(tmp_path / "csv", name="run")
    train_two_tasks(tmp_path, [tensorboard, table], HATMaskTrajectory(tmp_path / "run"))
    recorded = {t.task: t for t in read_trajectories(tmp_path / "run")}

    with open(table.log_dir + "/metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    column = "trajectory/task_2/fc/1/active_share"
    values = [float(row[column]) for row in rows if row.get(column)]
    gates = recorded[2].gates["fc/1"]
    assert values == pytest.approx((gates >= 0.5).mean(axis=1).tolist())
    on = [float(r["trajectory/task_1/fc/0/switched_on"]) for r in rows
          if r.get("trajectory/task_1/fc/0/switched_on")]  # fmt: skip
    binary = recorded[1].binary("fc/0")
    pairs = zip(binary[:-1], binary[1:], strict=True)
    assert on == [float((now & ~before).sum()) for before, now in pairs]
    assert "trajectory/task_1/fc/2/mean_gate" in rows[0]

    events = EventAccumulator(tensorboard.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert "trajectory/task_1/fc/0/mean_gate" in tags["scalars"]
    means = [e.value for e in events.Scalars("trajectory/task_1/fc/0/mean_gate")]
    assert means == pytest.approx(recorded[1].gates["fc/0"].mean(axis=1).tolist(), abs=1e-6)
    assert {f"trajectory/task_{t}/{layer}" for t in (1, 2) for layer in LAYERS} <= set(
        tags["images"]
    )
    image = events.Images("trajectory/task_2/fc/0")[-1]
    assert (image.height, image.width) == gates.shape[:1] + (6,)


def test_a_clarena_shaped_module_gives_its_own_s_max(tmp_path):
    module = CLArenaShapedHAT()
    trajectory = HATMaskTrajectory(tmp_path, every_n_epochs=2)
    module.setup_task_id(1)
    Trainer(max_epochs=3, callbacks=[trajectory], **ALONE).fit(module, loader())
    recorded = read_trajectory(tmp_path / "trajectory-task-1.safetensors")
    assert recorded.points == (-1, 1, 2)
    for layer, embedding in module.backbone.task_embedding_t.items():
        weight = embedding.weight.detach().numpy()[0]
        np.testing.assert_allclose(recorded.gates[layer][-1], by_hand(weight, 400.0), atol=1e-6)


def test_a_fit_spanning_tasks_writes_a_file_per_task(tmp_path):
    torch.manual_seed(0)
    module = SpanningHAT()
    trajectory = HATMaskTrajectory(tmp_path, s_max=400.0)
    Trainer(max_epochs=3, callbacks=[trajectory], **ALONE).fit(module, loader())
    recorded = read_trajectories(tmp_path)
    assert [(t.task, t.points) for t in recorded] == [(1, (-1, 0)), (2, (-1, 1)), (3, (-1, 2))]
    for t in recorded:
        stored = module.backbone.masks[t.task]
        assert all((t.binary(layer)[-1] == stored[layer].numpy().astype(bool)).all()
                   for layer in t.layers)  # fmt: skip


def test_an_existing_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "trajectory-task-1.safetensors").write_bytes(b"earlier")
    module = CLArenaShapedHAT()
    module.setup_task_id(1)
    trainer = Trainer(max_epochs=1, callbacks=[HATMaskTrajectory(tmp_path)], **ALONE)
    with pytest.raises(CheckpointError, match="exists.*overwrite=True") as error:
        trainer.fit(module, loader())
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"every_n_epochs": 1, "every_n_steps": 1}, "not both"),
        ({"every_n_steps": 0}, "1 or more steps"),
        ({"every_n_epochs": -2}, "1 or more epochs"),
    ],
)
def test_bad_intervals_are_refused(tmp_path, kwargs, words):
    with pytest.raises(ValueError, match=words):
        HATMaskTrajectory(tmp_path, **kwargs)


def test_a_module_without_s_max_is_told_to_pass_it(tmp_path):
    module = SpanningHAT()
    trainer = Trainer(max_epochs=1, callbacks=[HATMaskTrajectory(tmp_path)], **ALONE)
    with pytest.raises(TypeError, match=r"pass HATMaskTrajectory\(\.\.\., s_max=\.\.\.\)"):
        trainer.fit(module, loader())


@pytest.mark.slow
def test_two_process_ddp_run_records_on_rank_zero_alone(tmp_path):
    import subprocess
    import sys

    import hatinspect

    out = tmp_path / "out"
    command = [sys.executable, "-m", "hatinspect", "train-demo", "--engine", "lightning"]
    command += ["--devices", "2", "--strategy", "ddp", "-n", "2", "-e", "2", "-o", str(out)]
    command += ["--record-every", "1", "--logger", "csv"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["after-task-1.safetensors", "after-task-2.safetensors", "logs",
                     "trajectory-task-1.safetensors", "trajectory-task-2.safetensors"]  # fmt: skip
    assert [p.name for p in (out / "logs").iterdir()] == ["version_0"]  # one logger's folder
    final = hatinspect.open_checkpoint(out / "after-task-2.safetensors")
    for recorded in read_trajectories(out):
        assert recorded.points == (-1, 0, 1)
        for layer in recorded.layers:
            assert (recorded.binary(layer)[-1] == final.masks[recorded.task][layer]).all()
    with open(out / "logs" / "version_0" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("trajectory/task_1/fc/0/active_share")]
    assert len(rows) == 3  # once per record: rank one logs nothing


def test_a_resumed_fit_goes_on_with_the_records_of_the_ckpt(tmp_path):
    torch.manual_seed(0)
    module = HATModule(HATMaskMLP(4, [6, 5], 5, gate="sigmoid"), "hat", lr=0.1, s_max=S_MAX)
    module.start_task(1, 2)
    first = Trainer(max_epochs=2, callbacks=[HATMaskTrajectory(tmp_path)], **ALONE)
    first.fit(module, loader(n=32))
    uninterrupted = read_trajectory(tmp_path / "trajectory-task-1.safetensors")
    (tmp_path / "trajectory-task-1.safetensors").unlink()

    torch.manual_seed(0)
    module = HATModule(HATMaskMLP(4, [6, 5], 5, gate="sigmoid"), "hat", lr=0.1, s_max=S_MAX)
    module.start_task(1, 2)
    # the .ckpt a ModelCheckpoint saves at the end of the first epoch, mid-task
    saving = ModelCheckpoint(tmp_path / "ckpt", save_last=True)
    callbacks = [HATMaskTrajectory(tmp_path), saving]
    Trainer(max_epochs=1, callbacks=callbacks, logger=False, **QUIET).fit(module, loader(n=32))
    (tmp_path / "trajectory-task-1.safetensors").unlink()  # the interrupted fit's file

    resumed = HATModule(HATMaskMLP(4, [6, 5], 5, gate="sigmoid"), "hat", lr=0.1, s_max=S_MAX)
    again = Trainer(max_epochs=2, callbacks=[HATMaskTrajectory(tmp_path)], **ALONE)
    again.fit(resumed, loader(n=32), ckpt_path=saving.last_model_path)
    recorded = read_trajectory(tmp_path / "trajectory-task-1.safetensors")
    assert recorded.points == uninterrupted.points == (-1, 0, 1)
    for layer in LAYERS:  # the records before the stop come from the .ckpt
        np.testing.assert_array_equal(recorded.gates[layer][:2], uninterrupted.gates[layer][:2])


def test_the_plain_demo_logs_to_a_real_tensorboard_logger(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hatinspect.lightning.loggers import demo_logger
    from hatinspect.training.demo import DemoConfig, run_demo

    logger = demo_logger("tensorboard", tmp_path)
    run_demo(DemoConfig(tasks=2, epochs=2), tmp_path, record_every=1, loggers=[logger])
    assert logger.log_dir == str(tmp_path / "logs" / "version_0")
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2, 3, 4]  # the run's epochs
    recorded = read_trajectory(tmp_path / "trajectory-task-2.safetensors")
    shares = [e.value for e in events.Scalars("trajectory/task_2/fc/0/active_share")]
    assert shares == pytest.approx((recorded.gates["fc/0"] >= 0.5).mean(axis=1).tolist())
    image = events.Images("trajectory/task_2/fc/0")[-1]
    assert (image.step, image.height, image.width) == (4, 3, 100)
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)), dtype=np.float64)
    pixels = pixels if pixels.ndim == 2 else pixels[..., 0]  # grey: every channel alike
    np.testing.assert_allclose(pixels / 255, recorded.gates["fc/0"], atol=1.01 / 255)
