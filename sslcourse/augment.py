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
    "color_jitter",
    "random_grayscale",
    "gaussian_blur",
    "solarize",
    "ContrastiveViews",
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


# ------------------------------------------------------------ colour and blur
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, the weights torchvision's grayscale uses


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) grey level; a one-channel batch is its own grey."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _check_colour_channels(x: torch.Tensor, name: str) -> None:
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} expects 1 (grey) or 3 (RGB) channels; got {x.shape[1]}")


def _per_image_factor(x: torch.Tensor, strength: float, generator, name: str, what: str) -> torch.Tensor:
    """(B, 1, 1, 1) factors uniform in [max(0, 1 - strength), 1 + strength]."""
    if strength < 0 or math.isnan(strength):
        raise ValueError(f"{name}: {what} must be >= 0, got {strength}")
    lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
    return (lo + (hi - lo) * _rand((x.shape[0], 1, 1, 1), x, generator)).to(x.dtype)


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of RGB images by ``turns`` (B,) of a full circle, in YIQ space."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=x.dtype, device=x.device)
    to_rgb = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
    angle = (2 * math.pi * turns).to(x.dtype).view(-1, 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
    return torch.einsum("ij,bjhw->bihw", to_rgb, yiq)


def color_jitter(
    x: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    *,
    p: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue, per image, with probability ``p``.

    SimCLR's colour distortion (Chen et al. 2020, Appendix A; strength s = 1 is
    0.8, 0.8, 0.8, 0.2 and they use s = 0.5 on CIFAR-10, i.e. these defaults).
    Each factor is drawn per image: brightness multiplies by b in
    [1 - brightness, 1 + brightness]; contrast blends with the image's mean
    grey; saturation blends with each pixel's grey; hue rotates the chroma by
    h in [-hue, hue] turns. Applied in that order (torchvision shuffles the
    order), each followed by a clamp to [0, 1]. On one-channel images only
    brightness and contrast apply. (B, C, H, W) -> (B, C, H, W).
    """
    _check_batch(x, "color_jitter")
    _check_colour_channels(x, "color_jitter")
    _check_fraction(p, "color_jitter", "p")
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"color_jitter: hue must be in [0, 0.5] turns, got {hue}")
    b_f = _per_image_factor(x, brightness, generator, "color_jitter", "brightness")
    c_f = _per_image_factor(x, contrast, generator, "color_jitter", "contrast")
    s_f = _per_image_factor(x, saturation, generator, "color_jitter", "saturation")
    h_t = (2 * _rand((x.shape[0],), x, generator) - 1) * hue
    apply = (_rand((x.shape[0], 1, 1, 1), x, generator) < p).to(x.dtype)

    out = (x * b_f).clamp(0, 1)
    mean_grey = _luma(out).mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean_grey) * c_f + mean_grey).clamp(0, 1)
    if x.shape[1] == 3:
        grey = _luma(out)
        out = ((out - grey) * s_f + grey).clamp(0, 1)
        if hue > 0:
            out = _rotate_hue(out, h_t).clamp(0, 1)
    return apply * out + (1 - apply) * x


def random_grayscale(x: torch.Tensor, p: float = 0.2, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each RGB image by its grey level (in all three channels) with probability ``p``.

    SimCLR uses p = 0.2. One-channel images come back unchanged.
    (B, C, H, W) -> (B, C, H, W).
    """
    _check_batch(x, "random_grayscale")
    _check_colour_channels(x, "random_grayscale")
    _check_fraction(p, "random_grayscale", "p")
    if x.shape[1] == 1:
        return x
    apply = (_rand((x.shape[0], 1, 1, 1), x, generator) < p).to(x.dtype)
    return apply * _luma(x).expand_as(x) + (1 - apply) * x


def gaussian_blur(
    x: torch.Tensor,
    sigma: tuple[float, float] = (0.1, 2.0),
    *,
    p: float = 0.5,
    kernel_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur each image with a Gaussian of its own sigma, drawn uniformly from ``sigma``, with probability ``p``.

    As SimCLR (Chen et al. 2020, Appendix A): sigma in [0.1, 2.0] pixels and a
    kernel about 10% of the image side (odd, at least 3; ``kernel_size`` to
    choose it). Separable, reflect-padded, one grouped convolution for the
    whole batch. (B, C, H, W) -> (B, C, H, W).
    """
    _check_batch(x, "gaussian_blur")
    _check_fraction(p, "gaussian_blur", "p")
    if not 0 < sigma[0] <= sigma[1]:
        raise ValueError(f"gaussian_blur: sigma must be a range (lo, hi) with 0 < lo <= hi, got {sigma}")
    b, c, h, w = x.shape
    k = kernel_size if kernel_size is not None else max(3, int(0.1 * min(h, w)) // 2 * 2 + 1)
    if k < 1 or k % 2 == 0 or k // 2 >= min(h, w):
        raise ValueError(f"gaussian_blur: kernel_size must be odd and smaller than twice the image side; got {k} for {h}x{w}")
    s = (sigma[0] + (sigma[1] - sigma[0]) * _rand((b, 1), x, generator)).to(x.dtype)
    offsets = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    kernel = torch.exp(-0.5 * (offsets.view(1, k) / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, k)
    kernel = kernel.repeat_interleave(c, dim=0)  # (B*C, k), one per channel of each image
    flat = x.reshape(1, b * c, h, w)
    r = k // 2
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="reflect"), kernel.view(b * c, 1, 1, k), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="reflect"), kernel.view(b * c, 1, k, 1), groups=b * c)
    apply = (_rand((b, 1, 1, 1), x, generator) < p).to(x.dtype)
    return apply * flat.view_as(x) + (1 - apply) * x


def solarize(x: torch.Tensor, threshold: float = 0.5, *, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Invert the pixels at or above ``threshold`` (x -> 1 - x) with probability ``p`` per image.

    BYOL's second view uses p = 0.2 (Grill et al. 2020, appendix on augmentations). Values are in
    [0, 1]. (B, C, H, W) -> (B, C, H, W).
    """
    _check_batch(x, "solarize")
    _check_fraction(p, "solarize", "p")
    _check_fraction(threshold, "solarize", "threshold")
    apply = (_rand((x.shape[0], 1, 1, 1), x, generator) < p).to(x.dtype)
    return apply * torch.where(x >= threshold, 1 - x, x) + (1 - apply) * x


class ContrastiveViews:
    """The SimCLR augmentation pipeline, batched on the batch's device.

    Random resized crop, horizontal flip, colour jitter (with probability
    ``jitter_p``), random grayscale, Gaussian blur, optionally solarize; each
    strength a keyword. Call it on a batch to get one view; ``pair`` gives two
    independent views of the same images. (B, C, H, W) -> (B, C, size, size).

    Defaults follow Chen et al. (2020), Appendix A, with colour strength 0.5
    (their CIFAR-10 setting). ``blur_p`` defaults to 0 because SimCLR leaves
    blur out on CIFAR-10's small images; set it (0.5) for 96 px and above.
    ``crop_scale`` starts at 0.2 as in MoCo v2 (Chen et al. 2020b) rather than
    SimCLR's 0.08: on 16-pixel digits an 8% crop is barely one stroke.
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        flip_p: float = 0.5,
        jitter_strength: float = 0.5,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize_p: float = 0.0,
    ) -> None:
        self.size = size
        self.crop_scale = crop_scale
        self.flip_p = flip_p
        s = jitter_strength
        self.jitter = dict(brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s)
        self.jitter_p = jitter_p
        self.grayscale_p = grayscale_p
        self.blur_p = blur_p
        self.blur_sigma = blur_sigma
        self.solarize_p = solarize_p

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator
        x = random_resized_crop(x, self.size, scale=self.crop_scale, generator=g)
        x = random_horizontal_flip(x, self.flip_p, generator=g)
        x = color_jitter(x, **self.jitter, p=self.jitter_p, generator=g)
        x = random_grayscale(x, self.grayscale_p, generator=g)
        if self.blur_p > 0:
            x = gaussian_blur(x, self.blur_sigma, p=self.blur_p, generator=g)
        if self.solarize_p > 0:
            x = solarize(x, p=self.solarize_p, generator=g)
        return x

    def pair(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent views of each image: ((B, C, s, s), (B, C, s, s))."""
        return self(x, generator=generator), self(x, generator=generator)
