"""Training HAT, AdaHAT and fine-tuning task after task (uses the backbones)."""
