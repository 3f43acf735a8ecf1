"""``hatinspect train-demo``: learn a few toy tasks with HAT, AdaHAT or fine-tuning, write a
checkpoint after each task, and show what was (not) forgotten.

Progress goes to stderr; the result goes to stdout as a table or JSON. torch is imported
only when the command runs.
"""

import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from hatinspect.cli.errors import fail, must_be
from hatinspect.cli.heavy import heavy_imports
from hatinspect.cli.options import WidthOption, choices
from hatinspect.cli.registry import command
from hatinspect.model.names import ALGORITHMS
from hatinspect.model.progress import SILENT, reporting
from hatinspect.render.stderr import note, say, verbosity

# the library's choices, repeated here so that --help needs no torch (a test keeps them equal)
BACKBONES = ("mlp", "resnet18")
DATASETS = ("toy", "digits")
FORMATS = ("table", "json")
DEFAULT_EPOCHS = 15
ENGINES = ("plain", "lightning")
LOGGERS = ("tensorboard", "csv")
STRATEGIES = ("auto", "ddp")


AlgorithmOption = Annotated[
    str,
    typer.Option(
        "--algorithm",
        "-a",
        metavar=choices(ALGORITHMS),
        help="hat: zero forgetting; adahat: HAT with adaptive, soft protection; "
        "finetuning: no protection, the baseline that forgets. Several, comma-separated "
        "(hat,adahat,finetuning), train each on the same tasks into DIR/<algorithm>/ "
        "and compare them.",
    ),
]
TasksOption = Annotated[
    int, typer.Option("--tasks", "-n", help="Tasks to learn, one after another.")
]
EpochsOption = Annotated[int, typer.Option("--epochs", "-e", help="Epochs per task (1 or more).")]
SeedOption = Annotated[
    int,
    typer.Option(
        help="Seeds data, initialisation and order: same seed, same masks and accuracies."
    ),
]
BackboneOption = Annotated[
    str,
    typer.Option(
        metavar=choices(BACKBONES),
        help="mlp (about 3 s for 5 tasks on 2 CPU cores) or resnet18 with one batch norm per "
        "task on 16x16 synthetic images (far slower: about 5 minutes per task with 15 epochs, "
        "25 minutes for 5 tasks, measured on 2 CPU cores shared with other jobs; 45 MB per "
        "checkpoint).",
    ),
]
DatasetOption = Annotated[
    str,
    typer.Option(
        metavar=choices(DATASETS),
        help="toy: generated from the seed; digits: scikit-learn's 8x8 digits as up to "
        "5 two-class tasks; needs scikit-learn (the package's digits extra).",
    ),
]
OutOption = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        metavar="DIR",
        help="Folder for after-task-<t>.safetensors: a new or empty one, unless --force.",
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Write into a folder that already holds files.")
]
EngineOption = Annotated[
    str,
    typer.Option(
        metavar=choices(ENGINES),
        help="plain: a few lines of PyTorch; lightning: hatinspect.lightning.HATModule on "
        "Lightning's Trainer, checkpoints by HATMaskCheckpoint (needs the lightning extra).",
    ),
]
DevicesOption = Annotated[
    int,
    typer.Option(
        min=1,
        metavar="N",
        help="Processes (CPU) or GPUs for --engine lightning, e.g. 2 with --strategy ddp.",
    ),
]
StrategyOption = Annotated[
    str,
    typer.Option(
        metavar=choices(STRATEGIES),
        help="Lightning's strategy for --engine lightning; ddp runs one process per device.",
    ),
]
RecordEveryOption = Annotated[
    int,
    typer.Option(
        min=0,
        metavar="N",
        help="Record every task's gates before training and every N epochs (the last "
        "always) into DIR/trajectory-task-<t>.safetensors; 0: none.",
    ),
]
LoggerOption = Annotated[
    str | None,
    typer.Option(
        metavar=choices(LOGGERS),
        help="Log the epochs' loss and accuracy, and with --record-every each record's "
        "per-layer scalars and heatmaps, to Lightning's TensorBoardLogger or CSVLogger in "
        "DIR/logs/ (needs the lightning extra).",
    ),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format", "-f", metavar=choices(FORMATS), help="Output: a table, or JSON for scripts."
    ),
]


@command("train-demo")
def train_demo(
    algorithm: AlgorithmOption = "hat",
    tasks: TasksOption = 5,
    epochs: EpochsOption = DEFAULT_EPOCHS,
    seed: SeedOption = 0,
    backbone: BackboneOption = "mlp",
    dataset: DatasetOption = "toy",
    out: OutOption = Path("hatinspect-demo"),
    fmt: FormatOption = "table",
    engine: EngineOption = "plain",
    devices: DevicesOption = 1,
    strategy: StrategyOption = "auto",
    record_every: RecordEveryOption = 0,
    logger: LoggerOption = None,
    force: ForceOption = False,
    width: WidthOption = None,
) -> None:
    """Train a HAT network on toy tasks, one after another, and show it forgets nothing.

    Examples:

    hatinspect train-demo --out demo
    hatinspect train-demo --out recorded -n 2 --record-every 1 --logger csv
    hatinspect train-demo --algorithm hat,adahat,finetuning --out runs -n 2
    """
    algorithms = [name.strip() for name in algorithm.split(",")]
    _check_choices(
        ("--format", [fmt], FORMATS),
        ("--engine", [engine], ENGINES),
        ("--strategy", [strategy], STRATEGIES),
        ("--backbone", [backbone], BACKBONES),
        ("--dataset", [dataset], DATASETS),
        ("--algorithm", algorithms, ALGORITHMS),
        ("--logger", [logger] if logger is not None else [], LOGGERS),
    )
    for option, value in (("--tasks", tasks), ("--epochs", epochs)):
        if value < 1:
            raise fail(must_be(option, "a whole number of at least 1", str(value)), HELP, 2)
    run = _recording(_engine(engine, devices, strategy), record_every, logger)
    from hatinspect.training.demo import DemoConfig
    from hatinspect.training.tasks import DIGITS_CLASSES, DIGITS_CLASSES_PER_TASK, max_tasks

    limit = max_tasks(dataset)
    if limit is not None and tasks > limit:
        raise fail(
            f"--tasks must be 1..{limit} with --dataset {dataset} ({DIGITS_CLASSES} classes,"
            f" {DIGITS_CLASSES_PER_TASK} a task), got {tasks}",
            HELP,
            2,
        )

    try:
        configs = [DemoConfig(name, tasks, epochs, seed, backbone, dataset) for name in algorithms]
    except ValueError as exc:
        raise fail(str(exc), hint="see hatinspect train-demo --help", code=2) from None
    if len(set(algorithms)) < len(algorithms):
        raise fail(f"--algorithm names one twice: {algorithm}", code=2)
    if len(configs) == 1:
        _train_one(run, configs[0], out, fmt, force, width)
    else:
        _train_and_compare(run, configs, out, fmt, force, width)


def _train_one(run, config, out: Path, fmt: str, force: bool, width: int | None) -> None:
    from hatinspect.render import demo

    _prepare(out, force)
    result = _train(run, config, out)
    if result is None:  # another process of a distributed run: global rank zero reports
        return
    if fmt == "json":
        sys.stdout.write(json.dumps(demo.record(result), indent=2) + "\n")
    else:
        demo.print_table(result, width)


def _train_and_compare(run, configs, out: Path, fmt: str, force: bool, width) -> None:
    """Each algorithm on the same tasks into out/<algorithm>/, then the runs compared."""
    from hatinspect import api
    from hatinspect.model import records
    from hatinspect.render import demo, runs  # noqa: F401  (runs registers the comparison's view)
    from hatinspect.render.layout import print_tables

    folders = [out / config.algorithm for config in configs]
    for folder in folders:
        _prepare(folder, force)
    results = [_train(run, c, folder) for c, folder in zip(configs, folders, strict=True)]
    if any(result is None for result in results):  # not global rank zero
        return
    comparison = api.compare(*folders)
    command = "hatinspect compare " + " ".join(shlex.quote(str(f)) for f in folders)
    if fmt == "json":
        document = {
            "schema": records.SCHEMA,
            "runs": [demo.record(result) for result in results],
            "comparison": records.record(comparison),
            "command": command,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    for result in results:
        demo.print_table(result, width)
    print_tables(comparison, width)
    print(f"reproduce this comparison: {command}")


def _train(run, config, out: Path):
    try:
        # the epochs' bars alone: the files' writes, reported too, would draw a second
        # live display on the same stderr
        with _Progress(config.tasks, config.epochs) as progress, reporting(SILENT):
            result = run(config, out, progress.epoch_done)
    except KeyboardInterrupt:
        note(f"every checkpoint already in {out} is complete (each is written atomically)")
        raise
    if result is not None:
        say(f"trained {result.tasks} task(s) with {config.algorithm} in {result.seconds:.1f} s")
    return result


HELP = "see hatinspect train-demo --help"


def _check_choices(*checks: tuple[str, list[str], tuple[str, ...]]) -> None:
    """Each (option, values given, accepted): a value not accepted is a usage error."""
    for option, values, accepted in checks:
        for value in values:
            if value not in accepted:
                raise fail(must_be(option, "one of " + ", ".join(accepted), value), HELP, 2)


def _engine(engine: str, devices: int, strategy: str):
    """The demo runner for ``engine``: ``run(config, out, on_epoch) -> DemoResult | None``."""
    if engine == "plain":
        if (devices, strategy) != (1, "auto"):
            raise fail("--devices and --strategy need --engine lightning", code=2)
        with heavy_imports():
            from hatinspect.training.demo import run_demo

        return lambda config, out, on_epoch, record_every=0, logger=None: run_demo(
            config,
            out,
            on_epoch,
            record_every=record_every,
            loggers=() if logger is None else (logger,),
        )
    try:
        with heavy_imports():
            from hatinspect.lightning.demo import run_lightning_demo
    except ImportError as exc:
        raise fail(str(exc)) from None
    return lambda config, out, on_epoch, record_every=0, logger=None: run_lightning_demo(
        config,
        out,
        on_epoch,
        devices=devices,
        strategy=strategy,
        record_every=record_every,
        logger=logger,
    )


def _recording(run, record_every: int, logger: str | None):
    """``run`` recording every ``record_every`` epochs, logging to a new ``logger`` of
    each run's folder: ``run(config, out, on_epoch) -> DemoResult | None`` still."""
    if not record_every and logger is None:
        return run
    make_logger = None
    if logger is not None:
        try:
            with heavy_imports():
                from hatinspect.lightning.loggers import demo_logger
        except ImportError as exc:
            raise fail(str(exc)) from None
        make_logger = demo_logger

    def recording(config, out: Path, on_epoch):
        try:
            made = make_logger(logger, out) if make_logger is not None else None
        except ImportError as exc:
            raise fail(str(exc)) from None
        return run(config, out, on_epoch, record_every=record_every, logger=made)

    return recording


def _prepare(out: Path, force: bool) -> None:
    """Make sure checkpoints can be written to ``out`` before training for a minute, and
    that they will not mix with another run's files."""
    if out.is_dir() and not force and any(out.iterdir()):
        raise fail(
            f"{out} already holds files; another run's checkpoints would mix with this one's",
            hint="choose an empty --out, or pass --force",
            code=2,
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise fail(
            f"cannot write checkpoints to {out}: {reason}", hint="choose another --out", code=2
        ) from None


class _Progress:
    """One rich progress bar per task on stderr: epochs done, loss and training accuracy."""

    def __init__(self, tasks: int, epochs: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.tasks, self.epochs = tasks, epochs
        self.bars: dict[int, object] = {}
        self.progress = Progress(
            TextColumn("task {task.fields[task]}/{task.fields[tasks]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  loss {task.fields[loss]}  accuracy {task.fields[accuracy]}"),
            console=Console(stderr=True),
            disable=verbosity.get().quiet,
        )

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bars:  # started by the first epoch: no empty line when nothing ran
            self.progress.stop()

    def epoch_done(self, report) -> None:
        if not self.bars:
            self.progress.start()
        if report.task_id not in self.bars:
            self.bars[report.task_id] = self.progress.add_task(
                "",
                total=self.epochs,
                task=report.task_id,
                tasks=self.tasks,
                loss="-",
                accuracy="-",
            )
        self.progress.update(
            self.bars[report.task_id],
            completed=report.epoch,
            loss=f"{report.loss:.3f}",
            accuracy=f"{report.accuracy:.1%}",
        )
