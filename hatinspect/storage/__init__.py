"""The torch side of checkpoints: writing the native format, rebuilding backbones, and
importing the PyTorch files other HAT implementations write."""
