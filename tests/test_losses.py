"""sslcourse.losses: the reconstruction losses of the autoencoding family."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslcourse.losses import emphasized_mse, reconstruction_mse


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# a 2x2 case worked out by hand
PRED = torch.tensor([[0.5, 0.0], [1.0, 0.25]])
TARGET = torch.tensor([[1.0, 0.0], [0.0, 0.75]])
MASK = torch.tensor([[True, False], [True, False]])
# squared errors: [[0.25, 0.0], [1.0, 0.25]]
# corrupted (mask True): 0.25 + 1.0 = 1.25; untouched: 0.0 + 0.25 = 0.25; n = 4


def test_reconstruction_mse_equals_f_mse_loss():
    pred, target = rand(4, 3, 8, 8, seed=1), rand(4, 3, 8, 8, seed=2)
    torch.testing.assert_close(reconstruction_mse(pred, target), F.mse_loss(pred, target))


def test_reconstruction_mse_hand_case():
    # (0.25 + 0 + 1 + 0.25) / 4
    assert reconstruction_mse(PRED, TARGET).item() == pytest.approx(0.375)


def test_reconstruction_mse_is_scalar_and_zero_on_equal():
    x = rand(2, 1, 4, 4)
    out = reconstruction_mse(x, x.clone())
    assert out.dim() == 0 and out.item() == 0.0


def test_emphasized_mse_hand_case():
    # (0.9 * 1.25 + 0.1 * 0.25) / 4 = (1.125 + 0.025) / 4 = 0.2875
    assert emphasized_mse(PRED, TARGET, MASK, alpha=0.9, beta=0.1).item() == pytest.approx(0.2875)


def test_emphasized_mse_hand_case_swapped():
    # (0.1 * 1.25 + 0.9 * 0.25) / 4 = (0.125 + 0.225) / 4 = 0.0875
    assert emphasized_mse(PRED, TARGET, MASK, alpha=0.1, beta=0.9).item() == pytest.approx(0.0875)


def test_emphasized_mse_alpha_beta_one_is_mse():
    pred, target = rand(4, 3, 8, 8, seed=1), rand(4, 3, 8, 8, seed=2)
    mask = rand(4, 3, 8, 8, seed=3) < 0.3
    torch.testing.assert_close(emphasized_mse(pred, target, mask), F.mse_loss(pred, target))
    torch.testing.assert_close(emphasized_mse(pred, target, mask, 1.0, 1.0), reconstruction_mse(pred, target))


@pytest.mark.parametrize("alpha, beta", [(0.98, 0.02), (0.5, 3.0), (2.0, 0.0)])
def test_emphasized_mse_all_corrupted_is_alpha_times_mse(alpha, beta):
    # gaussian noise touches every element: the mask is all True
    pred, target = rand(4, 3, 8, 8, seed=1), rand(4, 3, 8, 8, seed=2)
    mask = torch.ones_like(pred, dtype=torch.bool)
    torch.testing.assert_close(emphasized_mse(pred, target, mask, alpha, beta), alpha * F.mse_loss(pred, target))


def test_emphasized_mse_none_corrupted_is_beta_times_mse():
    pred, target = rand(4, 3, 8, 8, seed=1), rand(4, 3, 8, 8, seed=2)
    mask = torch.zeros_like(pred, dtype=torch.bool)
    torch.testing.assert_close(emphasized_mse(pred, target, mask, 0.9, 0.1), 0.1 * F.mse_loss(pred, target))


def test_swapping_alpha_beta_changes_value_when_unbalanced():
    pred, target = rand(4, 3, 8, 8, seed=1), rand(4, 3, 8, 8, seed=2)
    mask = rand(4, 3, 8, 8, seed=3) < 0.25  # about a quarter corrupted
    a = emphasized_mse(pred, target, mask, 0.9, 0.1)
    b = emphasized_mse(pred, target, mask, 0.1, 0.9)
    assert abs(a.item() - b.item()) > 1e-3
    # untouched elements dominate, so weighting them more gives the larger loss
    assert b.item() > a.item()


def test_emphasized_mse_is_linear_in_weights():
    pred, target = rand(2, 1, 6, 6, seed=4), rand(2, 1, 6, 6, seed=5)
    mask = rand(2, 1, 6, 6, seed=6) < 0.5
    only_alpha = emphasized_mse(pred, target, mask, 1.0, 0.0)
    only_beta = emphasized_mse(pred, target, mask, 0.0, 1.0)
    torch.testing.assert_close(emphasized_mse(pred, target, mask, 0.7, 0.3), 0.7 * only_alpha + 0.3 * only_beta)
    torch.testing.assert_close(only_alpha + only_beta, F.mse_loss(pred, target))


def test_shape_mismatch_errors():
    with pytest.raises(ValueError, match=r"reconstruction_mse.*pred \(2, 3\).*target \(3, 2\)"):
        reconstruction_mse(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"emphasized_mse.*corrupted \(2, 2\)"):
        emphasized_mse(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.bool))


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.int64])
def test_non_bool_mask_is_an_error(dtype):
    with pytest.raises(TypeError, match=f"emphasized_mse: corrupted must be a bool mask, got {dtype}"):
        emphasized_mse(PRED, TARGET, MASK.to(dtype))


def test_gradient_flows():
    pred = PRED.clone().requires_grad_(True)
    emphasized_mse(pred, TARGET, MASK, 0.9, 0.1).backward()
    # d/dpred of w * (pred - target)^2 / n = 2 w (pred - target) / n
    weights = torch.where(MASK, 0.9, 0.1)
    torch.testing.assert_close(pred.grad, 2 * weights * (PRED - TARGET) / 4)

    pred = PRED.clone().requires_grad_(True)
    reconstruction_mse(pred, TARGET).backward()
    torch.testing.assert_close(pred.grad, 2 * (PRED - TARGET) / 4)


def test_dtype_follows_inputs():
    pred, target = PRED.double(), TARGET.double()
    assert emphasized_mse(pred, target, MASK, 0.9, 0.1).dtype == torch.float64
