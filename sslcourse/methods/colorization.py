"""Predicting one view of an image from another: colorization and split-brain autoencoders.

An image in CIE Lab is two views of one scene: its lightness L (a gray image)
and its colour ab. Predicting colour from gray (Zhang, Isola and Efros 2016)
forces a network to recognise what it sees: grass is green, sky is blue, a
stop sign red. A split-brain autoencoder (Zhang, Isola and Efros 2017) trains
two half-networks, one predicting ab from L and one L from ab, and keeps both
halves as the representation.

The encoders here take ordinary images, gray (B, 1, H, W) or colour
(B, 3, H, W) in [0, 1], and convert them to Lab themselves, so a colorization
encoder pretrained on colour photos can be probed on gray digits through their
lightness, the same way :func:`sslcourse.evaluate.extract_features` probes any
other encoder.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import color, losses
from ..nets import ConvDecoder, ConvEncoder, conv_bn_relu
from .base import SSLMethod, check_number

__all__ = ["LabEncoder", "Colorization", "SplitBrain", "to_lab_inputs", "AB_SCALE"]

#: a and b are divided by this to train on numbers of order 1
AB_SCALE = 110.0


def to_lab_inputs(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 1 or 3, H, W) in [0, 1] -> (L / 100 (B, 1, H, W), ab / AB_SCALE (B, 2, H, W)).

    A gray image has no colour: its ab is zero.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected gray or colour images (B, 1 or 3, H, W) in [0, 1]; got {got}")
    lab = color.rgb_to_lab(images.float().expand(-1, 3, -1, -1))
    return lab[:, :1] / 100.0, lab[:, 1:] / AB_SCALE


class LabEncoder(nn.Module):
    """An encoder that reads chosen Lab channels of ordinary images.

    ``nets`` maps a channel group, "L" or "ab", to a conv net reading it; the
    outputs are concatenated along channels. Colorization uses {"L": net};
    a split-brain autoencoder {"L": net1, "ab": net2}.
    (B, 1 or 3, H, W) in [0, 1] -> (B, sum of the nets' channels, h, w).
    """

    def __init__(self, **nets: nn.Module) -> None:
        super().__init__()
        unknown = set(nets) - {"L", "ab"}
        if not nets or unknown:
            raise ValueError(f"LabEncoder takes nets for 'L' and/or 'ab'; got {sorted(nets)}")
        self.nets = nn.ModuleDict(nets)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        lightness, ab = to_lab_inputs(images)
        channels = {"L": lightness, "ab": ab}
        return torch.cat([net(channels[group]) for group, net in self.nets.items()], dim=1)

    def truncated(self, depth: int) -> "LabEncoder":
        """The same encoder cut after ``depth`` layers of every net (sharing weights); see
        :meth:`sslcourse.nets.ConvEncoder.truncated`."""
        return LabEncoder(**{group: net.truncated(depth) for group, net in self.nets.items()})


class Colorization(SSLMethod):
    """Colorization (Zhang, Isola and Efros 2016): predict the ab channels from the lightness L.

    Args:
        widths: widths of the :class:`~sslcourse.nets.ConvEncoder` on L and its mirror decoder.
        loss: "regression" (mean squared error on ab / 110) or "classification"
            (the paper's: cross-entropy against soft-encoded ab bins, with class rebalancing).
        grid_size: side of the ab bins (10 in the paper).
        rebalance: weight each pixel by the rarity of its colour (classification only).
        mix: lambda of the rebalancing weights (0.5 in the paper).
        temperature: annealed-mean temperature for :meth:`colorize` (0.38 in the paper).
        prior: the ab bin distribution p of the training data, (Q,). When it is
            None and ``rebalance`` is on, the method counts the bins of every
            batch it trains on and uses the counts so far (after one epoch, the
            training set's distribution); :meth:`set_prior` sets it from a dataset.
            The prior (``bin_counts``) and whether it is fixed (``prior_fixed``) are
            buffers, so checkpoints keep them.

    ``encoder`` is a :class:`LabEncoder` reading L. ``training_step`` returns
    ``{"loss"}`` (and ``"ab_mse"``, the error of the decoded colours, in ab units).
    """

    def __init__(
        self,
        *,
        widths: tuple[int, int] = (32, 64),
        loss: str = "regression",
        grid_size: float = 10.0,
        rebalance: bool = True,
        mix: float = 0.5,
        temperature: float = 0.38,
        prior: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if loss not in ("regression", "classification"):
            raise ValueError(f"loss must be 'regression' or 'classification', got {loss!r}")
        check_number("grid_size", grid_size, low=0, low_open=True)
        check_number("mix", mix, low=0, high=1)
        check_number("temperature", temperature, low=0, low_open=True)
        self.loss_kind, self.rebalance, self.mix, self.temperature = loss, rebalance, mix, temperature
        self.encoder = LabEncoder(L=ConvEncoder(1, widths))
        if loss == "regression":
            self.decoder = ConvDecoder(2, widths, final_activation=None)
        else:
            self.register_buffer("bins", color.ab_gamut_bins(grid_size))
            self.register_buffer("bin_counts", torch.zeros(len(self.bins)))
            # True once set_prior fixed the prior; until then training counts the bins it sees
            self.register_buffer("prior_fixed", torch.tensor(False))
            # as in the paper, the class distribution is predicted at a quarter of the resolution
            # (the encoder's), then decoded and upsampled: 16 times cheaper than per pixel
            self.decoder = nn.Sequential(
                conv_bn_relu(self.encoder.nets["L"].out_channels, widths[1]),
                conv_bn_relu(widths[1], widths[1]),
                nn.Conv2d(widths[1], len(self.bins), 1),
            )
            if prior is not None:
                self.set_prior(prior)

    @property
    def num_bins(self) -> int:
        return len(self.bins) if self.loss_kind == "classification" else 0

    def set_prior(self, prior_or_images: torch.Tensor) -> None:
        """Fix the ab prior: a (Q,) distribution, or colour images (N, 3, H, W) (uint8 or float in [0, 1])."""
        if self.loss_kind != "classification":
            raise ValueError("only the classification loss uses an ab prior")
        x = prior_or_images
        if x.dim() == 1:
            if len(x) != self.num_bins:
                raise ValueError(f"prior has {len(x)} entries, the method has {self.num_bins} ab bins")
            counts = x.float()
        else:
            images = x.float().div(255) if x.dtype == torch.uint8 else x.float()
            ab = torch.cat([to_lab_inputs(images[i : i + 256])[1] for i in range(0, len(images), 256)]) * AB_SCALE
            counts = color.ab_prior(ab, self.bins.cpu())
        self.bin_counts.copy_(counts.to(self.bin_counts) / counts.sum())
        self.prior_fixed.fill_(True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The decoder's output: ab / 110 (B, 2, H, W) for regression; bin logits (B, Q, H/4, W/4)
        for classification."""
        return self.decoder(self.encoder(images))

    def _target_ab(self, ab: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """ab (B, 2, H, W) averaged down to the resolution of ``like`` (the logits)."""
        return ab if ab.shape[-2:] == like.shape[-2:] else F.adaptive_avg_pool2d(ab, like.shape[-2:])

    @torch.no_grad()
    def colorize(self, images: torch.Tensor) -> torch.Tensor:
        """Colour images (B, 3, H, W) in [0, 1] from the lightness of ``images`` (gray or colour)."""
        lightness, _ = to_lab_inputs(images)
        out = self(images).float()
        if self.loss_kind == "classification":
            ab = color.annealed_mean(out, self.bins, temperature=self.temperature)
            ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)
        else:
            ab = out * AB_SCALE
        return color.lab_to_rgb(torch.cat([lightness * 100, ab], dim=1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images = batch[0]
        if images.shape[1] != 3:
            raise ValueError(f"Colorization trains on colour images (B, 3, H, W); got {tuple(images.shape)}")
        _, ab = to_lab_inputs(images)
        out = self(images).float()
        if self.loss_kind == "regression":
            loss = losses.reconstruction_mse(out, ab)
            ab_mse = (out.detach() - ab).pow(2).mean() * AB_SCALE**2
            return {"loss": loss, "ab_mse": ab_mse}
        ab_units = self._target_ab(ab, out) * AB_SCALE
        target = color.soft_encode_ab(ab_units, self.bins)
        weights = None
        if self.rebalance:
            # counted while the prior is not fixed; a multiplication rather than an `if`, so a GPU never waits for it
            nearest = target.argmax(1).flatten()
            counts = torch.zeros_like(self.bin_counts).scatter_add_(0, nearest, torch.ones_like(nearest, dtype=self.bin_counts.dtype))
            self.bin_counts += counts * (~self.prior_fixed)
            prior = self.bin_counts / self.bin_counts.sum()
            pixel_weights = color.rebalancing_weights(prior, mix=self.mix)
            weights = pixel_weights[target.argmax(1)]  # v(Z): the weight of each pixel's nearest bin
        loss = losses.soft_cross_entropy(out, target, weights)
        decoded = color.annealed_mean(out.detach(), self.bins, temperature=self.temperature)
        return {"loss": loss, "ab_mse": (decoded - ab_units).pow(2).mean()}

    def extra_repr(self) -> str:
        return f"loss={self.loss_kind}, bins={self.num_bins}, rebalance={self.rebalance}"


class SplitBrain(SSLMethod):
    """Split-brain autoencoder (Zhang, Isola and Efros 2017): two halves predict each other's channels.

    One half reads L and predicts ab, the other reads ab and predicts L; each
    is a :class:`~sslcourse.nets.ConvEncoder` of half the width with its own
    decoder, and the representation (``encoder``) concatenates both halves'
    features. Both predictions use a squared error (the paper's "l2, l2"
    variant; its best results use classification losses for both halves).

    ``training_step`` returns ``{"loss", "l_to_ab", "ab_to_l"}``.
    """

    def __init__(self, *, widths: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        half = (max(1, widths[0] // 2), max(1, widths[1] // 2))
        self.encoder = LabEncoder(L=ConvEncoder(1, half), ab=ConvEncoder(2, half))
        self.l_to_ab = ConvDecoder(2, half, final_activation=None)
        self.ab_to_l = ConvDecoder(1, half, final_activation=None)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images = batch[0]
        if images.shape[1] != 3:
            raise ValueError(f"SplitBrain trains on colour images (B, 3, H, W); got {tuple(images.shape)}")
        lightness, ab = to_lab_inputs(images)
        pred_ab = self.l_to_ab(self.encoder.nets["L"](lightness)).float()
        pred_l = self.ab_to_l(self.encoder.nets["ab"](ab)).float()
        l_to_ab = losses.reconstruction_mse(pred_ab, ab)
        ab_to_l = losses.reconstruction_mse(pred_l, lightness)
        return {"loss": l_to_ab + ab_to_l, "l_to_ab": l_to_ab.detach(), "ab_to_l": ab_to_l.detach()}

    @torch.no_grad()
    def colorize(self, images: torch.Tensor) -> torch.Tensor:
        """Colour images (B, 3, H, W) from the lightness of ``images``, by the L -> ab half."""
        lightness, _ = to_lab_inputs(images)
        ab = self.l_to_ab(self.encoder.nets["L"](lightness)).float() * AB_SCALE
        return color.lab_to_rgb(torch.cat([lightness * 100, ab], dim=1))
