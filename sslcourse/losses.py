"""Losses as pure functions: each with its formula and its paper.

Each takes tensors and returns a scalar tensor; none has parameters or state.
"""

from __future__ import annotations

import torch

__all__ = ["reconstruction_mse", "emphasized_mse"]


def _check_same_shape(name: str, **tensors: torch.Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{name}: expected tensors of one shape, got " + ", ".join(f"{k} {s}" for k, s in shapes.items()))


def reconstruction_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element: mean_j (x_j - z_j)^2.

    The plain autoencoder's loss. ``pred`` and ``target`` have the same shape,
    e.g. (B, C, H, W).
    """
    _check_same_shape("reconstruction_mse", pred=pred, target=target)
    return (pred - target).pow(2).mean()


def emphasized_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    corrupted: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> torch.Tensor:
    """Squared error that weights corrupted and untouched elements differently.

    Vincent et al. (2010), "emphasizing corrupted dimensions"::

        L = ( alpha * sum_{j in J(x~)} (x_j - z_j)^2  +  beta * sum_{j not in J(x~)} (x_j - z_j)^2 ) / n

    where x is the clean ``target``, z the reconstruction ``pred``, J(x~) the
    set of elements the corruption touched (``corrupted`` is True there) and
    n the number of elements, so that alpha = beta = 1 gives
    :func:`reconstruction_mse`. With alpha > beta the network is paid mostly
    for repairing what was destroyed, not for copying what it could see
    (the lecture deck 003 shows alpha = 0.98, beta = 0.02). Gaussian noise
    touches every element, so there the loss is alpha times the MSE.

    Args:
        pred: reconstruction z, e.g. (B, C, H, W).
        target: clean input x, same shape.
        corrupted: bool, same shape, True where the input was corrupted.
        alpha: weight of corrupted elements.
        beta: weight of untouched elements.
    Returns:
        scalar tensor.
    """
    _check_same_shape("emphasized_mse", pred=pred, target=target, corrupted=corrupted)
    if corrupted.dtype != torch.bool:
        raise TypeError(f"emphasized_mse: corrupted must be a bool mask, got {corrupted.dtype}")
    squared = (pred - target).pow(2)
    weights = torch.where(corrupted, alpha, beta).to(squared.dtype)
    return (weights * squared).mean()
