"""Autoencoding: learn a representation by reconstructing the input.

A plain autoencoder can copy its input through any wide enough bottleneck. A
denoising autoencoder (Vincent et al. 2008, 2010) sees a corrupted input and
must rebuild the clean one, so it has to learn what images look like.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .. import augment, losses
from ..nets import ConvDecoder, ConvEncoder
from .base import SSLMethod

__all__ = ["DenoisingAutoencoder"]

CorruptFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class DenoisingAutoencoder(SSLMethod):
    """Denoising autoencoder; with ``corruption=None``, the plain autoencoder.

    Each step corrupts the batch x into x~ (random per image), encodes and
    decodes it into z, and minimises the emphasized squared error between z
    and the clean x (:func:`sslcourse.losses.emphasized_mse`): ``alpha`` on
    the corrupted elements, ``beta`` on the rest. alpha = beta = 1 is the plain
    reconstruction MSE.

    Args:
        encoder: defaults to :class:`~sslcourse.nets.ConvEncoder` with ``widths``.
        decoder: defaults to the mirror :class:`~sslcourse.nets.ConvDecoder`.
        in_channels: image channels (1 for digits, 3 for CIFAR-10).
        widths: encoder and decoder widths when they are built here.
        corruption: "gaussian", "masking", "salt_and_pepper", None (plain
            autoencoder), or a function ``x -> (x_tilde, mask)`` (a lab plugs
            its own in here).
        noise_level: sigma for gaussian, the corrupted fraction otherwise.
        alpha, beta: weights of corrupted and untouched elements in the loss.
        loss_fn: replaces the loss: ``(pred, target, mask) -> scalar``.

    ``training_step`` returns ``{"loss", "mse"}``: the optimised loss and the
    plain reconstruction MSE against the clean image.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        *,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        corruption: str | CorruptFn | None = "gaussian",
        noise_level: float = 0.1,
        alpha: float = 1.0,
        beta: float = 1.0,
        loss_fn: LossFn | None = None,
    ) -> None:
        super().__init__()
        if isinstance(corruption, str) and corruption not in augment.CORRUPTIONS:
            raise ValueError(f"unknown corruption {corruption!r}; expected one of {sorted(augment.CORRUPTIONS)}, None, or a function")
        self.encoder = encoder if encoder is not None else ConvEncoder(in_channels, widths)
        self.decoder = decoder if decoder is not None else ConvDecoder(in_channels, widths)
        self.corruption = corruption
        self.noise_level = noise_level
        self.alpha, self.beta = alpha, beta
        self.loss_fn = loss_fn

    @property
    def is_denoising(self) -> bool:
        return self.corruption is not None

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) -> (x~, mask): the corrupted batch and where it was corrupted."""
        if callable(self.corruption):
            out = self.corruption(x)
            name = getattr(self.corruption, "__name__", "the corruption function")
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"{name} must return (corrupted, mask); it returned {type(out).__name__}")
            noisy, mask = out
            if noisy.shape != x.shape or mask.shape != x.shape or mask.dtype != torch.bool:
                raise ValueError(
                    f"{name} must return (corrupted, mask) shaped like its input {tuple(x.shape)} with a bool mask; "
                    f"got {tuple(noisy.shape)} and {mask.dtype} {tuple(mask.shape)}"
                )
            return noisy, mask
        return augment.corrupt(x, self.corruption, self.noise_level, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct: (B, C, H, W) -> (B, C, H, W) in [0, 1]."""
        return self.decoder(self.encoder(x))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        noisy, mask = self.corrupt(x)
        recon = self(noisy).float()
        if self.loss_fn is not None:
            loss = self.loss_fn(recon, x, mask)
        else:
            loss = losses.emphasized_mse(recon, x, mask, self.alpha, self.beta)
        return {"loss": loss, "mse": losses.reconstruction_mse(recon.detach(), x)}

    def extra_repr(self) -> str:
        kind = self.corruption if isinstance(self.corruption, str) or self.corruption is None else getattr(self.corruption, "__name__", "custom")
        return f"corruption={kind}, noise_level={self.noise_level}, alpha={self.alpha}, beta={self.beta}"
