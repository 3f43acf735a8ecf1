"""The console script's entry: the app is imported inside it, so that Ctrl-C while the
command line loads is one line and exit 130 too, as it is once a command runs."""

import sys


def main() -> None:
    try:
        from hatinspect.cli.app import main as run
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    run()
