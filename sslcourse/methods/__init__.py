"""The methods of the course, one module per family.

==================  ==========================================================================
family              methods
==================  ==========================================================================
``autoencoding``    :class:`DenoisingAutoencoder` (and the plain autoencoder),
                    :class:`ContextEncoder`, :class:`SuperResolution`
``colorization``    :class:`Colorization`, :class:`SplitBrain` (one view from another)
``pretext``         :class:`RotationPrediction`, :class:`RelativePosition`, :class:`Jigsaw`
``clustering``      :class:`DeepCluster`
``cpc``             :class:`CPC`
``contrastive``     :class:`SimCLR`, :class:`MoCo`
``distillation``    :class:`BYOL`, :class:`DINO` (no negatives: a student and a momentum teacher)
``masked``          :class:`MAE` (masked image modeling on a Vision Transformer)
==================  ==========================================================================

Every method is an ``nn.Module`` with an ``encoder`` attribute and
``training_step(batch) -> dict``; see :class:`SSLMethod`.
"""

from .autoencoding import ContextEncoder, DenoisingAutoencoder, SuperResolution
from .base import SSLMethod
from .clustering import DeepCluster
from .colorization import Colorization, SplitBrain
from .contrastive import MoCo, SimCLR
from .cpc import CPC
from .distillation import BYOL, DINO
from .masked import MAE
from .pretext import Jigsaw, RelativePosition, RotationPrediction

__all__ = [
    "SSLMethod",
    "DenoisingAutoencoder",
    "ContextEncoder",
    "SuperResolution",
    "Colorization",
    "SplitBrain",
    "RotationPrediction",
    "RelativePosition",
    "Jigsaw",
    "DeepCluster",
    "CPC",
    "SimCLR",
    "MoCo",
    "BYOL",
    "DINO",
    "MAE",
]
