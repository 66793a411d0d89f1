"""Batched augmentations and corruptions, random per image, on any device.

Every function takes a float batch ``x`` of shape (B, C, H, W) with values in
[0, 1] and draws a fresh random choice for every image of the batch, on the
device the batch is on. Pass a ``torch.Generator`` to make the draw
reproducible; a CPU generator also works for a CUDA batch (the random numbers
are then drawn on the CPU and moved).

Augmentations return the new batch. Corruptions (the denoising autoencoder's
noise) return ``(corrupted, mask)``, where ``mask`` is a bool tensor of the
batch's shape that is True for every element the corruption touched: the
emphasized loss of Vincent et al. (2010) weights those elements differently.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_noise",
    "masking_noise",
    "salt_and_pepper",
    "corrupt",
    "CORRUPTIONS",
    "random_horizontal_flip",
    "random_resized_crop",
    "random_translate",
]


# ----------------------------------------------------------------- randomness
def _check_batch(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a float tensor (B, C, H, W); got {type(x).__name__}")
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"{name} expects a float tensor (B, C, H, W); got {x.dtype} of shape {tuple(x.shape)}")


def _check_fraction(value: float, name: str, what: str = "fraction") -> None:
    if not (0.0 <= float(value) <= 1.0) or math.isnan(float(value)):
        raise ValueError(f"{name}: {what} must be in [0, 1], got {value}")


def _rand(shape, like: torch.Tensor, generator: torch.Generator | None, normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) numbers of ``shape`` on ``like``'s device, dtype float32."""
    draw = torch.randn if normal else torch.rand
    if generator is None or generator.device == like.device:
        return draw(shape, device=like.device, generator=generator)
    return draw(shape, device=generator.device, generator=generator).to(like.device)


def _random_subset_mask(x: torch.Tensor, fraction: float, generator: torch.Generator | None) -> torch.Tensor:
    """Bool (B, C, H, W): exactly ``round(fraction * C*H*W)`` True per image, chosen at random per image."""
    b = x.shape[0]
    d = x[0].numel()
    k = int(round(fraction * d))
    mask = torch.zeros(b, d, dtype=torch.bool, device=x.device)
    if k > 0:
        scores = _rand((b, d), x, generator)
        mask.scatter_(1, scores.topk(k, dim=1).indices, True)
    return mask.view_as(x)


# ---------------------------------------------------------------- corruptions
def gaussian_noise(
    x: torch.Tensor, sigma: float = 0.1, *, clip: bool = True, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive isotropic gaussian noise: x~ = x + sigma * eps, eps ~ N(0, I).

    Vincent et al. (2010), "GS". Every element is corrupted, so the mask is all
    True. With ``clip`` (the default) the result is clamped to [0, 1], the
    range of an image; the seed report 000 uses sigma = 0.1.

    Args:
        x: (B, C, H, W) float in [0, 1].
    Returns:
        (corrupted (B, C, H, W), mask (B, C, H, W) bool, all True)
    """
    _check_batch(x, "gaussian_noise")
    if not sigma >= 0:
        raise ValueError(f"gaussian_noise: sigma must be >= 0, got {sigma}")
    noisy = x + sigma * _rand(x.shape, x, generator, normal=True).to(x.dtype)
    if clip:
        noisy = noisy.clamp(0.0, 1.0)
    return noisy, torch.ones_like(x, dtype=torch.bool)


def masking_noise(
    x: torch.Tensor, fraction: float = 0.25, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masking noise: a fraction of the elements of each image is forced to 0.

    Vincent et al. (2010), "MN". Exactly ``round(fraction * C*H*W)`` elements
    per image, chosen independently for every image.

    Args:
        x: (B, C, H, W) float in [0, 1].
    Returns:
        (corrupted (B, C, H, W), mask (B, C, H, W) bool, True where forced to 0)
    """
    _check_batch(x, "masking_noise")
    _check_fraction(fraction, "masking_noise")
    mask = _random_subset_mask(x, fraction, generator)
    return x.masked_fill(mask, 0.0), mask


def salt_and_pepper(
    x: torch.Tensor,
    fraction: float = 0.25,
    *,
    low: float = 0.0,
    high: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Salt-and-pepper noise: a fraction of the elements is set to ``low`` or ``high`` by a fair coin.

    Vincent et al. (2010), "SP". Exactly ``round(fraction * C*H*W)`` elements
    per image, chosen independently for every image; each is set to the
    minimum or maximum value with probability 1/2.

    Args:
        x: (B, C, H, W) float in [0, 1].
    Returns:
        (corrupted (B, C, H, W), mask (B, C, H, W) bool, True where set to low or high)
    """
    _check_batch(x, "salt_and_pepper")
    _check_fraction(fraction, "salt_and_pepper")
    mask = _random_subset_mask(x, fraction, generator)
    coin = _rand(x.shape, x, generator) < 0.5
    salt = torch.where(coin, torch.full_like(x, high), torch.full_like(x, low))
    return torch.where(mask, salt, x), mask


CORRUPTIONS = {
    "gaussian": gaussian_noise,
    "masking": masking_noise,
    "salt_and_pepper": salt_and_pepper,
}


def corrupt(
    x: torch.Tensor, kind: str | None, level: float, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the corruption named ``kind`` ("gaussian", "masking", "salt_and_pepper")
    at ``level`` (sigma for gaussian, the fraction otherwise). ``kind=None``
    returns ``x`` unchanged with an all-False mask (a plain autoencoder)."""
    if kind is None or kind == "none":
        _check_batch(x, "corrupt")
        return x, torch.zeros_like(x, dtype=torch.bool)
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; expected one of {sorted(CORRUPTIONS)} or None")
    return CORRUPTIONS[kind](x, level, generator=generator)


# -------------------------------------------------------------- augmentations
def random_horizontal_flip(x: torch.Tensor, p: float = 0.5, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``. (B, C, H, W) -> (B, C, H, W)."""
    _check_batch(x, "random_horizontal_flip")
    _check_fraction(p, "random_horizontal_flip", "p")
    flip = (_rand((x.shape[0], 1, 1, 1), x, generator) < p).to(x.dtype)
    return flip * x.flip(-1) + (1 - flip) * x


def _sample_grid(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_resized_crop(
    x: torch.Tensor,
    size: int | tuple[int, int] | None = None,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random box from each image and resize it to ``size`` (default: the input size).

    The box covers a fraction of the area drawn uniformly from ``scale`` and
    has an aspect ratio drawn log-uniformly from ``ratio`` (as torchvision's
    RandomResizedCrop, but one affine resampling for the whole batch).
    (B, C, H, W) -> (B, C, size, size).
    """
    _check_batch(x, "random_resized_crop")
    b, _, h, w = x.shape
    out = (h, w) if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    u = _rand((b, 4), x, generator).float()
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    aspect = torch.exp(log_r)
    # box width and height as fractions of the image, kept inside it
    bw = torch.sqrt(area * aspect).clamp(max=1.0)
    bh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (1 - bw) * (2 * u[:, 2] - 1)  # centre in [-1, 1] coordinates, box stays inside
    cy = (1 - bh) * (2 * u[:, 3] - 1)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = bw, cx
    theta[:, 1, 1], theta[:, 1, 2] = bh, cy
    return _sample_grid(x, theta, out)


def random_translate(
    x: torch.Tensor, max_shift: int = 2, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each image by a random whole number of pixels in [-max_shift, max_shift]
    along each axis, filling with zeros. (B, C, H, W) -> (B, C, H, W)."""
    _check_batch(x, "random_translate")
    b, _, h, w = x.shape
    shifts = torch.floor(_rand((b, 2), x, generator) * (2 * max_shift + 1)) - max_shift
    pad = F.pad(x, (max_shift,) * 4)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + max_shift - shifts[:, 1].long().view(b, 1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) + max_shift - shifts[:, 0].long().view(b, 1, 1)
    index = (rows * pad.shape[-1] + cols).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    return pad.flatten(2).gather(2, index).view_as(x)
