"""PyTorch Lightning integration: a callback that writes a native checkpoint after every
task (``HATMaskCheckpoint``) and HAT / AdaHAT / fine-tuning as a LightningModule
(``HATModule``).

Needs the ``lightning`` extra; nothing else in hatinspect imports this package.
"""

try:
    import lightning  # noqa: F401
except ImportError:
    raise ImportError(
        "hatinspect.lightning needs Lightning: pip install 'hatinspect[lightning]'"
    ) from None

from hatinspect.lightning.checkpoint import HATMaskCheckpoint
from hatinspect.lightning.module import HATModule

__all__ = ["HATMaskCheckpoint", "HATModule"]
