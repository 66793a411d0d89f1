"""sslcourse.losses: NT-Xent (SimCLR) and InfoNCE (MoCo), checked against the formulas written as loops."""

from __future__ import annotations

import math

import pytest
import torch

from sslcourse.losses import info_nce, nt_xent


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def nt_xent_by_the_formula(z1, z2, tau):
    """Chen et al. (2020), eq. 1, one anchor at a time, in float64."""
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sims = [(z[i] @ z[k]).item() / tau for k in range(n2)]
        denominator = sum(math.exp(s) for k, s in enumerate(sims) if k != i)
        total += -math.log(math.exp(sims[j]) / denominator)
    return total / n2


def info_nce_by_the_formula(q, k_pos, k_neg, tau):
    """He et al. (2020), eq. 1, one query at a time, in float64."""
    unit = lambda t: t.double() / t.double().norm(dim=1, keepdim=True)  # noqa: E731
    q, k_pos, k_neg = unit(q), unit(k_pos), unit(k_neg)
    total = 0.0
    for i in range(q.shape[0]):
        pos = math.exp((q[i] @ k_pos[i]).item() / tau)
        neg = sum(math.exp((q[i] @ k).item() / tau) for k in k_neg)
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


@pytest.mark.parametrize("n, d, tau", [(8, 16, 0.5), (2, 4, 0.1), (5, 32, 1.0)])
def test_nt_xent_equals_the_formula(n, d, tau):
    z1, z2 = randn(n, d, seed=1), randn(n, d, seed=2)
    got = nt_xent(z1, z2, temperature=tau).item()
    want = nt_xent_by_the_formula(z1, z2, tau)
    assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), f"nt_xent: {got:.6f}, the formula gives {want:.6f} (N={n}, tau={tau})"


def test_nt_xent_does_not_overflow_at_small_temperature_with_large_embeddings():
    z1, z2 = 1e4 * randn(16, 8, seed=3), 1e4 * randn(16, 8, seed=4)
    loss = nt_xent(z1, z2, temperature=0.05)
    assert torch.isfinite(loss)
    assert abs(loss.item() - nt_xent_by_the_formula(z1, z2, 0.05)) < 1e-3


def test_nt_xent_hand_case_views_agree_and_images_are_orthogonal():
    # 4 orthogonal images, each seen identically twice: positives at cosine 1,
    # negatives at cosine 0; each anchor's loss is -log(e^(1/t) / (e^(1/t) + 6))
    z = torch.eye(4) * 3.0
    tau = 0.5
    want = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 6))
    assert nt_xent(z, z, temperature=tau).item() == pytest.approx(want, rel=1e-5)


def test_nt_xent_with_duplicated_images_still_matches_the_formula():
    z1 = randn(3, 6, seed=5).repeat(2, 1)  # images 0-2 appear twice in the batch
    z2 = z1 + 0.1 * randn(6, 6, seed=6)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(nt_xent_by_the_formula(z1, z2, 0.2), rel=1e-4)


def test_nt_xent_gradient_reaches_both_views_and_is_finite():
    z1, z2 = randn(6, 8, seed=7).requires_grad_(), randn(6, 8, seed=8).requires_grad_()
    nt_xent(z1, z2, 0.1).backward()
    for g in (z1.grad, z2.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_nt_xent_under_bfloat16_autocast_stays_close_to_float32():
    z1, z2 = randn(32, 16, seed=9), randn(32, 16, seed=10)
    exact = nt_xent(z1, z2, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.1)
    assert low.dtype == torch.float32
    assert abs(low.item() - exact.item()) < 0.05 * exact.item()


@pytest.mark.parametrize(
    "z1, z2, tau, match",
    [
        (torch.zeros(4, 8), torch.zeros(5, 8), 0.5, "one shape"),
        (torch.zeros(4, 8, 1), torch.zeros(4, 8, 1), 0.5, r"\(N, D\)"),
        (torch.zeros(4, 8), torch.zeros(4, 8), 0.0, "temperature must be positive"),
        (torch.zeros(1, 8), torch.zeros(1, 8), 0.5, "at least 2 images"),
    ],
)
def test_nt_xent_rejects_bad_input_with_what_it_expected(z1, z2, tau, match):
    with pytest.raises(ValueError, match=match):
        nt_xent(z1, z2, tau)


@pytest.mark.parametrize("n, k, tau", [(8, 32, 0.07), (2, 1, 0.2), (4, 100, 0.05)])
def test_info_nce_equals_the_formula(n, k, tau):
    q, pos, neg = randn(n, 16, seed=11), randn(n, 16, seed=12), randn(k, 16, seed=13)
    got = info_nce(q, pos, neg, temperature=tau).item()
    want = info_nce_by_the_formula(q, pos, neg, tau)
    assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), f"info_nce: {got:.6f}, the formula gives {want:.6f}"


def test_info_nce_is_log_k_plus_one_when_nothing_is_distinguishable():
    # query, positive and every negative identical: a uniform (K+1)-way guess
    q = torch.ones(3, 4)
    loss = info_nce(q, q.clone(), torch.ones(9, 4), temperature=0.07)
    assert loss.item() == pytest.approx(math.log(10), rel=1e-5)


def test_info_nce_positive_is_index_zero():
    # the positive equals the query and the negatives point away: loss near 0
    q = torch.eye(4)
    assert info_nce(q, q.clone(), -torch.eye(4), temperature=0.05).item() < 1e-10


def test_info_nce_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="negatives must have D=8"):
        info_nce(torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(5, 7))
