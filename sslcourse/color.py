"""Colour spaces for the colorization methods: CIE Lab, and quantized ab.

Colorization (Zhang, Isola and Efros 2016) splits an image into its lightness
L and its two colour channels a, b, and predicts ab from L. Everything here is
batched and differentiable where it can be, on any device:

- :func:`rgb_to_lab` and :func:`lab_to_rgb`: sRGB in [0, 1] <-> CIE Lab (D65),
  L in [0, 100] and a, b roughly in [-110, 110]; the same formulas as
  scikit-image's ``rgb2lab`` / ``lab2rgb`` (tests compare the two).
- :func:`ab_gamut_bins`: the centres of the ab grid cells that hold colours a
  screen can show (the paper keeps the Q = 313 in-gamut bins of a grid of
  size 10; the count here comes from this module's own sRGB gamut test).
- :func:`soft_encode_ab`, :func:`rebalancing_weights`, :func:`annealed_mean`:
  the paper's classification targets, class rebalancing and decoding.
"""

from __future__ import annotations

import torch

__all__ = [
    "rgb_to_lab",
    "lab_to_rgb",
    "gray_to_lightness",
    "ab_gamut_bins",
    "soft_encode_ab",
    "ab_prior",
    "rebalancing_weights",
    "annealed_mean",
]

# sRGB (linear) -> XYZ, and the D65 white point
_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]], dtype=torch.float64
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_DELTA = 6 / 29


def _check_channels(x: torch.Tensor, name: str, channels: int = 3) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} expects a float tensor (B, {channels}, H, W); got {got}")


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 matrix to the channel axis of (B, 3, H, W)."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(x), x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] (B, 3, H, W) -> CIE Lab (B, 3, H, W): L in [0, 100], a and b about [-110, 110].

    sRGB is linearised (the 2.4 gamma with its linear toe), mapped to XYZ and
    divided by the D65 white; then L = 116 f(Y) - 16, a = 500 (f(X) - f(Y)),
    b = 200 (f(Y) - f(Z)) with f(t) = t^(1/3) above (6/29)^3 and linear below.
    """
    _check_channels(rgb, "rgb_to_lab")
    rgb = rgb.clamp(0.0, 1.0)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _mix(_RGB_TO_XYZ, linear) / _WHITE.to(rgb).view(1, 3, 1, 1)
    f = torch.where(xyz > _DELTA**3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * _DELTA**2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
    """CIE Lab (B, 3, H, W) -> sRGB (B, 3, H, W); clipped to [0, 1] unless ``clip=False``
    (then values outside [0, 1] mark colours a screen cannot show)."""
    _check_channels(lab, "lab_to_rgb")
    L, a, b = lab.unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=1)
    xyz = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29)) * _WHITE.to(lab).view(1, 3, 1, 1)
    linear = _mix(torch.linalg.inv(_RGB_TO_XYZ), xyz)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(1e-12) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0.0, 1.0) if clip else rgb


def gray_to_lightness(gray: torch.Tensor) -> torch.Tensor:
    """Gray images (B, 1, H, W) in [0, 1] -> their lightness L (B, 1, H, W) in [0, 100]
    (a gray pixel is an sRGB pixel with three equal channels)."""
    _check_channels(gray, "gray_to_lightness", channels=1)
    return rgb_to_lab(gray.expand(-1, 3, -1, -1))[:, :1]


def ab_gamut_bins(
    grid_size: float = 10.0, *, lightness_steps: int = 51, samples_per_side: int = 5, ab_range: float = 110.0
) -> torch.Tensor:
    """Centres (Q, 2) of the ab grid cells (side ``grid_size``) that contain a colour inside the sRGB gamut.

    A cell counts when any of ``samples_per_side``**2 ab points spread over the
    cell (its edges included), at any of ``lightness_steps`` lightness values
    in [0, 100], converts to sRGB inside [0, 1]. Centres run over
    [-ab_range, ab_range] on multiples of ``grid_size``.
    """
    if not grid_size > 0:
        raise ValueError(f"grid_size must be positive, got {grid_size}")
    centres = torch.arange(-ab_range, ab_range + 1e-9, grid_size, dtype=torch.float64)
    a, b = torch.meshgrid(centres, centres, indexing="ij")
    ab = torch.stack([a.flatten(), b.flatten()], dim=1)  # (G, 2)
    offsets = torch.linspace(-grid_size / 2, grid_size / 2, samples_per_side, dtype=torch.float64)
    da, db = torch.meshgrid(offsets, offsets, indexing="ij")
    points = ab[:, None, :] + torch.stack([da.flatten(), db.flatten()], dim=1)[None]  # (G, S, 2)
    L = torch.linspace(0, 100, lightness_steps, dtype=torch.float64)
    g, s = points.shape[:2]
    lab = torch.cat([L.view(-1, 1, 1, 1).expand(-1, g, s, 1), points.expand(len(L), -1, -1, -1)], dim=3)  # (L, G, S, 3)
    rgb = lab_to_rgb(lab.reshape(1, -1, 3).permute(0, 2, 1).unsqueeze(-1), clip=False)  # (1, 3, L*G*S, 1)
    ok = ((rgb >= -1e-6) & (rgb <= 1 + 1e-6)).all(dim=1).view(len(L), g, s)
    return ab[ok.any(dim=2).any(dim=0)].float()


def soft_encode_ab(ab: torch.Tensor, bins: torch.Tensor, *, neighbours: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """The paper's soft targets: each pixel's ab spread over its ``neighbours`` nearest bins with
    gaussian weights (std ``sigma``), normalised to sum to 1. (B, 2, H, W) -> (B, Q, H, W)."""
    _check_channels(ab, "soft_encode_ab", channels=2)
    bsz, _, h, w = ab.shape
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2)  # (P, 2)
    bins = bins.to(points)
    dist2 = torch.cdist(points, bins).pow(2)  # (P, Q)
    near, index = dist2.topk(min(neighbours, len(bins)), dim=1, largest=False)
    weight = torch.softmax(-near / (2 * sigma**2), dim=1)  # gaussian weights, normalised
    target = torch.zeros_like(dist2).scatter_(1, index, weight)
    return target.view(bsz, h, w, -1).permute(0, 3, 1, 2)


def ab_prior(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Empirical distribution (Q,) of the nearest bin over every pixel of ``ab`` (B, 2, H, W)."""
    _check_channels(ab, "ab_prior", channels=2)
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    nearest = torch.cdist(points, bins.to(points)).argmin(dim=1)
    counts = torch.bincount(nearest, minlength=len(bins)).to(points.dtype)
    return counts / counts.sum()


def rebalancing_weights(prior: torch.Tensor, *, mix: float = 0.5, smooth_sigma: float = 0.0, bins: torch.Tensor | None = None) -> torch.Tensor:
    """Class-rebalancing weights of Zhang et al. (2016), eq. (4): w ∝ ((1 - λ) p~ + λ / Q)^-1,
    scaled so that the expected weight under p~ is 1.

    ``prior`` (Q,) is the empirical bin distribution p; with ``smooth_sigma`` > 0
    and the bin centres ``bins`` it is first smoothed with a gaussian kernel over
    ab (the paper uses sigma = 5) to give p~. ``mix`` is λ (0.5 in the paper).
    Rare colours get large weights, so the network is not paid for grey.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix (lambda) must be in [0, 1], got {mix}")
    p = prior.float()
    if smooth_sigma > 0:
        if bins is None:
            raise ValueError("smoothing the prior needs the bin centres: pass bins=")
        kernel = torch.exp(-torch.cdist(bins.float(), bins.float()).pow(2) / (2 * smooth_sigma**2))
        p = kernel @ p
        p = p / p.sum()
    w = 1.0 / ((1 - mix) * p + mix / len(p))
    return w / (p * w).sum()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, *, temperature: float = 0.38) -> torch.Tensor:
    """Decode per-pixel bin logits (B, Q, H, W) into ab (B, 2, H, W): the mean of the
    distribution sharpened by ``temperature`` (the paper's T = 0.38, between the mean
    (T = 1, desaturated) and the mode (T -> 0, patchy))."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probs, bins.to(probs))
