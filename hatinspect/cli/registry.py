"""The commands, in the order they are declared: command modules add to it, and the app
(``hatinspect.cli.app``) registers them, so no command module imports the app."""

from collections.abc import Callable
from dataclasses import dataclass, field

from hatinspect.cli.help import help_text


@dataclass(frozen=True)
class Command:
    name: str
    function: Callable
    options: dict = field(default_factory=dict)  # typer's app.command keyword arguments


COMMANDS: list[Command] = []


def command(name: str, **options) -> Callable[[Callable], Callable]:
    """Declare a command; the app registers it, its known failures as one line on stderr."""

    def declare(fn: Callable) -> Callable:
        COMMANDS.append(Command(name, fn, {"help": help_text(fn.__doc__), **options}))
        return fn

    return declare
