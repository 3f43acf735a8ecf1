"""The torch-free core: reading checkpoints and computing masks, measures and capacity."""
