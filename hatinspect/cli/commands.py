"""Imports every command module so that each registers with the app."""

from hatinspect.cli import inspect_commands, run_commands, train_command  # noqa: F401
