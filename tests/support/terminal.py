"""Reading what a command wrote to a pseudo-terminal."""

import os


def read_terminal(leader: int) -> str:
    """Everything written to the terminal whose leader end is `leader`, until it closes
    (then closed here too)."""
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")
