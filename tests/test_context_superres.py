"""Context encoders and super-resolution: their losses, inputs, gradients and training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import sslcourse
from sslcourse.losses import (
    adversarial_discriminator_loss,
    adversarial_generator_loss,
    masked_reconstruction_mse,
    reconstruction_mse,
)
from sslcourse.masks import central_mask
from sslcourse.methods.autoencoding import ContextDiscriminator, ContextEncoder, SuperResolution, low_resolution


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return sslcourse.load_dataset("digits", "train").subset(torch.arange(256))


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def images(b=8, seed=0):
    """A float batch of real digits (B, 1, 16, 16) in [0, 1]."""
    data = sslcourse.load_dataset("digits", "train")
    return data.images[seed : seed + b].float().div(255)


GARBAGE = torch.full((8,), -12345, dtype=torch.int64)
FIT = dict(batch_size=64, lr=1e-2, progress=False, device="cpu", seed=0)


def grads(loss, params):
    return torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)


def nonzero(gs) -> bool:
    return any(g is not None and bool(g.abs().sum() > 0) for g in gs)


# ---------------------------------------------------------- masked L2 loss
# a 1x1x2x2 case by hand: squared errors [[0.25, 0], [1, 0.25]]; hidden: the left column
PRED = torch.tensor([[[[0.5, 0.0], [1.0, 0.25]]]])
TARGET = torch.tensor([[[[1.0, 0.0], [0.0, 0.75]]]])
MASK = torch.tensor([[[[True, False], [True, False]]]])


def test_masked_mse_hand_case():
    # (0.25 + 1.0) / 2 hidden elements
    assert masked_reconstruction_mse(PRED, TARGET, MASK).item() == pytest.approx(0.625)
    # the other column: (0 + 0.25) / 2
    assert masked_reconstruction_mse(PRED, TARGET, ~MASK).item() == pytest.approx(0.125)


def test_masked_mse_one_mask_for_all_channels():
    pred, target = rand(4, 3, 8, 8, seed=1), rand(4, 3, 8, 8, seed=2)
    mask = rand(4, 1, 8, 8, seed=3) < 0.3
    full = mask.expand(-1, 3, -1, -1)
    torch.testing.assert_close(masked_reconstruction_mse(pred, target, mask), masked_reconstruction_mse(pred, target, full))
    # the mean over the hidden elements, counting every channel
    expected = (pred - target).pow(2)[full].mean()
    torch.testing.assert_close(masked_reconstruction_mse(pred, target, mask), expected)


def test_masked_mse_ignores_the_prediction_outside_the_mask():
    pred, target = rand(4, 1, 8, 8, seed=1), rand(4, 1, 8, 8, seed=2)
    mask = central_mask(pred.shape, 0.25)
    changed = torch.where(mask, pred, rand(4, 1, 8, 8, seed=9) * 100)
    assert masked_reconstruction_mse(changed, target, mask).item() == masked_reconstruction_mse(pred, target, mask).item()
    pred.requires_grad_(True)
    (g,) = torch.autograd.grad(masked_reconstruction_mse(pred, target, mask), pred)
    assert bool((g[~mask] == 0).all()) and bool((g[mask] != 0).all())


def test_masked_mse_all_hidden_is_mse_and_nothing_hidden_is_zero():
    pred, target = rand(2, 3, 4, 4, seed=1), rand(2, 3, 4, 4, seed=2)
    everything = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    torch.testing.assert_close(masked_reconstruction_mse(pred, target, everything), reconstruction_mse(pred, target))
    assert masked_reconstruction_mse(pred, target, ~everything).item() == 0.0


def test_masked_mse_does_not_depend_on_the_hole_size():
    # the same per-pixel error on a small and a large hole gives the same loss
    pred, target = torch.full((1, 1, 8, 8), 0.5), torch.zeros(1, 1, 8, 8)
    small, large = central_mask(pred.shape, 0.1), central_mask(pred.shape, 0.6)
    assert masked_reconstruction_mse(pred, target, small).item() == pytest.approx(0.25)
    assert masked_reconstruction_mse(pred, target, large).item() == pytest.approx(0.25)


def test_masked_mse_bad_inputs():
    x = rand(2, 3, 4, 4)
    with pytest.raises(TypeError, match="mask must be a bool tensor, got torch.float32"):
        masked_reconstruction_mse(x, x, torch.ones(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"mask \(2, 2, 4, 4\) must be shaped like pred \(2, 3, 4, 4\)"):
        masked_reconstruction_mse(x, x, torch.ones(2, 2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"masked_reconstruction_mse: expected tensors of one shape"):
        masked_reconstruction_mse(x, rand(2, 3, 4, 5), torch.ones(2, 1, 4, 4, dtype=torch.bool))


# -------------------------------------------------------- adversarial losses
def test_adversarial_losses_at_an_undecided_discriminator():
    zero = torch.zeros(5)
    assert adversarial_generator_loss(zero).item() == pytest.approx(math.log(2))
    assert adversarial_discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))


def test_adversarial_losses_formulas():
    real, fake = torch.randn(7, generator=torch.Generator().manual_seed(0)), torch.randn(7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(adversarial_generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean())
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    torch.testing.assert_close(adversarial_discriminator_loss(real, fake), expected)
    # fooling the discriminator lowers the generator's loss; spotting fakes lowers D's
    assert adversarial_generator_loss(torch.full((3,), 4.0)) < adversarial_generator_loss(torch.full((3,), -4.0))
    assert adversarial_discriminator_loss(torch.full((3,), 4.0), torch.full((3,), -4.0)) < 0.05


# ------------------------------------------------------------ context encoder
@pytest.mark.parametrize("kind", ["central", "random_block", "random_region"])
def test_context_encoder_masks_and_hole(kind):
    method = ContextEncoder(widths=(8, 16), mask=kind, mask_fraction=0.25)
    x = images()
    mask = method.make_mask(x, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (8, 1, 16, 16) and mask.dtype == torch.bool
    assert 0.1 < mask.float().mean().item() <= 0.25
    hidden = method.hide(x, mask)
    assert torch.equal(hidden[~mask.expand_as(x)], x[~mask.expand_as(x)]), "the context is kept"
    assert torch.allclose(hidden[mask.expand_as(x)], x.mean()), "the hole holds the batch mean"
    if kind != "central":
        assert not torch.equal(mask[0], mask[1]), "random masks differ per image"


def test_context_encoder_fill_constant_and_inpaint():
    method = ContextEncoder(widths=(8, 16), mask="central", fill=0.0).eval()
    x = images()
    mask = method.make_mask(x)
    assert bool((method.hide(x, mask)[mask.expand_as(x)] == 0).all())
    out = method.inpaint(x, mask)
    assert torch.equal(out[~mask.expand_as(x)], x[~mask.expand_as(x)])


def test_context_encoder_step_finite_reaches_encoder_ignores_labels():
    method = ContextEncoder(widths=(8, 16))
    x = images()
    torch.manual_seed(0)
    out = method.training_step((x, GARBAGE))
    assert set(out) == {"loss", "rec"}
    assert out["loss"].dim() == 0 and math.isfinite(out["loss"].item())
    assert nonzero(grads(out["loss"], method.encoder.parameters()))
    torch.manual_seed(0)
    again = method.training_step((x, torch.arange(8)))
    assert again["loss"].item() == out["loss"].item(), "the labels must not matter"


def test_context_encoder_custom_mask_function_checked():
    method = ContextEncoder(widths=(8, 16), mask=lambda x: torch.zeros(x.shape[0], 1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must return a bool mask \(B, 1, H, W\) = \(8, 1, 16, 16\); got torch.bool \(8, 1, 4, 4\)"):
        method.training_step((images(), GARBAGE))


def test_context_encoder_bad_arguments():
    with pytest.raises(ValueError, match="unknown mask 'square'"):
        ContextEncoder(mask="square")
    with pytest.raises(ValueError, match="mask_fraction must be in"):
        ContextEncoder(mask_fraction=0.0)
    with pytest.raises(ValueError, match="adversarial=False"):
        ContextEncoder(discriminator=ContextDiscriminator())


def test_adversarial_gradients_are_separated():
    torch.manual_seed(0)
    method = ContextEncoder(widths=(8, 16), adversarial=True)
    generator = list(method.encoder.parameters()) + list(method.decoder.parameters())
    disc = list(method.discriminator.parameters())
    x = images()
    mask = method.make_mask(x, generator=torch.Generator().manual_seed(0))
    pred = method(method.hide(x, mask))
    rec = masked_reconstruction_mse(pred, x, mask)
    fake = torch.where(mask, pred, x)
    adv_g, adv_d = method.adversarial_losses(x, fake)

    # the generator's adversarial term reaches the generator, not the discriminator
    assert all(g is None for g in grads(adv_g, disc))
    assert nonzero(grads(adv_g, method.decoder.parameters())) and nonzero(grads(adv_g, method.encoder.parameters()))
    # the discriminator's loss reaches the discriminator, not the generator
    assert all(g is None for g in grads(adv_d, generator))
    assert nonzero(grads(adv_d, disc))

    # so one backward pass of the sum gives each player exactly its own loss's gradient
    total = method.lambda_rec * rec + method.lambda_adv * adv_g + adv_d
    for got, want in zip(grads(total, disc), grads(adv_d, disc)):
        torch.testing.assert_close(got, want)
    own = method.lambda_rec * rec + method.lambda_adv * adv_g
    for got, want in zip(grads(total, generator), grads(own, generator)):
        torch.testing.assert_close(got, want)


def test_adversarial_training_step_logs_all_terms():
    torch.manual_seed(0)
    method = ContextEncoder(widths=(8, 16), adversarial=True)
    out = method.training_step((images(), GARBAGE))
    assert set(out) == {"loss", "rec", "adv_g", "adv_d"}
    expected = method.lambda_rec * out["rec"] + method.lambda_adv * out["adv_g"] + out["adv_d"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    out["loss"].backward()
    assert all(p.grad is not None for p in method.discriminator.parameters())
    assert method.discriminator(images()).shape == (8,)


def test_context_encoder_fit_reduces_the_loss(tiny):
    torch.manual_seed(0)
    method = ContextEncoder(widths=(8, 16), mask="random_block")
    history = sslcourse.fit(method, tiny, steps=30, **FIT)
    first, last = sum(history.loss[:5]) / 5, sum(history.loss[-5:]) / 5
    assert last < 0.6 * first, f"context encoder loss {first:.4f} -> {last:.4f}"


def test_adversarial_context_encoder_fit_reduces_reconstruction(tiny):
    torch.manual_seed(0)
    method = ContextEncoder(widths=(8, 16), mask="random_region", adversarial=True)
    history = sslcourse.fit(method, tiny, steps=30, **FIT)
    rec = history.metrics["rec"]
    assert len(history.metrics["adv_g"]) == len(history.metrics["adv_d"]) == 30
    assert all(map(math.isfinite, history.loss))
    assert sum(rec[-5:]) / 5 < 0.6 * sum(rec[:5]) / 5, f"rec {rec[:5]} -> {rec[-5:]}"


# ----------------------------------------------------------- super-resolution
@pytest.mark.parametrize("factor", [2, 4])
def test_low_resolution_nearest_is_idempotent(factor):
    x = rand(4, 3, 16, 16)
    low = low_resolution(x, factor, upsample="nearest")
    torch.testing.assert_close(low_resolution(low, factor, upsample="nearest"), low)
    assert not torch.allclose(low, x)
    # constant over each factor x factor block, and equal to the block's mean
    blocks = low.unfold(2, factor, factor).unfold(3, factor, factor)
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))
    torch.testing.assert_close(blocks[..., 0, 0], F.avg_pool2d(x, factor))


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
@pytest.mark.parametrize("factor", [2, 4])
def test_low_resolution_depends_only_on_block_means(upsample, factor):
    # detail with zero mean over every block is invisible in the input
    x = rand(2, 1, 16, 16)
    checker = (torch.arange(16).view(16, 1) + torch.arange(16).view(1, 16)) % 2 * 2.0 - 1.0  # +-1, zero block means
    detailed = x + 0.1 * checker
    torch.testing.assert_close(low_resolution(detailed, factor, upsample=upsample), low_resolution(x, factor, upsample=upsample))
    assert low_resolution(x, factor, upsample=upsample).shape == x.shape


def test_low_resolution_keeps_a_constant_image():
    x = torch.full((1, 1, 8, 8), 0.3)
    torch.testing.assert_close(low_resolution(x, 2), x)


def test_low_resolution_bad_inputs():
    with pytest.raises(ValueError, match=r"divisible by factor 3; got \(16, 16\)"):
        low_resolution(rand(1, 1, 16, 16), 3)
    with pytest.raises(ValueError, match="low_resolution expects a float tensor"):
        low_resolution(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="upsample must be 'bilinear' or 'nearest', got 'bicubic'"):
        low_resolution(rand(1, 1, 8, 8), 2, upsample="bicubic")


def test_super_resolution_input_is_low_resolution():
    method = SuperResolution(widths=(8, 16), factor=4)
    x = images()
    torch.testing.assert_close(method.degrade(x), low_resolution(x, 4))
    assert reconstruction_mse(method.degrade(x), x).item() > 0.01, "the input really lost detail"


def test_super_resolution_step_finite_reaches_encoder_ignores_labels():
    torch.manual_seed(0)
    method = SuperResolution(widths=(8, 16))
    x = images()
    out = method.training_step((x, GARBAGE))
    assert set(out) == {"loss", "interp_mse"}
    assert out["loss"].dim() == 0 and math.isfinite(out["loss"].item())
    assert nonzero(grads(out["loss"], method.encoder.parameters()))
    assert method.training_step((x, torch.arange(8)))["loss"].item() == out["loss"].item()


def test_super_resolution_bad_arguments():
    with pytest.raises(ValueError, match="factor must be an int >= 2, got 1"):
        SuperResolution(factor=1)


def test_super_resolution_fit_reduces_the_loss(tiny):
    torch.manual_seed(0)
    method = SuperResolution(widths=(8, 16))
    history = sslcourse.fit(method, tiny, steps=30, **FIT)
    first, last = sum(history.loss[:5]) / 5, sum(history.loss[-5:]) / 5
    assert last < 0.6 * first, f"super-resolution loss {first:.4f} -> {last:.4f}"


# ------------------------------------------------------------ learning (slow)
def _probe_gain(method, steps):
    """Pretrain on digits for ``steps``; linear probe at 10% labels of the encoder output,
    pretrained and at random init."""
    from sslcourse.evaluate import compare_representations, random_init_like

    train, test = sslcourse.load_dataset("digits", "train"), sslcourse.load_dataset("digits", "test")
    history = sslcourse.fit(method, train, steps=steps, batch_size=128, lr=2e-3, seed=0, progress=False, device="cpu")
    encoder = method.encoder.cpu()
    rows = compare_representations(
        {"pretrained": encoder, "random": random_init_like(encoder)}, train, test, fractions=(0.1,), probes=("linear",), device="cpu"
    )
    return history, rows["pretrained"]["linear"]["0.1"], rows["random"]["linear"]["0.1"]


@pytest.mark.slow
def test_context_encoder_pretraining_beats_random_init():
    torch.manual_seed(0)
    history, pretrained, random = _probe_gain(ContextEncoder(), steps=120)
    assert pretrained - random > 0.02, f"linear probe at 10% labels: context encoder {pretrained:.3f}, random init {random:.3f}"


@pytest.mark.slow
def test_super_resolution_pretraining_beats_random_init():
    torch.manual_seed(0)
    history, pretrained, random = _probe_gain(SuperResolution(), steps=120)
    assert pretrained - random > 0.02, f"linear probe at 10% labels: super-resolution {pretrained:.3f}, random init {random:.3f}"
