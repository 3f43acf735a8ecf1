"""PyTorch Lightning integration: a callback that writes a native checkpoint after every
task (``HATMaskCheckpoint``), one that records every task's gates as it trains
(``HATMaskTrajectory``) and HAT / AdaHAT / fine-tuning as a LightningModule
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
from hatinspect.lightning.trajectory import HATMaskTrajectory

__all__ = ["HATMaskCheckpoint", "HATMaskTrajectory", "HATModule"]
