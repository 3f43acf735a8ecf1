"""How fast the CLI starts, and `capacity` on a HATMaskResNet152 with 10 stored tasks.

1. `hatinspect --help` against `python -c "import typer"` (each a fresh process).
2. `capacity` against a torch.load-based reader of the same state (a `torch.save` of the
   state_dict, the masks and the layer table): the closed-form count alone, reader plus
   count in one process (imports excluded), and whole commands in fresh processes.

    python benchmarks/bench_cli.py [--tasks 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import readme_figures as readme
from readme_figures import ms, times
from workloads import hat_resnet152, median_time

README_FIGURES = ("help", "help-floor", "capacity", "capacity-torch")


def process_time(command: list[str], repeats: int) -> float:
    return median_time(lambda: subprocess.run(command, check=True, capture_output=True), repeats)


def build_files(folder: Path, tasks: int) -> tuple[Path, Path]:
    import torch

    from hatinspect.backbones.layers import describe_layers
    from hatinspect.torch_io.save import save_checkpoint

    backbone = hat_resnet152(tasks)
    native = save_checkpoint(folder / "resnet152.safetensors", backbone)
    pickled = folder / "resnet152.pt"
    layers = [asdict(layer) for layer in describe_layers(backbone)]
    payload = {"state_dict": backbone.state_dict(), "masks": backbone.masks, "layers": layers}
    torch.save(payload, pickled)
    return native, pickled


def torch_reader(path: str):
    """A Checkpoint from a torch.save'd state: loads every tensor, weights included."""
    import numpy as np
    import torch

    from hatinspect.model.checkpoint import Checkpoint, LayerInfo

    payload = torch.load(path, map_location="cpu", weights_only=True)
    layers = tuple(
        LayerInfo(**{**record, "weight_shape": tuple(record["weight_shape"])})
        for record in payload["layers"]
    )
    masks = {
        task: {name: mask.numpy().astype(np.uint8) for name, mask in by_layer.items()}
        for task, by_layer in payload["masks"].items()
    }
    return Checkpoint(path, "HATMaskResNet152", "hatinspect", layers, tuple(sorted(masks)), masks)


def torch_capacity_command(path: str) -> None:
    """What a torch-based `capacity --format json` would do, for the fresh-process timing."""
    from hatinspect.analysis.capacity import capacity
    from hatinspect.model.records import to_json

    sys.stdout.write(to_json(capacity(torch_reader(path))))


# the least any typer CLI pays to print its help: typer renders it with rich
EMPTY_APP = "import typer; app = typer.Typer(); app.command()(lambda: None); app()"


def startup(repeats: int) -> dict[str, str]:
    help_s = process_time([sys.executable, "-m", "hatinspect", "--help"], repeats)
    typer_s = process_time([sys.executable, "-c", "import typer"], repeats)
    empty_s = process_time([sys.executable, "-c", EMPTY_APP, "--help"], repeats)
    print(f"start-up, median of {repeats} fresh processes")
    print(f"  hatinspect --help                 {help_s * 1000:8.0f} ms")
    print(f"  python -c 'import typer'          {typer_s * 1000:8.0f} ms")
    print(f"    ratio                           {help_s / typer_s:8.2f}x")
    print(f"  a one-command typer app --help    {empty_s * 1000:8.0f} ms")
    print(f"    ratio                           {help_s / empty_s:8.2f}x")
    return {
        "help": f"median {ms(help_s)} ms",
        "help-floor": f"`import typer` {ms(typer_s)} ms ({times(help_s / typer_s)}); "
        f"a one-command Typer app's `--help` {ms(empty_s)} ms ({times(help_s / empty_s)})",
    }


def capacity_timings(native: Path, pickled: Path, repeats: int) -> dict[str, str]:
    from hatinspect.analysis.capacity import capacity
    from hatinspect.checkpoints import open_checkpoint

    checkpoint = open_checkpoint(native)
    count_s = median_time(lambda: capacity(checkpoint), repeats)
    reader_s = median_time(lambda: capacity(open_checkpoint(native)), repeats)
    torch_s = median_time(lambda: capacity(torch_reader(str(pickled))), repeats)
    cli = [sys.executable, "-m", "hatinspect", "capacity", str(native), "--format", "json"]
    cli_s = process_time(cli, repeats)
    torch_cli = [sys.executable, __file__, "--torch-capacity", str(pickled)]
    torch_cli_s = process_time(torch_cli, repeats)
    mib = 1024 * 1024
    print(
        f"capacity, HATMaskResNet152 ({len(checkpoint.layers)} weighted layers, "
        f"{len(checkpoint.task_ids)} tasks), median of {repeats}"
    )
    print(
        f"  files: native {native.stat().st_size / mib:.0f} MiB, "
        f"torch {pickled.stat().st_size / mib:.0f} MiB"
    )
    print(f"  closed-form count only                  {count_s * 1000:8.1f} ms")
    print(f"  open_checkpoint + count                 {reader_s * 1000:8.1f} ms")
    print(f"  torch.load(weights_only=True) + count   {torch_s * 1000:8.1f} ms")
    print(f"    ratio                                 {torch_s / reader_s:8.1f}x")
    print(f"  hatinspect capacity (fresh process)     {cli_s * 1000:8.0f} ms")
    print(f"  torch-based capacity (fresh process)    {torch_cli_s * 1000:8.0f} ms")
    print(f"    ratio                                 {torch_cli_s / cli_s:8.1f}x")
    return {
        "capacity": f"median {ms(reader_s)} ms / {ms(cli_s)} ms",
        "capacity-torch": f"`torch.load(weights_only=True)` + the count: {ms(torch_s)} ms "
        f"({times(torch_s / reader_s)}) / {ms(torch_cli_s)} ms ({times(torch_cli_s / cli_s)})",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-capacity", metavar="PATH", help=argparse.SUPPRESS)
    readme.add_option(parser)
    args = parser.parse_args()
    if args.torch_capacity:
        torch_capacity_command(args.torch_capacity)
        return
    figures = startup(args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        native, pickled = build_files(Path(folder), args.tasks)
        figures |= capacity_timings(native, pickled, args.repeats)
    readme.compare("cli", figures, args.write_readme)


if __name__ == "__main__":
    main()
