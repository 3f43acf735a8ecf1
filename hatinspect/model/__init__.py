"""The typed model every layer shares: checkpoints, layers, results, errors and paths (no torch)."""
