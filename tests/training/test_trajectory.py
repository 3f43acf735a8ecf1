"""Recording the demo's gates: the records' points, their gates recomputed by hand from the
checkpointed embeddings, the scalars by hand, and a run unchanged by recording it."""

import numpy as np
import pytest
import torch
from safetensors import safe_open

import hatinspect
from hatinspect.backbones import HATMaskMLP
from hatinspect.native.trajectory_file import read_trajectories, read_trajectory
from hatinspect.training.demo import DemoConfig, run_demo
from hatinspect.training.trajectory import TrajectoryRecorder, record_scalars

S_MAX = 400.0


def by_hand(embedding: np.ndarray, s_max: float = S_MAX) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(400 e) of a negative e: inf, the gate 0
        return 1.0 / (1.0 + np.exp(-s_max * embedding.astype(np.float64)))


class ListLogger:
    """What a Lightning logger is to the recorder: ``log_metrics``; with ``images``, an
    ``experiment`` that takes them (as TensorBoard's)."""

    def __init__(self, images: bool = False) -> None:
        self.metrics: list[tuple[int, dict]] = []
        self.images: list[tuple[str, np.ndarray, int, str]] = []
        if images:
            self.experiment = self

    def log_metrics(self, metrics, step):
        self.metrics.append((step, metrics))

    def add_image(self, tag, image, global_step, dataformats):
        self.images.append((tag, image, global_step, dataformats))

    def finalize(self, status):
        pass


def test_demo_records_every_task_and_its_last_record_is_the_checkpoint(tmp_path):
    result = run_demo(DemoConfig(tasks=2, epochs=2), tmp_path, record_every=1)
    assert result.trajectories == tuple(
        str(tmp_path / f"trajectory-task-{t}.safetensors") for t in (1, 2)
    )
    for recorded in read_trajectories(tmp_path):
        assert (recorded.points, recorded.unit) == ((-1, 0, 1), "epoch")
        path = tmp_path / f"after-task-{recorded.task}.safetensors"
        checkpoint = hatinspect.open_checkpoint(path)
        assert recorded.layers == tuple(checkpoint.layer_names)
        with safe_open(path, framework="numpy") as f:
            for layer in recorded.layers:
                embedding = f.get_tensor(f"backbone.task_embedding_t.{layer}.weight")[0]
                np.testing.assert_allclose(recorded.gates[layer][-1], by_hand(embedding), atol=1e-6)
                stored = checkpoint.masks[recorded.task][layer].astype(bool)
                assert (recorded.binary(layer)[-1] == stored).all()


@pytest.mark.parametrize(("every", "epochs", "points"), [(2, 3, (-1, 1, 2)), (5, 3, (-1, 2))])
def test_points_are_every_n_epochs_and_the_last(tmp_path, every, epochs, points):
    run_demo(DemoConfig(tasks=1, epochs=epochs), tmp_path, record_every=every)
    assert read_trajectory(tmp_path / "trajectory-task-1.safetensors").points == points


def test_recording_changes_nothing_of_the_run(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "rec").mkdir()
    plain = run_demo(DemoConfig(tasks=2, epochs=2), tmp_path / "plain")
    logger = ListLogger(images=True)
    recorded = run_demo(
        DemoConfig(tasks=2, epochs=2), tmp_path / "rec", record_every=1, loggers=[logger]
    )
    assert recorded.accuracy == plain.accuracy
    for t in (1, 2):
        a = hatinspect.open_checkpoint(tmp_path / "plain" / f"after-task-{t}.safetensors")
        b = hatinspect.open_checkpoint(tmp_path / "rec" / f"after-task-{t}.safetensors")
        assert all((a.masks[t][layer] == b.masks[t][layer]).all() for layer in a.layer_names)
    # the epochs' metrics at the run's epoch count; three records a task; heatmaps at its end
    losses = [step for step, metrics in logger.metrics if "train/loss" in metrics]
    assert losses == [1, 2, 3, 4]
    records = [step for step, m in logger.metrics if "trajectory/task_2/fc/0/mean_gate" in m]
    assert records == [2, 3, 4]
    heatmaps = [(tag, image.shape, step, form) for tag, image, step, form in logger.images]
    assert heatmaps[-1] == ("trajectory/task_2/fc/2", (3, 100), 4, "HW")


def test_the_record_before_training_is_of_the_initialised_embeddings():
    torch.manual_seed(0)
    backbone = HATMaskMLP(4, [6], 5, gate="sigmoid")
    backbone.setup_task_id(1)
    backbone.initialise_task_embedding("N01")
    logger = ListLogger()
    recorder = TrajectoryRecorder(backbone, S_MAX, every=1, loggers=[logger])
    recorder.start(1, step=0)
    with torch.no_grad():
        backbone.task_embedding_t["fc/0"].weight.neg_()
    recorder.record(0, step=1)
    recorded = recorder.finish(0, step=1)  # point 0 is recorded already: not twice
    assert recorded.points == (-1, 0)
    weight = backbone.task_embedding_t["fc/0"].weight.detach().numpy()[0]
    np.testing.assert_allclose(recorded.gates["fc/0"][0], by_hand(-weight), atol=1e-6)
    np.testing.assert_allclose(recorded.gates["fc/0"][1], by_hand(weight), atol=1e-6)
    # every unit flipped: what was on is switched off, and the other way round
    on_before = int((weight < 0).sum())
    assert logger.metrics[1][1]["trajectory/task_1/fc/0/switched_off"] == on_before
    assert logger.metrics[1][1]["trajectory/task_1/fc/0/switched_on"] == 6 - on_before


def test_scalars_by_hand():
    previous = {"fc/0": np.array([0.9, 0.1, 0.6, 0.2], np.float32)}
    now = {"fc/0": np.array([0.2, 0.8, 0.5, 0.1], np.float32)}
    assert record_scalars(3, now, previous) == pytest.approx(
        {
            "trajectory/task_3/fc/0/active_share": 0.25,  # 0.8 is on, 0.5 is not
            "trajectory/task_3/fc/0/mean_gate": 0.4,
            "trajectory/task_3/fc/0/switched_on": 1.0,  # unit 1
            "trajectory/task_3/fc/0/switched_off": 2.0,  # units 0 and 2 (0.6, then 0.5: off)
        }
    )
    assert set(record_scalars(3, now)) == {
        "trajectory/task_3/fc/0/active_share",
        "trajectory/task_3/fc/0/mean_gate",
    }


def test_a_recorder_needs_a_positive_interval():
    backbone = HATMaskMLP(4, [6], 5, gate="sigmoid")
    with pytest.raises(ValueError, match="1 or more epochs"):
        TrajectoryRecorder(backbone, S_MAX, every=0)
