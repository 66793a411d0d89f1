"""sslcourse.augment as the SimCLR step uses it: the batched colour jitter against a plain
per-image reference, full precision under autocast, crops that never reach outside the image,
and no tensors built from host data on every call (each would wait for the GPU)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from sslcourse import augment, losses

LUMA = (0.299, 0.587, 0.114)
TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def jitter_one_image(image, b, c, s, h):
    """The docstring of color_jitter, for one RGB image (3, H, W), written out step by step."""
    grey = lambda t: sum(w * t[i] for i, w in enumerate(LUMA))  # noqa: E731  (H, W)
    out = (image * b).clamp(0, 1)
    mean_grey = grey(out).mean()
    out = ((out - mean_grey) * c + mean_grey).clamp(0, 1)
    out = (grey(out) + s * (out - grey(out))).clamp(0, 1)
    to_yiq = torch.tensor(TO_YIQ, dtype=torch.float64)
    y, i, q = torch.einsum("ij,jhw->ihw", to_yiq, out.double())
    angle = 2 * math.pi * float(h)
    turned = torch.stack([y, math.cos(angle) * i - math.sin(angle) * q, math.sin(angle) * i + math.cos(angle) * q])
    rgb = torch.linalg.solve(to_yiq, turned.flatten(1)).view_as(out)
    return rgb.to(image.dtype).clamp(0, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("strengths", [(0.4, 0.4, 0.4, 0.1), (0.8, 0.8, 0.8, 0.2), (1.5, 0.0, 2.0, 0.5)])
def test_color_jitter_equals_a_per_image_reference(strengths, dtype):
    brightness, contrast, saturation, hue = strengths
    x = torch.rand(24, 3, 8, 8, generator=gen(1), dtype=dtype)
    out = augment.color_jitter(x, brightness, contrast, saturation, hue, p=0.7, generator=gen(2))
    # the same draws, in the documented order: brightness, contrast, saturation factors, hue turns, whether to apply
    g = gen(2)
    factor = lambda k: max(0.0, 1 - k) + (1 + k - max(0.0, 1 - k)) * torch.rand(24, generator=g)  # noqa: E731
    b, c, s = factor(brightness), factor(contrast), factor(saturation)
    h = (2 * torch.rand(24, generator=g) - 1) * hue
    apply = torch.rand(24, generator=g) < 0.7
    assert 0 < int(apply.sum()) < 24
    for k in range(24):
        want = jitter_one_image(x[k], b[k].item(), c[k].item(), s[k].item(), h[k]) if apply[k] else x[k]
        torch.testing.assert_close(out[k], want, atol=2e-5 if dtype == torch.float32 else 1e-10, rtol=0,
                                   msg=lambda m: f"image {k} (jittered: {bool(apply[k])}): {m}")


@pytest.mark.parametrize(
    "name, call",
    [
        ("color_jitter", lambda x, g: augment.color_jitter(x, p=1.0, generator=g)),
        ("random_grayscale", lambda x, g: augment.random_grayscale(x, p=1.0, generator=g)),
        ("gaussian_blur", lambda x, g: augment.gaussian_blur(x, p=1.0, generator=g)),
        ("ContrastiveViews", lambda x, g: augment.ContrastiveViews(16, blur_p=0.5, solarize_p=0.2)(x, generator=g)),
    ],
)
def test_full_precision_under_autocast(name, call):
    # fit runs the training step, augmentations included, under autocast; colours must not be rounded to bf16
    x = torch.rand(16, 3, 16, 16, generator=gen(3))
    plain = call(x, gen(4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = call(x, gen(4))
    assert mixed.dtype == torch.float32, f"{name} returned {mixed.dtype} under autocast"
    torch.testing.assert_close(mixed, plain, atol=1e-6, rtol=0, msg=lambda m: f"{name} under bf16 autocast: {m}")


def test_resized_crop_never_darkens_the_border():
    # every crop lies inside the image: a constant image stays constant, edge rows and columns included
    ones = torch.ones(2000, 3, 32, 32)
    out = augment.random_resized_crop(ones, scale=(0.08, 1.0), generator=gen(5))
    darkest = out.flatten(1).amin(1)
    assert torch.allclose(out, ones, atol=1e-6), f"{int((darkest < 1 - 1e-6).sum())} of 2000 crops darkened, down to {darkest.min():.3f}"


def test_crop_grid_is_the_grid_affine_grid_gives():
    g = gen(11)
    bw, bh = 0.2 + 0.8 * torch.rand(5, generator=g), 0.2 + 0.8 * torch.rand(5, generator=g)
    cx, cy = (1 - bw) * (2 * torch.rand(5, generator=g) - 1), (1 - bh) * (2 * torch.rand(5, generator=g) - 1)
    theta = torch.zeros(5, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = bw, cx, bh, cy
    for size in ((8, 8), (6, 10)):
        want = F.affine_grid(theta, [5, 1, *size], align_corners=False)
        torch.testing.assert_close(augment._crop_grid(bw, bh, cx, cy, size), want)


def test_resized_crop_draws_area_and_aspect_as_documented():
    # images whose two channels hold their own column and row index: a crop's values tell its box
    n, side = 4000, 32
    cols = torch.arange(side, dtype=torch.float32).expand(side, side)
    coords = torch.stack([cols, cols.T]).expand(n, 2, side, side)
    out = augment.random_resized_crop(coords, scale=(0.2, 0.6), ratio=(3 / 4, 4 / 3), generator=gen(12))
    # between output pixels 1 and side - 2 (never at the clamped border here) the box spans (side - 3) / side of itself
    width = (out[:, 0, 0, -2] - out[:, 0, 0, 1]) / (side - 3)  # box width as a fraction of the image width
    height = (out[:, 1, -2, 0] - out[:, 1, 1, 0]) / (side - 3)
    area, log_aspect = width * height, torch.log(width / height)
    assert area.min() > 0.2 - 1e-3 and area.max() < 0.6 + 1e-3, (area.min(), area.max())
    assert abs(area.mean() - 0.4) < 0.01, f"mean area {area.mean():.3f}, expected 0.4 (uniform in [0.2, 0.6])"
    assert abs((area < 0.4).float().mean() - 0.5) < 0.03
    lo, hi = math.log(3 / 4), math.log(4 / 3)
    assert log_aspect.min() > lo - 1e-3 and log_aspect.max() < hi + 1e-3
    assert abs(log_aspect.mean()) < 0.01, f"mean log aspect ratio {log_aspect.mean():.3f}, expected 0 (log-uniform)"
    assert abs((log_aspect < 0).float().mean() - 0.5) < 0.03
    # every box lies inside the image, and the boxes move around it
    assert out.min() >= 0 and out.max() <= side - 1
    assert out[:, 0, 0, 0].std() > 2 and out[:, 1, 0, 0].std() > 2


def test_colour_constants_first_made_under_inference_mode_still_train():
    augment._colour_constants.cache_clear()
    x = torch.rand(4, 3, 8, 8, generator=gen(6))
    with torch.inference_mode():
        augment.color_jitter(x, p=1.0, generator=gen(7))
    x.requires_grad_(True)
    augment.color_jitter(x, p=1.0, generator=gen(7)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def host_built_tensors(fn) -> list[str]:
    """Names of the ops that build a tensor from Python data while ``fn`` runs (after a first call)."""
    fn()
    with profile() as prof:
        fn()
    return [e.name for e in prof.events() if e.name == "aten::lift_fresh"]


def test_views_and_nt_xent_build_no_tensor_from_host_data_per_call():
    # on a GPU each such tensor is copied from the host, and that copy waits for the GPU's queued work
    x = torch.rand(32, 3, 16, 16, generator=gen(8))
    views = augment.ContrastiveViews(16, blur_p=0.5, solarize_p=0.2)
    assert host_built_tensors(lambda: views.pair(x)) == []
    z1, z2 = torch.randn(32, 8, generator=gen(9)), torch.randn(32, 8, generator=gen(10))
    assert host_built_tensors(lambda: losses.nt_xent(z1, z2)) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_views_and_nt_xent_never_synchronize_the_gpu():
    x = torch.rand(64, 3, 32, 32, device="cuda")
    views = augment.ContrastiveViews(32, blur_p=0.5, solarize_p=0.2)
    z = torch.randn(128, 16, device="cuda")
    views.pair(x), losses.nt_xent(*z.chunk(2))  # first calls make the cached constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            v1, v2 = views.pair(x)
            losses.nt_xent(*z.chunk(2))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert v1.dtype == torch.float32
