"""The methods of the course, one module per family.

==================  =====================================================
family              methods
==================  =====================================================
``autoencoding``    :class:`DenoisingAutoencoder` (and the plain autoencoder)
``colorization``    :class:`Colorization`, :class:`SplitBrain` (one view from another)
==================  =====================================================

Every method is an ``nn.Module`` with an ``encoder`` attribute and
``training_step(batch) -> dict``; see :class:`SSLMethod`.
"""

from .autoencoding import DenoisingAutoencoder
from .base import SSLMethod
from .colorization import Colorization, SplitBrain

__all__ = ["SSLMethod", "DenoisingAutoencoder", "Colorization", "SplitBrain"]
