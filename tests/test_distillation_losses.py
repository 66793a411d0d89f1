"""byol_loss, dino_loss and masked_mse against their formulas written out the slow way (float64 loops)."""

from __future__ import annotations

import math

import pytest
import torch

from sslcourse import losses


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ BYOL
def byol_reference(p, z):
    total = 0.0
    for pi, zi in zip(p.double(), z.double()):
        pn, zn = pi / pi.norm(), zi / zi.norm()
        total += float(((pn - zn) ** 2).sum())
    return total / len(p)


@pytest.mark.parametrize("n, d", [(1, 3), (8, 16), (33, 5)])
def test_byol_loss_matches_its_formula(n, d):
    g = _gen(n)
    p, z = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) * 7.0
    assert losses.byol_loss(p, z).item() == pytest.approx(byol_reference(p, z), rel=1e-5)


def test_byol_loss_is_zero_for_aligned_and_four_for_opposite_vectors():
    p = torch.randn(6, 4, generator=_gen())
    assert losses.byol_loss(p, 3.0 * p).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.byol_loss(p, -p).item() == pytest.approx(4.0, abs=1e-5)


def test_byol_loss_sends_no_gradient_into_the_target():
    p = torch.randn(5, 8, generator=_gen(), requires_grad=True)
    z = torch.randn(5, 8, generator=_gen(1), requires_grad=True)
    losses.byol_loss(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None, "the target z must be detached: BYOL's stop-gradient"


def test_byol_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        losses.byol_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        losses.byol_loss(torch.zeros(4), torch.zeros(4))


# ------------------------------------------------------------------ DINO
def dino_reference(s, t, c, ts, tt):
    s, t, c = s.double(), t.double(), c.double().reshape(-1)
    total = 0.0
    for si, ti in zip(s, t):
        u = (ti - c) / tt
        pt = torch.exp(u - u.max())  # the max subtracted, or float64 overflows too at tau = 0.04
        pt = pt / pt.sum()
        log_ps = si / ts - torch.logsumexp(si / ts, dim=0)
        total += float(-(pt * log_ps).sum())
    return total / len(s)


@pytest.mark.parametrize("ts, tt", [(0.1, 0.04), (0.1, 0.07), (1.0, 1.0)])
def test_dino_loss_matches_its_formula(ts, tt):
    g = _gen()
    s, t = torch.randn(10, 32, generator=g), torch.randn(10, 32, generator=g)
    c = torch.randn(32, generator=g) * 0.3
    assert losses.dino_loss(s, t, c, ts, tt).item() == pytest.approx(dino_reference(s, t, c, ts, tt), rel=1e-5)
    # the center may also come as (1, K)
    assert losses.dino_loss(s, t, c[None], ts, tt).item() == pytest.approx(dino_reference(s, t, c, ts, tt), rel=1e-5)


def test_dino_loss_is_finite_for_large_logits_at_the_default_temperatures():
    g = _gen()
    s, t = 80 * torch.randn(4, 64, generator=g), 80 * torch.randn(4, 64, generator=g)
    value = losses.dino_loss(s, t, torch.zeros(64))
    assert math.isfinite(value.item())
    assert value.item() == pytest.approx(dino_reference(s, t, torch.zeros(64), 0.1, 0.04), rel=1e-4)


def test_dino_loss_sends_no_gradient_into_the_teacher_or_the_center():
    g = _gen()
    s = torch.randn(4, 8, generator=g, requires_grad=True)
    t = torch.randn(4, 8, generator=g, requires_grad=True)
    c = torch.zeros(8, requires_grad=True)
    losses.dino_loss(s, t, c).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None and c.grad is None


def test_dino_loss_subtracting_the_center_changes_the_teacher_target():
    g = _gen()
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    shifted = torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0])
    # a center equal to a constant shift of all logits changes nothing; a non-uniform one does
    assert losses.dino_loss(s, t, torch.full((5,), 3.0)).item() == pytest.approx(losses.dino_loss(s, t, torch.zeros(5)).item(), rel=1e-6)
    assert losses.dino_loss(s, t, shifted).item() != pytest.approx(losses.dino_loss(s, t, torch.zeros(5)).item(), rel=1e-3)


def test_dino_loss_rejects_bad_inputs():
    with pytest.raises(ValueError, match="center"):
        losses.dino_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="teacher_temp"):
        losses.dino_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(4), teacher_temp=0.0)
    with pytest.raises(ValueError, match="one shape"):
        losses.dino_loss(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(4))


# ------------------------------------------------------------------ MAE
def test_masked_mse_counts_only_the_masked_patches():
    g = _gen()
    pred, target = torch.randn(3, 6, 4, generator=g), torch.randn(3, 6, 4, generator=g)
    mask = torch.zeros(3, 6)
    mask[0, 1] = mask[2, 5] = mask[2, 0] = 1
    expected = sum(float(((pred[b, l] - target[b, l]).double() ** 2).mean()) for b, l in [(0, 1), (2, 5), (2, 0)]) / 3
    assert losses.masked_mse(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)
    # changing a visible patch's prediction changes nothing
    pred2 = pred.clone()
    pred2[1] += 100.0
    assert losses.masked_mse(pred2, target, mask).item() == pytest.approx(expected, rel=1e-6)


def test_masked_mse_with_a_full_mask_is_the_plain_mse():
    g = _gen()
    pred, target = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    assert losses.masked_mse(pred, target, torch.ones(2, 5)).item() == pytest.approx(torch.nn.functional.mse_loss(pred, target).item(), rel=1e-6)


def test_masked_mse_works_with_the_mask_of_random_masking_and_keeps_the_gradient_off_visible_patches():
    from sslcourse.patches import random_masking

    tokens = torch.randn(4, 16, 12, generator=_gen())
    _, mask, _ = random_masking(tokens, 0.75, generator=_gen(1))
    pred = torch.zeros(4, 16, 12, requires_grad=True)
    losses.masked_mse(pred, tokens, mask).backward()
    visible = mask == 0
    assert pred.grad[visible].abs().sum() == 0
    assert (pred.grad[~visible].abs().sum(dim=-1) > 0).all()


def test_masked_mse_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"mask must be \(B, L\)"):
        losses.masked_mse(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(B, L, D\)"):
        losses.masked_mse(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 4))
