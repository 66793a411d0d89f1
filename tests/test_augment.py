"""sslcourse.augment: batched, per-image random augmentations and corruptions."""

from __future__ import annotations

import functools
import re

import pytest
import torch

from sslcourse import augment
from sslcourse.augment import (
    corrupt,
    gaussian_noise,
    masking_noise,
    random_horizontal_flip,
    random_resized_crop,
    random_translate,
    salt_and_pepper,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _first(fn):
    """Wrap a corruption so it returns only the corrupted batch (like an augmentation)."""

    @functools.wraps(fn)
    def wrapped(x, **kw):
        return fn(x, **kw)[0]

    return wrapped


# name -> callable(x, generator=...) -> tensor
FUNCTIONS = {
    "gaussian_noise": _first(functools.partial(gaussian_noise, sigma=0.2)),
    "masking_noise": _first(functools.partial(masking_noise, fraction=0.3)),
    "salt_and_pepper": _first(functools.partial(salt_and_pepper, fraction=0.3)),
    "corrupt": _first(functools.partial(corrupt, kind="masking", level=0.3)),
    "random_horizontal_flip": random_horizontal_flip,
    "random_resized_crop": random_resized_crop,
    "random_translate": random_translate,
}


def batch(b=6, c=3, h=16, w=16, seed=0, device="cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g).to(device=device, dtype=dtype)


def asymmetric_image(c=3, h=16, w=16):
    """One image no flip, crop or shift maps onto itself."""
    ramp = torch.arange(h * w, dtype=torch.float32).view(1, h, w) / (h * w)
    return ramp.expand(c, h, w).clone() * torch.linspace(0.5, 1.0, c).view(c, 1, 1)


# ----------------------------------------------------- shape, dtype, device
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_keeps_shape_dtype_device(name, dtype, device):
    x = batch(device=device, dtype=dtype)
    y = FUNCTIONS[name](x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert y.device == x.device


@pytest.mark.parametrize("name", ["gaussian_noise", "masking_noise", "salt_and_pepper"])
def test_corruption_mask_is_bool_of_batch_shape(name):
    x = batch()
    _, mask = getattr(augment, name)(x)
    assert mask.dtype == torch.bool and mask.shape == x.shape and mask.device == x.device


def test_works_without_generator():
    x = batch()
    for name, fn in FUNCTIONS.items():
        assert fn(x).shape == x.shape, name


# ------------------------------------------------------------ reproducibility
@pytest.mark.parametrize("name", FUNCTIONS)
def test_reproducible_with_seeded_generator(name):
    x = batch()
    fn = FUNCTIONS[name]
    a = fn(x, generator=torch.Generator().manual_seed(1))
    b = fn(x, generator=torch.Generator().manual_seed(1))
    c = fn(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_cpu_generator_works_for_the_batch_device(name, device):
    x = batch(device=device)
    fn = FUNCTIONS[name]
    a = fn(x, generator=torch.Generator().manual_seed(3))
    b = fn(x, generator=torch.Generator().manual_seed(3))
    assert a.device == x.device
    assert torch.equal(a, b)
    # the same draw as on a CPU copy of the batch
    ref = fn(x.cpu(), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.cpu(), ref, atol=1e-5, rtol=0)


# ---------------------------------------------------------- random per image
def _identical_batch(b=8):
    return asymmetric_image().unsqueeze(0).repeat(b, 1, 1, 1)


@pytest.mark.parametrize("name", ["masking_noise", "salt_and_pepper"])
def test_masks_differ_per_image(name):
    x = _identical_batch()
    _, mask = getattr(augment, name)(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(mask[0], mask[1])
    assert len({tuple(m.flatten().tolist()) for m in mask}) == len(mask)


def test_gaussian_noise_differs_per_image():
    y, _ = gaussian_noise(_identical_batch(), 0.1, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(y[0], y[1])


def test_flip_random_per_image():
    x = _identical_batch(16)
    y = random_horizontal_flip(x, 0.5, generator=torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(img, x[0].flip(-1)) for img in y])
    kept = torch.tensor([torch.equal(img, x[0]) for img in y])
    assert bool((flipped ^ kept).all()), "every image is either flipped or not"
    assert 0 < int(flipped.sum()) < len(x), "some images flipped and some not"


def test_crop_random_per_image():
    x = _identical_batch()
    y = random_resized_crop(x, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(y[0], y[1])
    assert len({tuple(img.flatten().tolist()) for img in y}) == len(y)


def test_translate_random_per_image():
    x = _identical_batch(8)
    y = random_translate(x, 2, generator=torch.Generator().manual_seed(0))
    assert len({tuple(img.flatten().tolist()) for img in y}) > 1


# ------------------------------------------------------ corruption statistics
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.77])
def test_masking_noise_exact_count_and_values(fraction):
    x = batch(b=5, c=3, h=8, w=8).clamp_min(0.01)  # no element is already 0
    y, mask = masking_noise(x, fraction, generator=torch.Generator().manual_seed(0))
    expected = round(fraction * 3 * 8 * 8)
    assert mask.flatten(1).sum(1).tolist() == [expected] * 5
    assert bool((y[mask] == 0).all())
    assert torch.equal(y[~mask], x[~mask])
    assert torch.equal(mask, y == 0)


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_salt_and_pepper_exact_count_and_values(fraction):
    x = batch(b=8, c=3, h=16, w=16).mul(0.98).add(0.01)  # strictly inside (0, 1)
    y, mask = salt_and_pepper(x, fraction, generator=torch.Generator().manual_seed(0))
    expected = round(fraction * 3 * 16 * 16)
    assert mask.flatten(1).sum(1).tolist() == [expected] * 8
    hit = y[mask]
    assert bool(((hit == 0) | (hit == 1)).all())
    assert torch.equal(y[~mask], x[~mask])
    salt = (hit == 1).float().mean().item()
    assert 0.4 < salt < 0.6, f"salt fraction {salt:.3f}, expected about 0.5"


def test_salt_and_pepper_low_high():
    x = batch()
    y, mask = salt_and_pepper(x, 0.5, low=0.2, high=0.7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y[mask].unique(), torch.tensor([0.2, 0.7]))


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_gaussian_noise_std_on_mid_gray(sigma):
    x = torch.full((16, 3, 16, 16), 0.5)
    y, mask = gaussian_noise(x, sigma, generator=torch.Generator().manual_seed(0))
    residual = y - x
    assert abs(residual.std().item() - sigma) < 0.05 * sigma
    assert abs(residual.mean().item()) < 0.05 * sigma
    assert bool(mask.all())


def test_gaussian_noise_clips_to_unit_range():
    x = batch()
    y, _ = gaussian_noise(x, 0.5, generator=torch.Generator().manual_seed(0))
    assert y.min().item() >= 0.0 and y.max().item() <= 1.0
    assert bool((y == 0).any()) and bool((y == 1).any()), "sigma 0.5 must hit both bounds"


def test_gaussian_noise_without_clip():
    x = torch.full((4, 3, 16, 16), 0.5)
    y, mask = gaussian_noise(x, 1.0, clip=False, generator=torch.Generator().manual_seed(0))
    assert y.min().item() < 0.0 and y.max().item() > 1.0
    assert bool(mask.all())


def test_gaussian_sigma_zero_is_identity():
    x = batch()
    y, _ = gaussian_noise(x, 0.0)
    assert torch.equal(y, x)


@pytest.mark.parametrize("fn", [masking_noise, salt_and_pepper])
def test_fraction_zero_and_one(fn):
    x = batch().clamp(0.01, 0.99)
    y, mask = fn(x, 0.0)
    assert torch.equal(y, x) and not bool(mask.any())
    y, mask = fn(x, 1.0, generator=torch.Generator().manual_seed(0))
    assert bool(mask.all())
    if fn is masking_noise:
        assert bool((y == 0).all())
    else:
        assert bool(((y == 0) | (y == 1)).all())


def test_corrupt_none_is_identity():
    x = batch()
    for kind in (None, "none"):
        y, mask = corrupt(x, kind, 0.5)
        assert torch.equal(y, x)
        assert mask.dtype == torch.bool and mask.shape == x.shape and not bool(mask.any())


@pytest.mark.parametrize("kind", ["gaussian", "masking", "salt_and_pepper"])
def test_corrupt_dispatches(kind):
    x = batch()
    y, mask = corrupt(x, kind, 0.3, generator=torch.Generator().manual_seed(5))
    y2, mask2 = augment.CORRUPTIONS[kind](x, 0.3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(y, y2) and torch.equal(mask, mask2)


def test_corrupt_unknown_kind():
    with pytest.raises(ValueError, match="unknown corruption 'blur'"):
        corrupt(batch(), "blur", 0.1)


# -------------------------------------------------------------- bad input
BAD_INPUTS = {
    "3-d": (torch.rand(3, 16, 16), ValueError, r"\(3, 16, 16\)"),
    "5-d": (torch.rand(1, 2, 3, 16, 16), ValueError, r"\(1, 2, 3, 16, 16\)"),
    "uint8": (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), ValueError, "torch.uint8"),
    "int64": (torch.zeros(2, 3, 16, 16, dtype=torch.int64), ValueError, "torch.int64"),
    "ndarray": (torch.rand(2, 3, 16, 16).numpy(), TypeError, "ndarray"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
@pytest.mark.parametrize(
    "name",
    ["gaussian_noise", "masking_noise", "salt_and_pepper", "random_horizontal_flip", "random_resized_crop", "random_translate"],
)
def test_bad_input_names_function_and_what_came(name, case):
    x, error, what = BAD_INPUTS[case]
    with pytest.raises(error) as info:
        getattr(augment, name)(x)
    message = str(info.value)
    assert name in message
    assert re.search(what, message), message


def test_corrupt_none_checks_input():
    with pytest.raises(ValueError, match=r"corrupt.*\(3, 16, 16\)"):
        corrupt(torch.rand(3, 16, 16), None, 0.0)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
@pytest.mark.parametrize("fn", [masking_noise, salt_and_pepper])
def test_fraction_out_of_range(fn, fraction):
    with pytest.raises(ValueError) as info:
        fn(batch(), fraction)
    assert fn.__name__ in str(info.value) and str(fraction) in str(info.value)


@pytest.mark.parametrize("p", [-0.5, 2.0])
def test_flip_p_out_of_range(p):
    with pytest.raises(ValueError, match=rf"random_horizontal_flip: p must be in \[0, 1\], got {p}"):
        random_horizontal_flip(batch(), p)


def test_gaussian_negative_sigma():
    with pytest.raises(ValueError, match=r"gaussian_noise: sigma must be >= 0, got -0.1"):
        gaussian_noise(batch(), -0.1)


# ------------------------------------------------------------- augmentations
def test_flip_p0_and_p1_exact():
    x = batch()
    assert torch.equal(random_horizontal_flip(x, 0.0), x)
    assert torch.equal(random_horizontal_flip(x, 1.0), x.flip(-1))


@pytest.mark.parametrize("max_shift", [1, 2, 3])
def test_translate_whole_pixel_shifts_zero_filled(max_shift):
    b, h, w = 64, 12, 12
    x = torch.zeros(b, 2, h, w)
    r0, c0 = 6, 5
    x[:, :, r0, c0] = 1.0
    y = random_translate(x, max_shift, generator=torch.Generator().manual_seed(0))
    shifts = set()
    for img in y:
        assert torch.equal(img[0], img[1]), "every channel moves together"
        assert img.sum().item() == 2.0, "exactly one bright pixel per channel survives"
        assert set(img.unique().tolist()) == {0.0, 1.0}, "whole-pixel shift: no interpolated values, zero fill"
        (r, c), = img[0].nonzero().tolist()
        dr, dc = r - r0, c - c0
        assert abs(dr) <= max_shift and abs(dc) <= max_shift
        shifts.add((dr, dc))
    assert len(shifts) > 1
    assert any(dr != 0 for dr, _ in shifts) and any(dc != 0 for _, dc in shifts)


def test_translate_fills_with_zeros_at_the_border():
    x = torch.ones(32, 1, 8, 8)
    y = random_translate(x, 2, generator=torch.Generator().manual_seed(0))
    for img in y:
        rows = (img[0].sum(1) > 0).sum().item()
        cols = (img[0].sum(0) > 0).sum().item()
        # a shift by (dr, dc) leaves an 8-|dr| by 8-|dc| block of ones and zeros elsewhere
        assert img.sum().item() == rows * cols
        assert rows >= 6 and cols >= 6
    assert (y == 0).any()


def test_translate_zero_shift_is_identity():
    x = batch()
    assert torch.equal(random_translate(x, 0), x)


def test_resized_crop_full_box_is_identity():
    x = batch(b=4, h=16, w=16)
    y = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_resized_crop_non_square_identity():
    x = batch(b=2, h=8, w=12)
    y = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size, expected", [(8, (8, 8)), (24, (24, 24)), ((10, 6), (10, 6)), (None, (16, 16))])
def test_resized_crop_output_size(size, expected):
    x = batch(b=3, h=16, w=16)
    y = random_resized_crop(x, size, generator=torch.Generator().manual_seed(0))
    assert y.shape == (3, 3, *expected)


def test_resized_crop_stays_in_range_and_zooms():
    x = batch(b=16)
    y = random_resized_crop(x, scale=(0.2, 0.3), generator=torch.Generator().manual_seed(0))
    assert y.min().item() >= 0.0 and y.max().item() <= 1.0
    # a crop of 20-30% of the area, upsampled, is smoother than the input noise
    tv = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean().item()  # noqa: E731
    assert tv(y) < 0.8 * tv(x)
