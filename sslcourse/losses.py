"""Losses as pure functions: each with its formula and its paper.

Each takes tensors and returns a scalar tensor; none has parameters or state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "soft_cross_entropy",
    "reconstruction_mse",
    "emphasized_mse",
    "masked_reconstruction_mse",
    "adversarial_generator_loss",
    "adversarial_discriminator_loss",
    "nt_xent",
    "info_nce",
    "byol_loss",
    "dino_loss",
    "masked_mse",
]


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


def masked_reconstruction_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared error over the hidden region only: the context encoder's masked L2.

    Pathak et al. (2016), "Context Encoders: Feature Learning by Inpainting"::

        L_rec(x) = || M * (x - F((1 - M) * x)) ||_2^2

    where M is the binary mask (1 where a pixel was hidden), ``pred`` is the
    network's output F((1 - M) * x) and ``target`` the full image x. The paper
    writes a sum; we divide it by the number of hidden elements (pixels times
    channels), so the loss is the mean squared error over the hidden region:
    its scale does not depend on the image size or on how much is hidden, and
    it equals :func:`reconstruction_mse` when everything is hidden. What the
    network outputs outside the mask does not matter (zero gradient there).
    With nothing hidden the loss is 0.

    Args:
        pred: reconstruction, (B, C, H, W).
        target: the original image, (B, C, H, W).
        mask: bool, (B, C, H, W) or (B, 1, H, W) (one mask for all channels),
            True where the input was hidden.
    Returns:
        scalar tensor.
    """
    _check_same_shape("masked_reconstruction_mse", pred=pred, target=target)
    if mask.dtype != torch.bool:
        raise TypeError(f"masked_reconstruction_mse: mask must be a bool tensor, got {mask.dtype}")
    if mask.dim() != pred.dim() or any(m not in (1, p) for m, p in zip(mask.shape, pred.shape)) or mask.shape[0] != pred.shape[0]:
        raise ValueError(
            f"masked_reconstruction_mse: mask {tuple(mask.shape)} must be shaped like pred {tuple(pred.shape)}, "
            "or with a channel dimension of 1"
        )
    weights = mask.expand_as(pred).to(pred.dtype)
    squared = (pred - target).pow(2)
    return (weights * squared).sum() / weights.sum().clamp_min(1.0)


def adversarial_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss, non-saturating form: -mean log D(G(z)).

    Goodfellow et al. (2014); the adversarial term of the context encoder
    (Pathak et al. 2016), where the generator is the inpainting network and
    G(z) an inpainted image. Written with logits for stability:
    -log sigmoid(l) = softplus(-l), i.e. binary cross-entropy against the
    label "real" (1). It falls as the discriminator is fooled.

    Args:
        logits_fake: discriminator logits on generated images, any shape (e.g. (B,)).
    Returns:
        scalar tensor.
    """
    return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))


def adversarial_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss: -mean log D(x) - mean log(1 - D(G(z))).

    Goodfellow et al. (2014); Pathak et al. (2016) write the same objective as
    L_adv = max_D E[log D(x) + log(1 - D(F((1 - M) * x)))]. This is its
    negative, as binary cross-entropy with logits: real images labelled 1,
    generated ones 0. It is 2 log 2 = 1.386 when D outputs 1/2 everywhere.

    Args:
        logits_real: discriminator logits on real images, e.g. (B,).
        logits_fake: discriminator logits on generated images, e.g. (B,).
    Returns:
        scalar tensor (the sum of the two means).
    """
    real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return real + fake


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against a distribution per position, optionally weighted per position.

    Zhang, Isola and Efros (2016), eq. (2), the colorization loss::

        L = - (1 / P) * sum_{h,w} v(Z_hw) * sum_q Z_hwq * log softmax(logits)_hwq

    where Z is the soft-encoded target over the Q classes (each position's
    distribution sums to 1), v the class-rebalancing weight of each position
    (``weights``; all ones when None) and P the number of positions.

    Args:
        logits: (B, Q, ...) unnormalised scores, class dimension 1.
        target: (B, Q, ...) non-negative, summing to 1 over dimension 1.
        weights: (B, ...) per-position weights, or None.
    Returns:
        scalar tensor.
    """
    _check_same_shape("soft_cross_entropy", logits=logits, target=target)
    per_position = -(target * torch.log_softmax(logits.float(), dim=1)).sum(dim=1)
    if weights is not None:
        if weights.shape != per_position.shape:
            raise ValueError(f"soft_cross_entropy: weights must have shape {tuple(per_position.shape)}, got {tuple(weights.shape)}")
        per_position = per_position * weights
    return per_position.mean()


def _check_temperature(name: str, temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"{name}: temperature must be positive, got {temperature}")


def _check_embeddings(name: str, **tensors: torch.Tensor) -> None:
    for key, t in tensors.items():
        if t.dim() != 2:
            raise ValueError(f"{name}: {key} must be (N, D) embeddings, got shape {tuple(t.shape)}")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalized temperature-scaled cross-entropy (Chen et al. 2020, eq. 1).

    The 2B embeddings of B images seen twice are L2-normalized; with
    s_ij = z_i . z_j / tau, the anchor i whose positive is j(i) (the other
    view of the same image) pays::

        l_i = - log( exp(s_i,j(i)) / sum_{k != i} exp(s_ik) )

    and the loss is the mean of l_i over all 2B anchors. The sum in the
    denominator leaves out only the anchor itself, so each anchor faces one
    positive and K = 2B - 2 negatives. Computed as a cross-entropy over logits in
    float32 (log-sum-exp, stable at small temperatures and under autocast).

    Args:
        z1: (B, D) embeddings of the first views.
        z2: (B, D) embeddings of the second views; row i pairs with z1's row i.
        temperature: tau > 0.
    Returns:
        scalar tensor.
    """
    _check_embeddings("nt_xent", z1=z1, z2=z2)
    _check_same_shape("nt_xent", z1=z1, z2=z2)
    _check_temperature("nt_xent", temperature)
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"nt_xent: needs at least 2 images so that there are negatives, got {n}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # an anchor is never its own negative
    targets = torch.arange(2 * n, device=z.device).roll(n)  # anchor i's positive: i + n, then i - n
    return F.cross_entropy(logits, targets)


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """InfoNCE against a set of negatives, as MoCo uses it (He et al. 2020, eq. 1).

    All vectors are L2-normalized. For query q with its positive key k+ and
    the K negatives k_1..k_K (MoCo's queue)::

        L_q = - log( exp(q . k+ / tau) / (exp(q . k+ / tau) + sum_k exp(q . k_k / tau)) )

    which is a (K + 1)-way cross-entropy with the positive at index 0, averaged
    over the B queries (van den Oord et al. 2018 call this the InfoNCE loss;
    it bounds the mutual information: I >= log(K + 1) - L). Computed in
    float32.

    Args:
        query: (B, D).
        positive: (B, D), row i the positive key of query i.
        negatives: (K, D), shared by all queries.
        temperature: tau > 0.
    Returns:
        scalar tensor.
    """
    _check_embeddings("info_nce", query=query, positive=positive, negatives=negatives)
    _check_same_shape("info_nce", query=query, positive=positive)
    _check_temperature("info_nce", temperature)
    if negatives.shape[1] != query.shape[1]:
        raise ValueError(f"info_nce: negatives must have D={query.shape[1]} columns like the queries, got shape {tuple(negatives.shape)}")
    q = F.normalize(query.float(), dim=1)
    k_pos = F.normalize(positive.float(), dim=1)
    k_neg = F.normalize(negatives.float(), dim=1)
    logits = torch.cat([(q * k_pos).sum(dim=1, keepdim=True), q @ k_neg.T], dim=1) / temperature
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, targets)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, eq. 2): the mean over the batch of::

        l_i = || p_i / ||p_i|| - z_i / ||z_i|| ||^2  =  2 - 2 cos(p_i, z_i)

    with p the online network's prediction and z the target network's
    projection of the other view. The target is a target: no gradient flows
    into z (the stop-gradient of the paper is applied here, so a caller cannot
    forget it). BYOL symmetrizes by adding the loss with the views swapped.
    Computed in float32; 0 when p and z point the same way, 4 when opposite.

    Args:
        p: (B, D) predictions of the online network.
        z: (B, D) projections of the target network.
    Returns:
        scalar tensor.
    """
    _check_embeddings("byol_loss", p=p, z=z)
    _check_same_shape("byol_loss", p=p, z=z)
    cosine = F.cosine_similarity(p.float(), z.detach().float(), dim=1, eps=1e-8)
    return (2.0 - 2.0 * cosine).mean()


def dino_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO's cross-entropy between a sharpened, centered teacher and the student (Caron et al. 2021, eq. 1-2).

    For D_out output dimensions, the teacher's distribution is centered (the
    running mean ``center`` of its logits is subtracted) and sharpened (a low
    temperature), and gets no gradient; the student's uses its own temperature::

        P_t = softmax((t - c) / tau_t),   P_s = softmax(s / tau_s)
        L   = mean over the batch of  - sum_d P_t[d] log P_s[d]

    Centering alone would push every output toward the uniform distribution;
    sharpening alone toward one dimension for every image; the two together
    avoid both collapses. Multi-crop pairs (each teacher crop against every
    other student crop) are the method's business: call this once per pair.

    Args:
        student_logits: (B, D_out).
        teacher_logits: (B, D_out), from the teacher on another view of the same images.
        center: (D_out,) or (1, D_out), the teacher's running center.
        student_temp, teacher_temp: tau_s > 0 and tau_t > 0.
    Returns:
        scalar tensor.
    """
    _check_embeddings("dino_loss", student_logits=student_logits, teacher_logits=teacher_logits)
    _check_same_shape("dino_loss", student_logits=student_logits, teacher_logits=teacher_logits)
    _check_temperature("dino_loss (student_temp)", student_temp)
    _check_temperature("dino_loss (teacher_temp)", teacher_temp)
    k = student_logits.shape[1]
    if center.numel() != k or center.dim() > 2:
        raise ValueError(f"dino_loss: center must have shape ({k},) or (1, {k}) like the logits' K={k}, got {tuple(center.shape)}")
    teacher = F.softmax((teacher_logits.detach().float() - center.detach().float().reshape(1, k)) / teacher_temp, dim=1)
    student = F.log_softmax(student_logits.float() / student_temp, dim=1)
    return -(teacher * student).sum(dim=1).mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAE's reconstruction loss on the masked patches only (He et al. 2021, section 3).

    With pred and target (B, L, D) patch vectors and mask (B, L), 1 where the
    patch was removed from the encoder's input::

        L = sum_{b,l} mask_bl * mean_d (pred_bld - target_bld)^2  /  sum_{b,l} mask_bl

    Visible patches do not count: reconstructing what the encoder saw is easy
    and teaches little. Normalized-pixel targets (each patch's pixels minus
    their mean, over their standard deviation) are prepared by the caller.

    Args:
        pred: (B, L, D) reconstructed patches.
        target: (B, L, D) true patches.
        mask: (B, L), 1 = masked (counted), 0 = visible (ignored); as returned
            by ``sslcourse.patches.random_masking``. At least one patch must be masked.
    Returns:
        scalar tensor.
    """
    _check_same_shape("masked_mse", pred=pred, target=target)
    if pred.dim() != 3:
        raise ValueError(f"masked_mse: pred and target must be (B, L, D) patches, got shape {tuple(pred.shape)}")
    if tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"masked_mse: mask must be (B, L) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    # No check of the mask's values here: it would cost a device synchronisation every step on a GPU.
    # A mask with no 1 gives 0 / 0 = NaN, which `fit` stops on with an error naming the step.
    mask = mask.float()
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)  # (B, L)
    return (per_patch * mask).sum() / mask.sum()
