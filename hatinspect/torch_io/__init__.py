"""The torch side of checkpoints: writing the native format, rebuilding backbones and
converting foreign files."""
