"""Colour: Lab conversion against scikit-image, ab bins, rebalancing, the photos source, and the colour methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sslcourse
from sslcourse import color, losses
from sslcourse.methods.colorization import AB_SCALE, Colorization, LabEncoder, SplitBrain, to_lab_inputs

skimage_color = pytest.importorskip("skimage.color")


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2)


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------ Lab
def test_rgb_to_lab_matches_scikit_image():
    x = torch.rand(3, 3, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[0, :, 0, 0] = 0.0  # black
    x[0, :, 0, 1] = 1.0  # white
    ours = color.rgb_to_lab(x)
    theirs = nchw(skimage_color.rgb2lab(nhwc(x)))
    assert torch.allclose(ours, theirs, atol=1e-8), (ours - theirs).abs().max()
    assert ours[0, 0, 0, 0].abs() < 1e-8 and (ours[0, 0, 0, 1] - 100).abs() < 1e-4  # L of black and white


def test_lab_to_rgb_inverts_and_matches_scikit_image():
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lab = color.rgb_to_lab(x)
    assert torch.allclose(color.lab_to_rgb(lab), x, atol=1e-10)
    assert torch.allclose(color.lab_to_rgb(lab), nchw(skimage_color.lab2rgb(nhwc(lab))), atol=1e-8)
    # float32 works too, and keeps its dtype
    assert color.rgb_to_lab(x.float()).dtype == torch.float32


def test_out_of_gamut_lab_clips_or_shows():
    lab = torch.tensor([50.0, 120.0, -120.0]).view(1, 3, 1, 1)
    assert color.lab_to_rgb(lab).min() >= 0 and color.lab_to_rgb(lab).max() <= 1
    raw = color.lab_to_rgb(lab, clip=False)
    assert (raw < 0).any() or (raw > 1).any()


def test_gray_has_no_colour():
    gray = torch.rand(2, 1, 4, 4)
    light, ab = to_lab_inputs(gray)
    assert ab.abs().max() < 1e-3
    assert torch.allclose(light * 100, color.gray_to_lightness(gray))


@pytest.mark.parametrize("bad", [torch.rand(2, 4, 3, 3), torch.rand(3, 3, 3), torch.zeros(1, 3, 2, 2, dtype=torch.uint8)])
def test_lab_rejects_bad_input(bad):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        color.rgb_to_lab(bad)


# ------------------------------------------------------------------ ab bins
def test_gamut_bins_are_on_the_grid_and_in_gamut():
    bins = color.ab_gamut_bins(10.0)
    assert bins.shape[1] == 2 and 150 < len(bins) < 529  # fewer than the whole 23 x 23 grid
    assert torch.equal(bins, (bins / 10).round() * 10)
    # every sRGB colour's ab lies within half a cell (plus the corner) of some bin
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ab = color.rgb_to_lab(x)[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)
    assert torch.cdist(ab, bins).min(dim=1).values.max() <= 5 * 2**0.5 + 1e-4


def test_soft_encoding_is_a_distribution_on_the_nearest_bins():
    bins = color.ab_gamut_bins()
    ab = torch.tensor([[0.0, 0.0], [23.0, -41.0]]).view(1, 2, 1, 2).permute(0, 1, 2, 3).contiguous()
    ab = torch.stack([torch.tensor([0.0, 23.0]), torch.tensor([0.0, -41.0])]).view(1, 2, 1, 2)
    target = color.soft_encode_ab(ab, bins, neighbours=5, sigma=5.0)
    assert target.shape == (1, len(bins), 1, 2)
    assert torch.allclose(target.sum(1), torch.ones(1, 1, 2))
    assert ((target > 0).sum(1) == 5).all()
    nearest = torch.cdist(ab.permute(0, 2, 3, 1).reshape(-1, 2), bins).argmin(1)
    assert torch.equal(target.argmax(1).flatten(), nearest)  # the closest bin gets the largest weight
    # a colour exactly on a bin centre: that bin carries the most mass
    centre = bins[7].view(1, 2, 1, 1)
    assert color.soft_encode_ab(centre, bins).argmax(1).item() == 7


def test_rebalancing_weights_favour_rare_colours_and_average_to_one():
    prior = torch.tensor([0.7, 0.2, 0.09, 0.01])
    w = color.rebalancing_weights(prior, mix=0.5)
    assert torch.all(w[:-1] <= w[1:])  # rarer -> heavier
    assert torch.isclose((prior * w).sum(), torch.tensor(1.0))
    # lambda = 1: uniform weights; lambda = 0: w proportional to 1/p
    assert torch.allclose(color.rebalancing_weights(prior, mix=1.0), torch.ones(4))
    w0 = color.rebalancing_weights(prior, mix=0.0)
    assert torch.allclose(w0 * prior, torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="bins"):
        color.rebalancing_weights(prior, smooth_sigma=5.0)


def test_annealed_mean_interpolates_between_mean_and_mode():
    bins = torch.tensor([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).view(1, 3, 1, 1)
    mean = color.annealed_mean(logits, bins, temperature=1.0)[0, 0, 0, 0]
    sharp = color.annealed_mean(logits, bins, temperature=0.01)[0, 0, 0, 0]
    mid = color.annealed_mean(logits, bins, temperature=0.38)[0, 0, 0, 0]
    assert torch.isclose(mean, torch.tensor(7.0)) and sharp.abs() < 1e-3 and 0 < mid < mean


def test_soft_cross_entropy_hand_case_and_weights():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 2)  # two positions
    target = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).T.reshape(1, 2, 1, 2)
    log_p0 = torch.log_softmax(torch.tensor([2.0, 0.0]), 0)
    expected = (-log_p0[0] + torch.log(torch.tensor(2.0))) / 2
    assert torch.isclose(losses.soft_cross_entropy(logits, target), expected)
    weights = torch.tensor([[[2.0, 0.0]]])
    assert torch.isclose(losses.soft_cross_entropy(logits, target, weights), -log_p0[0])
    with pytest.raises(ValueError, match="weights"):
        losses.soft_cross_entropy(logits, target, torch.ones(3))


# ------------------------------------------------------------------ photos
def test_photos_are_colour_patches_with_disjoint_splits():
    train, test = sslcourse.load_dataset("photos", "train"), sslcourse.load_dataset("photos", "test")
    assert train.images.dtype == torch.uint8 and train.image_shape == (3, 64, 64) and test.image_shape == (3, 64, 64)
    assert len(train) > 500 and len(test) > 50
    assert set(train.labels.tolist()) == set(test.labels.tolist()) == set(range(len(train.classes)))
    # colour, not gray: the channels differ
    assert (train.images[:, 0].float() - train.images[:, 2].float()).abs().mean() > 5
    # no test patch equals a train patch
    flat_train = {bytes(p.numpy()) for p in train.images}
    assert not any(bytes(p.numpy()) in flat_train for p in test.images)
    small = sslcourse.load_dataset("photos", "train", size=32)
    assert small.image_shape == (3, 32, 32) and len(small) == len(train)
    with pytest.raises(ValueError, match="split"):
        sslcourse.load_dataset("photos", "validation")


# ------------------------------------------------------------------ methods
@pytest.fixture(scope="module")
def photos32():
    return sslcourse.load_dataset("photos", "train", size=32).subset(torch.arange(0, 800, 4))


@pytest.mark.parametrize("make", [lambda: Colorization(widths=(8, 16)), lambda: Colorization(widths=(8, 16), loss="classification"), lambda: SplitBrain(widths=(8, 16))])
def test_colour_method_step_grads_and_no_labels(make, photos32):
    torch.manual_seed(0)
    method = make()
    images = photos32.floats()[:8]
    garbage = torch.full((8,), -12345)
    out = method.training_step((images, garbage))
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in method.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    rgb = method.colorize(images)
    assert rgb.shape == images.shape and rgb.min() >= 0 and rgb.max() <= 1
    with pytest.raises(ValueError, match="colour images"):
        method.training_step((images[:, :1], garbage))


@pytest.mark.parametrize("loss", ["regression", "classification"])
def test_colorization_learns(loss, photos32):
    torch.manual_seed(0)
    method = Colorization(widths=(8, 16), loss=loss)
    history = sslcourse.fit(method, photos32, steps=30, batch_size=50, lr=3e-3, progress=False, device="cpu")
    first, last = np.mean(history.loss[:5]), np.mean(history.loss[-5:])
    assert last < 0.8 * first, f"{loss}: loss {first:.3f} -> {last:.3f}"


def test_colorization_prior_counts_then_fixed(photos32):
    method = Colorization(widths=(8, 16), loss="classification")
    images = photos32.floats()[:16]
    method.training_step((images, None))
    assert method.bin_counts.sum() == 16 * 8 * 8  # one count per predicted position (a quarter of the resolution)
    method.set_prior(photos32.images)
    fixed = method.bin_counts.clone()
    assert torch.isclose(fixed.sum(), torch.tensor(1.0))
    method.training_step((images, None))
    assert torch.equal(method.bin_counts, fixed)
    with pytest.raises(ValueError, match="entries"):
        method.set_prior(torch.ones(3))
    with pytest.raises(ValueError, match="classification"):
        Colorization().set_prior(torch.ones(3))


def test_colorization_fixed_prior_survives_a_checkpoint(photos32):
    method = Colorization(widths=(8, 16), loss="classification")
    method.set_prior(photos32.images)
    state = method.state_dict()
    assert bool(state["prior_fixed"]) and torch.equal(state["bin_counts"], method.bin_counts)
    resumed = Colorization(widths=(8, 16), loss="classification")
    assert not bool(resumed.prior_fixed)
    resumed.load_state_dict(state)
    images = photos32.floats()[:16]
    resumed.training_step((images, None))
    assert torch.equal(resumed.bin_counts, method.bin_counts), "a resumed run keeps the fixed prior instead of counting again"


def test_lab_encoders_probe_gray_digits(photos32):
    digits = sslcourse.load_dataset("digits", "test", size=32)
    for method in (Colorization(widths=(8, 16)), SplitBrain(widths=(8, 16))):
        feats = sslcourse.evaluate.extract_features(method.encoder, digits.subset(torch.arange(20)))
        assert feats.shape[0] == 20 and torch.isfinite(feats).all()
    with pytest.raises(ValueError, match="'L' and/or 'ab'"):
        LabEncoder(rgb=torch.nn.Identity())
    assert AB_SCALE > 100
