"""sslcourse.augment: the colour, blur and solarize augmentations and the two-view pipeline."""

from __future__ import annotations

import pytest
import torch

from sslcourse import augment


def rgb(b=16, size=12, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


FUNCTIONS = {
    "color_jitter": lambda x, g: augment.color_jitter(x, p=1.0, generator=g),
    "random_grayscale": lambda x, g: augment.random_grayscale(x, p=0.5, generator=g),
    "gaussian_blur": lambda x, g: augment.gaussian_blur(x, p=1.0, generator=g),
    "solarize": lambda x, g: augment.solarize(x, p=0.5, generator=g),
    "ContrastiveViews": lambda x, g: augment.ContrastiveViews(blur_p=0.5, solarize_p=0.2)(x, generator=g),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_shape_dtype_range_and_reproducibility(name):
    x = rgb()
    a, b = FUNCTIONS[name](x, gen(1)), FUNCTIONS[name](x, gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= -1e-6 and a.max() <= 1 + 1e-6, f"{name} left [0, 1]: {a.min():.3f}..{a.max():.3f}"
    torch.testing.assert_close(a, b, msg=f"{name}: same generator seed, different output")
    assert not torch.equal(FUNCTIONS[name](x, gen(2)), a), f"{name}: another seed gave the same output"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_parameters_differ_per_image(name):
    # the same image repeated: a per-batch draw would treat every copy alike
    x = rgb(1).repeat(16, 1, 1, 1)
    out = FUNCTIONS[name](x, gen(3))
    distinct = {tuple(o.flatten().mul(1e4).round().tolist()) for o in out}
    assert len(distinct) > 1, f"{name}: all 16 copies of one image came out identical"


def test_color_jitter_with_zero_strengths_is_the_identity():
    x = rgb()
    out = augment.color_jitter(x, 0.0, 0.0, 0.0, 0.0, p=1.0, generator=gen())
    torch.testing.assert_close(out, x)


def test_color_jitter_p_zero_changes_nothing_and_grey_input_stays_grey():
    x = rgb()
    torch.testing.assert_close(augment.color_jitter(x, p=0.0, generator=gen()), x)
    grey = torch.rand(8, 1, 10, 10, generator=gen(4))
    assert augment.color_jitter(grey, p=1.0, generator=gen()).shape == (8, 1, 10, 10)


def test_hue_rotation_keeps_grey_pixels_and_a_full_turn_is_the_identity():
    grey = torch.full((2, 3, 4, 4), 0.4)
    torch.testing.assert_close(augment._rotate_hue(grey, torch.tensor([0.1, 0.3])), grey)
    x = rgb(4) * 0.5 + 0.25
    torch.testing.assert_close(augment._rotate_hue(x, torch.ones(4)), x, atol=1e-5, rtol=1e-5)


def test_random_grayscale_gives_equal_channels_with_the_luma_weights():
    x = rgb(64)
    out = augment.random_grayscale(x, p=1.0, generator=gen())
    want = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[:, c], want)
    share = (augment.random_grayscale(rgb(2000, 4), p=0.2, generator=gen(5)).std(dim=1).amax(dim=(1, 2)) < 1e-6).float().mean()
    assert 0.16 < share < 0.24, f"random_grayscale(p=0.2) turned {share:.1%} of images grey"


def test_gaussian_blur_preserves_constants_and_the_mean_and_lowers_variance():
    const = torch.full((3, 3, 16, 16), 0.7)
    torch.testing.assert_close(augment.gaussian_blur(const, p=1.0, generator=gen()), const)
    x = rgb(8, 32)
    out = augment.gaussian_blur(x, (1.5, 2.0), p=1.0, generator=gen())
    assert out.var() < 0.5 * x.var()
    assert abs(out.mean() - x.mean()) < 0.01


def test_gaussian_blur_with_a_tiny_sigma_is_nearly_the_identity():
    x = rgb(4, 16)
    torch.testing.assert_close(augment.gaussian_blur(x, (0.05, 0.05), p=1.0, generator=gen()), x, atol=1e-4, rtol=0)


def test_solarize_inverts_exactly_the_bright_pixels():
    x = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 1, 4)
    out = augment.solarize(x, 0.5, p=1.0, generator=gen())
    torch.testing.assert_close(out.flatten(), torch.tensor([0.1, 0.49, 0.5, 0.1]))


def test_pair_gives_two_different_views_of_the_requested_size():
    views = augment.ContrastiveViews(size=10)
    a, b = views.pair(rgb(8, 16), generator=gen())
    assert a.shape == b.shape == (8, 3, 10, 10)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: augment.color_jitter(torch.rand(2, 2, 4, 4)), "1 \\(grey\\) or 3 \\(RGB\\) channels; got 2"),
        (lambda: augment.color_jitter(rgb(), hue=0.7), "hue must be in"),
        (lambda: augment.color_jitter(rgb(), brightness=-1), "brightness must be >= 0"),
        (lambda: augment.gaussian_blur(rgb(), (2.0, 1.0)), "sigma must be a range"),
        (lambda: augment.gaussian_blur(rgb(), kernel_size=4), "kernel_size must be odd"),
        (lambda: augment.solarize(rgb(), p=2.0), "p must be in"),
        (lambda: augment.random_grayscale(torch.rand(2, 3, 4)), "float tensor \\(B, C, H, W\\)"),
    ],
)
def test_bad_input_is_refused_with_what_was_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()
