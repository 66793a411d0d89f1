"""What every method is: an nn.Module with an encoder and a training step."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SSLMethod"]


class SSLMethod(nn.Module):
    """Base class of the course's methods.

    A method owns an ``encoder`` (the network whose representation we keep)
    and whatever else its pretext task needs (decoders, heads, momentum
    encoders). :func:`sslcourse.fit` calls, for every batch::

        out = method.training_step(batch)   # {"loss": scalar tensor, ...}
        ... backward, optimizer step ...
        method.after_step()                 # momentum encoders, queues, centers

    ``batch`` is ``(images, labels)`` from a :class:`~sslcourse.data.DeviceLoader`:
    float (B, C, H, W) in [0, 1] on the training device; labels are never used
    for pretraining. Every other value in the returned dict is logged.
    """

    encoder: nn.Module

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement training_step(batch) -> dict with 'loss'")

    def after_step(self) -> None:
        """Called after each optimizer step; nothing by default."""
