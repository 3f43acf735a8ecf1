"""Errors the user can act on: each message is one line that names what is wrong."""


class HatinspectError(Exception):
    """A failure caused by the input, not by a bug; the CLI shows it as one line (exit 1)."""


class CheckpointError(HatinspectError, ValueError):
    """A checkpoint file that cannot be read or trusted."""
