"""The native checkpoint format, without torch: its keys, its reader, block-wise tensors."""
