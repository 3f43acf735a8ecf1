"""``hatinspect train-demo``: options, output formats, errors and interruption."""

import json

import pytest
from typer.testing import CliRunner

import hatinspect
from hatinspect.cli import train_command
from hatinspect.cli.app import app
from hatinspect.training import demo, engine, tasks

runner = CliRunner()


def train(*args):
    return runner.invoke(app, ["train-demo", *args])


def test_json_output(tmp_path):
    result = train("-n", "3", "-e", "1", "-o", str(tmp_path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1
    assert (doc["algorithm"], doc["backbone"], doc["dataset"], doc["seed"], doc["tasks"]) == (
        "hat",
        "mlp",
        "toy",
        0,
        3,
    )
    accuracy = doc["accuracy"]
    assert [row.count(None) for row in accuracy] == [2, 1, 0]
    assert all(None not in row[:t] for t, row in enumerate(accuracy, start=1))
    assert doc["forgetting"] == [0.0, 0.0]
    assert doc["average_accuracy"] == pytest.approx(sum(accuracy[-1]) / 3)
    assert len(doc["capacity"]) == 3
    assert doc["checkpoints"] == [str(tmp_path / f"after-task-{t}.safetensors") for t in (1, 2, 3)]
    for path in doc["checkpoints"]:
        assert hatinspect.open_checkpoint(path).source == "hatinspect"
    assert "trained 3 task(s)" in result.stderr


def test_table_output_ends_with_the_next_command(tmp_path):
    result = train("-a", "finetuning", "-n", "2", "-e", "1", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert "forgetting" in result.stdout and "capacity" in result.stdout
    last = tmp_path / "after-task-2.safetensors"
    assert result.stdout.strip().endswith(f"next: hatinspect masks {last}")
    # a fine-tuning run's masks protect nothing: its capacity column is 0 after each task
    rows = [line for line in result.stdout.splitlines() if line.startswith("│ task ")]
    assert [row.split("│")[-2].strip() for row in rows] == ["0.0%", "0.0%"]


def test_one_task_has_no_forgetting_to_report(tmp_path):
    table = train("-n", "1", "-e", "1", "-o", str(tmp_path / "table"))
    assert table.exit_code == 0, table.stderr
    assert "mean forgetting n/a (one task: no earlier task to forget)" in table.stdout
    doc = json.loads(train("-n", "1", "-e", "1", "-o", str(tmp_path / "json"), "-f", "json").stdout)
    assert doc["forgetting"] == [] and doc["mean_forgetting"] is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-n", "0"], "error: --tasks must be a whole number of at least 1, not '0'"),
        (["-e", "-1"], "error: --epochs must be a whole number of at least 1, not '-1'"),
        (["-a", "ewc"], "error: --algorithm must be one of hat, adahat, finetuning, not 'ewc'"),
        (["-a", "hat,ewc"], "--algorithm must be one of hat, adahat, finetuning, not 'ewc'"),
        (["--backbone", "vgg"], "error: --backbone must be one of mlp, resnet18, not 'vgg'"),
        (["--dataset", "mnist"], "error: --dataset must be one of toy, digits, not 'mnist'"),
        (["--dataset", "digits", "-n", "6"], "1..5"),
        (["-f", "xml"], "error: --format must be one of table, json, not 'xml'"),
        (["--engine", "jax"], "error: --engine must be one of plain, lightning, not 'jax'"),
        (["-n", "two"], "error: --tasks must be a whole number, not 'two'"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, words):
    result = train(*args, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and words in result.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_folder_is_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = train("-n", "1", "-e", "1", "-o", str(blocker / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot write checkpoints to")
    assert result.stderr.count("\n") == 1


def test_digits_needs_scikit_learn_or_runs(tmp_path, monkeypatch):
    try:
        import sklearn  # noqa: F401
    except ImportError:
        result = train("--dataset", "digits", "-n", "2", "-e", "1", "-o", str(tmp_path))
        assert result.exit_code == 1
        assert "scikit-learn" in result.stderr and result.stderr.count("\n") == 1
    else:
        result = train(
            "--dataset", "digits", "-n", "2", "-e", "1", "-o", str(tmp_path), "-f", "json"
        )
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["dataset"] == "digits"


def test_interrupted_run_keeps_the_checkpoints_already_written(tmp_path, monkeypatch):
    write = demo.save_demo_checkpoint

    def write_then_interrupt(path, *args):
        write(path, *args)
        if path.name == "after-task-2.safetensors":
            raise KeyboardInterrupt

    monkeypatch.setattr(demo, "save_demo_checkpoint", write_then_interrupt)
    result = train("-n", "4", "-e", "1", "-o", str(tmp_path))
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "is complete" in result.stderr
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["after-task-1.safetensors", "after-task-2.safetensors"]
    for name in names:
        hatinspect.open_checkpoint(tmp_path / name)


def test_cli_choices_are_the_librarys():
    assert train_command.ALGORITHMS == engine.ALGORITHMS
    assert train_command.BACKBONES == demo.BACKBONES
    assert train_command.DATASETS == tasks.DATASETS
    assert train_command.DEFAULT_EPOCHS == demo.DEFAULT_EPOCHS


def test_help_names_the_choices_and_the_cost_of_resnet18():
    result = train("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())  # unwrap rich's help panel
    for word in ("hat | adahat | finetuning", "mlp | resnet18", "toy | digits", "minutes per task"):
        assert word in text


def test_record_every_with_the_csv_logger(tmp_path):
    import csv

    pytest.importorskip("lightning")
    from hatinspect.native.trajectory_file import read_trajectories

    result = train("-n", "2", "-e", "2", "-o", str(tmp_path), "-f", "json",
                   "--record-every", "1", "--logger", "csv")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    files = [str(tmp_path / f"trajectory-task-{t}.safetensors") for t in (1, 2)]
    assert doc["trajectories"] == files
    recorded = read_trajectories(tmp_path)
    assert [(t.task, t.points) for t in recorded] == [(1, (-1, 0, 1)), (2, (-1, 0, 1))]
    with open(tmp_path / "logs" / "version_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows if r["train/loss"]] == [1, 2, 3, 4]  # epochs trained
    column = "trajectory/task_2/fc/1/active_share"
    shares = [float(r[column]) for r in rows if r.get(column)]
    assert shares == pytest.approx((recorded[1].gates["fc/1"] > 0.5).mean(axis=1).tolist())
    # a run folder still reads as one: the trajectory files and logs/ sit beside it
    assert len(hatinspect.capacity(tmp_path).trajectory) == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--logger", "wandb"], "error: --logger must be one of tensorboard, csv, not 'wandb'"),
        (["--record-every", "-1"], "--record-every"),
    ],
)
def test_bad_recording_options_are_one_line_and_exit_2(tmp_path, args, words):
    result = train(*args, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert words in result.stderr


def test_tensorboard_missing_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    pytest.importorskip("lightning")
    from lightning.fabric.loggers import tensorboard

    monkeypatch.setattr(tensorboard, "_TENSORBOARD_AVAILABLE", False)
    monkeypatch.setattr(tensorboard, "_TENSORBOARDX_AVAILABLE", False)
    result = train("-n", "1", "-e", "1", "-o", str(tmp_path), "--logger", "tensorboard")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: --logger tensorboard needs TensorBoard: pip install 'hatinspect[lightning]'\n"
    )


def test_cli_loggers_are_the_librarys():
    pytest.importorskip("lightning")
    from hatinspect.lightning import loggers

    assert train_command.LOGGERS == loggers.LOGGERS
