"""What the tests share: factories of checkpoints and runs, brute-force references, and
the paths of the committed fixtures."""
