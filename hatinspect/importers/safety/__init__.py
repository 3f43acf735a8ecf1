"""The safety checks of a PyTorch file, run before and while anything in it is unpickled."""
