"""What is computed from checkpoints, without torch: masks, capacity, measures, overlap,
audit, runs and reports."""
