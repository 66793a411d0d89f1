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

import functools
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


def _in_own_precision(x: torch.Tensor):
    """A context in which matrix products and convolutions on ``x`` run in ``x``'s own dtype.

    Augmentations run inside the training step, under autocast on a GPU, which
    would compute them in bf16 or fp16: 8 bits of mantissa round colours by up
    to 1/128, coarser than the 1/255 steps of the images themselves, and bf16
    would shift a crop's sampling points by up to about 1/500 of the image side."""
    return torch.autocast(x.device.type, enabled=False)


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
    flip = _rand((x.shape[0], 1, 1, 1), x, generator) < p
    return torch.where(flip, x.flip(-1), x)


def _crop_grid(bw: torch.Tensor, bh: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Where each output pixel samples its image, for axis-aligned boxes: (B, H_out, W_out, 2).

    In grid_sample's coordinates (x right, y down, the image spans [-1, 1]), box b
    is centred at (cx[b], cy[b]) with half-width bw[b] and half-height bh[b]; the
    output pixels' centres are spread evenly over it. The same grid as
    ``affine_grid`` with ``align_corners=False`` gives, built as two outer sums.
    """
    h_out, w_out = size
    xs = (2 * torch.arange(w_out, device=bw.device, dtype=bw.dtype) + 1) / w_out - 1  # (W_out,) pixel centres
    ys = (2 * torch.arange(h_out, device=bh.device, dtype=bh.dtype) + 1) / h_out - 1  # (H_out,)
    gx = cx[:, None] + bw[:, None] * xs  # (B, W_out)
    gy = cy[:, None] + bh[:, None] * ys  # (B, H_out)
    return torch.stack([gx[:, None, :].expand(-1, h_out, -1), gy[:, :, None].expand(-1, -1, w_out)], dim=-1)


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
    RandomResizedCrop, but one bilinear resampling for the whole batch). The
    box always lies inside the image: output pixels near its edge that fall
    between the image's outermost pixel centres and its border take the
    border pixel's value. (B, C, H, W) -> (B, C, size, size).
    """
    _check_batch(x, "random_resized_crop")
    b, _, h, w = x.shape
    out = (h, w) if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    u = _rand((b, 4), x, generator).to(x.dtype)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    aspect = torch.exp(log_r)
    # box width and height as fractions of the image, kept inside it
    bw = torch.sqrt(area * aspect).clamp(max=1.0)
    bh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (1 - bw) * (2 * u[:, 2] - 1)  # centre in [-1, 1] coordinates, box stays inside
    cy = (1 - bh) * (2 * u[:, 3] - 1)
    with _in_own_precision(x):
        return F.grid_sample(x, _crop_grid(bw, bh, cx, cy, out), mode="bilinear", padding_mode="border", align_corners=False)


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
_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))  # rows: Y (luma), I, Q


@functools.lru_cache(maxsize=None)
def _colour_constants(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The luma weights (3,) and the RGB -> YIQ matrix and its inverse (3, 3), in ``dtype`` on ``device``.

    Made once for each dtype and device: a tensor built from Python numbers on
    every call would be copied from the host each time, and on a GPU such a
    copy waits until the GPU has finished all the work queued before it."""
    with torch.inference_mode(False):  # usable in training even when first made under inference mode
        to_yiq = torch.tensor(_TO_YIQ, dtype=torch.float64)
        constants = (torch.tensor(_LUMA, dtype=torch.float64), to_yiq, torch.linalg.inv(to_yiq))
        return tuple(t.to(dtype=dtype, device=device) for t in constants)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) grey level; a one-channel batch is its own grey."""
    if x.shape[1] == 1:
        return x
    luma, _, _ = _colour_constants(x.dtype, x.device)
    b, _, h, w = x.shape
    with _in_own_precision(x):
        return (luma @ x.reshape(b, 3, h * w)).view(b, 1, h, w)  # (3,) @ (B, 3, HW) -> (B, HW)


def _mean_luma(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, 1, 1): each image's mean grey level (the grey of its mean colour)."""
    mean = x.mean(dim=(2, 3))  # (B, C)
    if x.shape[1] == 3:
        mean = (mean * _colour_constants(x.dtype, x.device)[0]).sum(dim=1)  # (B,)
    return mean.reshape(-1, 1, 1, 1)


def _mix_channels(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Each image's colours through its own 3 x 3 matrix: out[b, i] = sum_j matrix[b, i, j] * x[b, j].
    (B, 3, H, W), (B, 3, 3) -> (B, 3, H, W), one batched matrix product."""
    with _in_own_precision(x):
        return torch.bmm(matrix.to(x.dtype), x.reshape(x.shape[0], 3, -1)).view_as(x)


def _check_colour_channels(x: torch.Tensor, name: str) -> None:
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} expects 1 (grey) or 3 (RGB) channels; got {x.shape[1]}")


def _per_image_factor(x: torch.Tensor, strength: float, generator, name: str, what: str) -> torch.Tensor:
    """(B, 1, 1, 1) factors uniform in [max(0, 1 - strength), 1 + strength]."""
    if strength < 0 or math.isnan(strength):
        raise ValueError(f"{name}: {what} must be >= 0, got {strength}")
    lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
    return (lo + (hi - lo) * _rand((x.shape[0], 1, 1, 1), x, generator)).to(x.dtype)


def _saturation_matrix(factor: torch.Tensor) -> torch.Tensor:
    """(B,) factors s -> (B, 3, 3) matrices that blend each pixel with its grey: s * rgb + (1 - s) * grey."""
    luma, _, _ = _colour_constants(factor.dtype, factor.device)
    eye = torch.eye(3, dtype=factor.dtype, device=factor.device)
    s = factor.view(-1, 1, 1)
    return s * eye + (1 - s) * luma.expand(3, 3)  # every row of the second term is the luma weights


def _hue_matrix(turns: torch.Tensor) -> torch.Tensor:
    """(B,) turns h -> (B, 3, 3) matrices that rotate the chroma by h of a full circle in YIQ space:
    RGB -> YIQ, turn (I, Q) by the angle 2 pi h, keep Y, back to RGB."""
    _, to_yiq, to_rgb = _colour_constants(turns.dtype, turns.device)
    angle = 2 * math.pi * turns
    cos, sin, one, zero = torch.cos(angle), torch.sin(angle), torch.ones_like(angle), torch.zeros_like(angle)
    rotation = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=1).view(-1, 3, 3)
    with _in_own_precision(turns):
        return to_rgb @ rotation @ to_yiq


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of RGB images by ``turns`` (B,) of a full circle, in YIQ space. (B, 3, H, W) -> (B, 3, H, W)."""
    return _mix_channels(x, _hue_matrix(turns.to(x.dtype)))


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
    apply = _rand((x.shape[0], 1, 1, 1), x, generator) < p

    out = (x * b_f).clamp_(0, 1)
    mean_grey = _mean_luma(out)
    out = out.sub_(mean_grey).mul_(c_f).add_(mean_grey).clamp_(0, 1)
    if x.shape[1] == 3:  # saturation and hue are linear in RGB: one 3 x 3 matrix per image each
        out = _mix_channels(out, _saturation_matrix(s_f.view(-1))).clamp_(0, 1)
        if hue > 0:
            out = _rotate_hue(out, h_t).clamp_(0, 1)
    return torch.where(apply, out, x)


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
    apply = _rand((x.shape[0], 1, 1, 1), x, generator) < p
    return torch.where(apply, _luma(x), x)


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
    with _in_own_precision(x):
        flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="reflect"), kernel.view(b * c, 1, 1, k), groups=b * c)
        flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="reflect"), kernel.view(b * c, 1, k, 1), groups=b * c)
    apply = _rand((b, 1, 1, 1), x, generator) < p
    return torch.where(apply, flat.view_as(x), x)


def solarize(x: torch.Tensor, threshold: float = 0.5, *, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Invert the pixels at or above ``threshold`` (x -> 1 - x) with probability ``p`` per image.

    BYOL's second view uses p = 0.2 (Grill et al. 2020, appendix on augmentations). Values are in
    [0, 1]. (B, C, H, W) -> (B, C, H, W).
    """
    _check_batch(x, "solarize")
    _check_fraction(p, "solarize", "p")
    _check_fraction(threshold, "solarize", "threshold")
    apply = _rand((x.shape[0], 1, 1, 1), x, generator) < p
    return torch.where(apply & (x >= threshold), 1 - x, x)


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
