"""Masks for inpainting: which pixels of each image a context encoder must fill in.

Pathak et al. (2016), "Context Encoders: Feature Learning by Inpainting",
remove three kinds of region from the image: a fixed central square, several
random blocks, and random arbitrary-shaped regions. They found that the
central square gives the worst features: the network learns to paint the
edges of a fixed hole. Random blocks and random regions avoid that.

Every function here returns a bool tensor (B, 1, H, W) that is True where a
pixel is hidden (the same for every channel), on the requested ``device``.
The random masks are drawn afresh for every image of the batch; pass a
``torch.Generator`` to make the draw reproducible (a CPU generator also works
for a CUDA mask: the numbers are drawn on the CPU and moved).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["central_mask", "random_block_mask", "random_region_mask", "make_mask", "MASKS"]


# ------------------------------------------------------------------- helpers
def _batch_size_and_hw(shape: Sequence[int], name: str) -> tuple[int, int, int]:
    """(B, C, H, W) or (B, H, W) -> (B, H, W)."""
    try:
        dims = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} expects a shape (B, C, H, W) such as x.shape; got {type(shape).__name__}") from None
    if len(dims) not in (3, 4) or min(dims) < 1:
        raise ValueError(f"{name} expects a shape (B, C, H, W) or (B, H, W) of positive sizes; got {dims}")
    return dims[0], dims[-2], dims[-1]


def _check_fraction(value: float, name: str, what: str = "fraction") -> None:
    if not (0.0 <= float(value) <= 1.0) or math.isnan(float(value)):
        raise ValueError(f"{name}: {what} must be in [0, 1], got {value}")


def _rand(shape, device: torch.device, generator: torch.Generator | None, normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) float32 numbers of ``shape`` on ``device``."""
    draw = torch.randn if normal else torch.rand
    if generator is None or generator.device == device:
        return draw(shape, device=device, generator=generator)
    return draw(shape, device=generator.device, generator=generator).to(device)


def _side(size: int, fraction: float) -> int:
    """round(sqrt(fraction) * size), at least 1 when fraction > 0 and at most size."""
    if fraction <= 0:
        return 0
    return min(size, max(1, int(round(math.sqrt(fraction) * size))))


def _boxes_to_mask(top: torch.Tensor, left: torch.Tensor, h: int, w: int, size: tuple[int, int]) -> torch.Tensor:
    """Union of (B, K) boxes of size h x w at (top, left) -> bool (B, 1, H, W)."""
    H, W = size
    rows = torch.arange(H, device=top.device).view(1, 1, H, 1)
    cols = torch.arange(W, device=top.device).view(1, 1, 1, W)
    top, left = top[..., None, None], left[..., None, None]  # (B, K, 1, 1)
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)  # (B, K, H, W)
    return inside.any(dim=1, keepdim=True)


# --------------------------------------------------------------------- masks
def central_mask(
    shape: Sequence[int], fraction: float = 0.25, *, device: str | torch.device | None = None
) -> torch.Tensor:
    """A centred rectangle covering about ``fraction`` of every image.

    Pathak et al. (2016), "central region" (there, a quarter of the image). The
    box is h x w with h close to sqrt(fraction) * H and w close to
    sqrt(fraction) * W (a square on square images), rounded to the nearest
    size with the parity of H (of W), so that the margins above and below
    (left and right) are exactly equal: on 16x16 images, fraction 0.25 hides
    the 8x8 square from row 4 to row 11. The same box for every image.

    Args:
        shape: the batch's shape (B, C, H, W), e.g. ``x.shape``; or (B, H, W).
        fraction: the area to hide, in [0, 1].
        device: where the mask lives (default: the CPU).
    Returns:
        bool (B, 1, H, W), True inside the box.
    """
    b, H, W = _batch_size_and_hw(shape, "central_mask")
    _check_fraction(fraction, "central_mask")

    def centred_side(size: int) -> int:
        if fraction <= 0:
            return 0
        exact = math.sqrt(fraction) * size
        # the nearest integer with the parity of ``size`` (equal margins), at least 1 pixel
        side = 2 * round((exact - size % 2) / 2) + size % 2
        return min(size, max(side, 2 - size % 2))

    h, w = centred_side(H), centred_side(W)
    mask = torch.zeros(b, 1, H, W, dtype=torch.bool, device=device)
    top, left = (H - h) // 2, (W - w) // 2
    mask[:, :, top : top + h, left : left + w] = True
    return mask


def random_block_mask(
    shape: Sequence[int],
    num_blocks: int = 4,
    block_fraction: float = 1 / 16,
    *,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Several rectangles at random places, drawn independently for every image.

    Pathak et al. (2016), "random block": smaller, possibly overlapping masks
    that together cover up to a quarter of the image. Each of the
    ``num_blocks`` blocks is round(sqrt(block_fraction) * H) by
    round(sqrt(block_fraction) * W) pixels, lies entirely inside the image,
    and has its top-left corner drawn uniformly. Blocks may overlap, so an
    image has between ``block_fraction`` and ``num_blocks * block_fraction``
    of its area hidden (up to rounding); with the defaults 4 x 1/16, at most
    a quarter, about a fifth on average on 16x16 images.

    Args:
        shape: the batch's shape (B, C, H, W), e.g. ``x.shape``; or (B, H, W).
        num_blocks: blocks per image (>= 0).
        block_fraction: the area of one block, in [0, 1].
        generator: makes the draw reproducible.
        device: where the mask lives (default: the generator's device, else the CPU).
    Returns:
        bool (B, 1, H, W), True inside any block.
    """
    b, H, W = _batch_size_and_hw(shape, "random_block_mask")
    _check_fraction(block_fraction, "random_block_mask", "block_fraction")
    if not isinstance(num_blocks, int) or num_blocks < 0:
        raise ValueError(f"random_block_mask: num_blocks must be an int >= 0, got {num_blocks!r}")
    device = torch.device(device) if device is not None else (generator.device if generator is not None else torch.device("cpu"))
    h, w = _side(H, block_fraction), _side(W, block_fraction)
    if num_blocks == 0 or h == 0 or w == 0:
        return torch.zeros(b, 1, H, W, dtype=torch.bool, device=device)
    u = _rand((2, b, num_blocks), device, generator)
    top = torch.floor(u[0] * (H - h + 1)).long()  # uniform over 0..H-h
    left = torch.floor(u[1] * (W - w + 1)).long()
    return _boxes_to_mask(top, left, h, w, (H, W))


def _gaussian_kernel(sigma: float, device: torch.device) -> tuple[torch.Tensor, int]:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum(), radius


def random_region_mask(
    shape: Sequence[int],
    fraction: float = 0.25,
    *,
    smoothness: float = 0.15,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Arbitrary-shaped random regions covering ``fraction`` of every image.

    Pathak et al. (2016), "random region", cut out shapes taken from the
    segmentation masks of PASCAL VOC. Without a segmentation data set we make
    blob-shaped regions the classic way: draw white gaussian noise, smooth it
    with a gaussian of standard deviation ``smoothness * min(H, W)`` pixels
    (the noise is drawn with a margin of 3 standard deviations and the
    convolution keeps only the valid part, so the field is equally smooth
    everywhere, borders included), and hide the ``round(fraction * H * W)``
    pixels where the smoothed field is largest. Every image therefore has
    exactly that many pixels hidden, in one or a few connected blobs whose
    boundaries follow the level set of a smooth random surface. Larger
    ``smoothness`` gives fewer, rounder blobs; smaller gives many ragged ones.

    Args:
        shape: the batch's shape (B, C, H, W), e.g. ``x.shape``; or (B, H, W).
        fraction: the area to hide, in [0, 1].
        smoothness: the smoothing scale, as a fraction of the image side (> 0).
        generator: makes the draw reproducible.
        device: where the mask lives (default: the generator's device, else the CPU).
    Returns:
        bool (B, 1, H, W), exactly ``round(fraction * H * W)`` True per image.
    """
    b, H, W = _batch_size_and_hw(shape, "random_region_mask")
    _check_fraction(fraction, "random_region_mask")
    if not smoothness > 0:
        raise ValueError(f"random_region_mask: smoothness must be > 0, got {smoothness}")
    device = torch.device(device) if device is not None else (generator.device if generator is not None else torch.device("cpu"))
    k = int(round(fraction * H * W))
    mask = torch.zeros(b, H * W, dtype=torch.bool, device=device)
    if k == 0:
        return mask.view(b, 1, H, W)
    kernel, r = _gaussian_kernel(smoothness * min(H, W), device)
    noise = _rand((b, 1, H + 2 * r, W + 2 * r), device, generator, normal=True)
    field = F.conv2d(noise, kernel.view(1, 1, -1, 1))  # smooth along rows: (B, 1, H, W + 2r)
    field = F.conv2d(field, kernel.view(1, 1, 1, -1))  # and along columns: (B, 1, H, W)
    mask.scatter_(1, field.flatten(1).topk(k, dim=1).indices, True)
    return mask.view(b, 1, H, W)


MASKS = ("central", "random_block", "random_region")


def make_mask(
    kind: str,
    shape: Sequence[int],
    fraction: float = 0.25,
    *,
    num_blocks: int = 4,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The mask named ``kind`` ("central", "random_block", "random_region") hiding about ``fraction``.

    For "random_block", ``num_blocks`` blocks of ``fraction / num_blocks``
    each, so that ``fraction`` is the most that can be hidden (blocks may
    overlap). Returns bool (B, 1, H, W).
    """
    if kind == "central":
        return central_mask(shape, fraction, device=device)
    if kind == "random_block":
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"make_mask: num_blocks must be a positive int, got {num_blocks!r}")
        return random_block_mask(shape, num_blocks, fraction / num_blocks, generator=generator, device=device)
    if kind == "random_region":
        return random_region_mask(shape, fraction, generator=generator, device=device)
    raise ValueError(f"unknown mask {kind!r}; expected one of {list(MASKS)}")
