"""Errors the user can act on: each message is one line that names what is wrong."""

from __future__ import annotations

MAX_MESSAGE = 8192  # a message quotes a path (<= 4096 bytes) and bounded prefixes of the rest
SHOWN = 60  # characters of an untrusted string quoted in a message


class HatinspectError(Exception):
    """A failure caused by the input, not by a bug; the CLI shows it as one line (exit 1).

    The message is made one line whatever it quotes: control characters (a newline in a
    file or tensor name) are escaped, and its length is bounded.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(str(message)))


class CheckpointError(HatinspectError, ValueError):
    """A checkpoint file that cannot be read or trusted."""


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` without control characters (escaped as ``\\n``, ``\\x1b``, ...), at most
    ``limit`` characters."""
    if text.isprintable() and text.isascii():
        line = text
    else:  # control characters escaped; lone surrogates (undecodable bytes) too
        line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def reason(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """Why ``exc`` was raised, for the brackets of a message: its text on one line with
    whitespace collapsed, at most ``limit`` characters, or its type's name."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def shown(value: object, limit: int = SHOWN) -> str:
    """A bounded, one-line description of an untrusted value for a message: a string or
    small int quoted, anything else only by its type (never its ``repr``, which for an
    object from a file may be huge, slow or multi-line)."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + "..."
        return repr(one_line(text, limit + 3))
    if type(value) is int:
        digits = value.bit_length() * 0.30103
        return str(value) if digits < limit else f"an integer of about {int(digits)} digits"
    if type(value) in (bool, float) or value is None:
        return str(value)
    return f"a {type(value).__name__}"
