"""Where the committed test material lies."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
PEERS = FIXTURES / "peers"  # files written by the other implementations' own code
GOLDEN = TESTS / "golden"  # the expected tables of the command line
