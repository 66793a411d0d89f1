"""Self-distillation without negatives: a student learns to match a slowly moving teacher.

- :class:`BYOL` (Grill et al. 2020): an online network with a predictor regresses
  the projection that a momentum target network gives of another view
  (:func:`sslcourse.losses.byol_loss`).
- :class:`DINO` (Caron et al. 2021): a student matches the softmax output of a
  momentum teacher over several crops; the teacher is centered and sharpened
  (:func:`sslcourse.losses.dino_loss`).

Nothing pushes different images apart, so both must avoid *collapse* (the same
output for every image) by other means: BYOL by its predictor and the slow
target, DINO by centering plus sharpening the teacher. Both keep the
representation of the encoder, before any head.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import losses
from ..augment import ContrastiveViews
from ..nets import ConvEncoder, MLPHead, momentum_update
from .base import SSLMethod
from .pretext import _check_image_size, _encoder_channels, _feature_dim

__all__ = ["cosine_momentum", "BYOL", "DINOHead", "DINO"]


def cosine_momentum(step: int, base: float, final: float = 1.0, total_steps: int | None = None) -> float:
    """The momentum of BYOL's and DINO's target after ``step`` steps (Grill et al. 2020, implementation details)::

        tau = final - (final - base) * (cos(pi * step / total_steps) + 1) / 2

    It starts at ``base`` and rises to ``final`` at ``total_steps`` (and stays there).
    ``total_steps=None`` keeps it at ``base``.
    """
    if not 0.0 <= base <= 1.0 or not 0.0 <= final <= 1.0:
        raise ValueError(f"momentum values must be in [0, 1], got base={base}, final={final}")
    if total_steps is None:
        return base
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1 or None, got {total_steps}")
    progress = min(step, total_steps) / total_steps
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def _frozen_copy(module: nn.Module) -> nn.Module:
    """A copy that never receives a gradient (a target or teacher network)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class BYOL(SSLMethod):
    """Bootstrap Your Own Latent (Grill et al. 2020).

    The online network (``encoder``, ``projector``, ``predictor``) sees one view
    and predicts the target network's projection of the other view; the target
    (``target_encoder``, ``target_projector``) is a momentum copy of the online
    encoder and projector and never receives a gradient. The loss is
    ``2 - 2 cos(p, z)``, symmetrized over the two views (Grill et al. eq. 2).
    The target's momentum follows :func:`cosine_momentum` from ``momentum`` to 1
    over ``momentum_steps`` steps (constant if None).

    Args:
        encoder: defaults to :class:`~sslcourse.nets.ConvEncoder` with ``widths``.
        in_channels, widths, image_size: as :class:`~sslcourse.methods.SimCLR`.
        projection_dim, hidden_dim: the projector's and predictor's sizes (256 and 4096 in the paper).
        momentum: the target's base momentum (0.996 in the paper; 0.99 for short CPU runs).
        momentum_steps: the length of the cosine schedule to 1, or None.
        predictor: False removes the predictor (the ablation in which BYOL collapses).
        views: the two-view augmentation; default ``ContrastiveViews(image_size)``.

    ``training_step`` returns ``{"loss", "spread"}``; spread is the standard deviation
    over the batch of the L2-normalized online projections, times sqrt(projection_dim):
    about 1 when the outputs are spread out, 0 when they have collapsed.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        image_size: int = 16,
        projection_dim: int = 64,
        hidden_dim: int = 256,
        momentum: float = 0.99,
        momentum_steps: int | None = None,
        predictor: bool = True,
        views: ContrastiveViews | None = None,
    ) -> None:
        super().__init__()
        cosine_momentum(0, momentum, 1.0, momentum_steps)  # validates
        self.encoder = encoder if encoder is not None else ConvEncoder(in_channels, widths)
        self.in_channels = _encoder_channels(encoder, in_channels)
        self.image_size, self.momentum, self.momentum_steps = image_size, momentum, momentum_steps
        self.views = views if views is not None else ContrastiveViews(image_size)
        dim = _feature_dim(self.encoder, self.in_channels, image_size, "images")
        self.projector = MLPHead(dim, projection_dim, hidden_dim=hidden_dim, num_layers=2)
        self.predictor = MLPHead(projection_dim, projection_dim, hidden_dim=hidden_dim, num_layers=2) if predictor else nn.Identity()
        self.target_encoder = _frozen_copy(self.encoder)
        self.target_projector = _frozen_copy(self.projector)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Online projections: (B, C, H, W) -> (B, projection_dim)."""
        return self.projector(self.encoder(x).flatten(1))

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        """Target projections, no gradient: (B, C, H, W) -> (B, projection_dim)."""
        return self.target_projector(self.target_encoder(x).flatten(1))

    def current_momentum(self) -> float:
        return cosine_momentum(int(self.step), self.momentum, 1.0, self.momentum_steps)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        _check_image_size(self, x)
        v1, v2 = self.views.pair(x)
        both = torch.cat([v1, v2])
        z1, z2 = self(both).chunk(2)  # online projections of view 1 and view 2
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self.target(both).chunk(2)
        loss = losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1)  # each view predicts the other
        with torch.no_grad():
            spread = F.normalize(z1.float(), dim=1).std(dim=0).mean() * math.sqrt(z1.shape[1])
        return {"loss": loss, "spread": spread}

    def after_step(self) -> None:
        """Move the target towards the online network by the scheduled momentum."""
        m = self.current_momentum()
        momentum_update(self.target_encoder, self.encoder, m)
        momentum_update(self.target_projector, self.projector, m)
        self.step += 1

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, momentum={self.momentum}, momentum_steps={self.momentum_steps}"


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, appendix): an MLP to a bottleneck, L2
    normalization, then a linear layer with unit-norm rows (a weight-normalized layer whose
    scale is fixed to 1). (B, in_dim) -> (B, out_dim) logits."""

    def __init__(self, in_dim: int, out_dim: int = 256, hidden_dim: int = 256, bottleneck_dim: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.normal_(self.prototypes, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.normalize(self.mlp(x.flatten(1)), dim=1)
        return h @ F.normalize(self.prototypes, dim=1).T


class DINO(SSLMethod):
    """Self-distillation with no labels (Caron et al. 2021).

    A student (``encoder`` + ``head``) and a teacher of the same shape
    (``teacher_encoder`` + ``teacher_head``, a momentum copy with no gradient).
    Each step cuts ``2`` global crops and ``local_crops`` small ones from every
    image (multi-crop). The teacher sees the global crops only; the student sees
    all of them and matches the teacher's output on every *other* crop with
    :func:`sslcourse.losses.dino_loss`. The teacher's logits are centered (a
    running mean ``center`` of its outputs, updated with ``center_momentum``)
    and sharpened (``teacher_temp``, warmed up from ``warmup_teacher_temp`` over
    ``warmup_steps`` steps).

    Local crops are resized to the global size here, because the course's
    encoders take one image size; the paper gives them a smaller resolution
    (96 against 224 pixels) to save compute.

    The collapse ablation: ``centering=False`` and ``teacher_temp=student_temp``
    (no sharpening) let the teacher's output become the same for every image.

    Args:
        encoder: any encoder, e.g. :class:`~sslcourse.nets.VisionTransformer` or
            (default) :class:`~sslcourse.nets.ConvEncoder` with ``widths``.
        in_channels, widths, image_size: as :class:`BYOL`.
        out_dim, hidden_dim, bottleneck_dim: the head (65536, 2048, 256 in the paper).
        local_crops: how many small crops per image (the paper uses 6 to 10).
        global_scale, local_scale: the crops' area ranges ((0.4, 1) and (0.05, 0.4) in the paper).
        student_temp, teacher_temp, warmup_teacher_temp, warmup_steps: temperatures.
        center_momentum: m of the center, c <- m c + (1 - m) mean(teacher logits).
        centering: False turns centering off (for the collapse demonstration).
        momentum, momentum_steps: the teacher's momentum and its cosine schedule to 1.
        views: the augmentation of a global crop (its crop_scale is replaced by the scales above).

    ``training_step`` returns ``{"loss", "teacher_entropy", "spread"}``: the mean
    entropy of the teacher's distributions (0 when each is one-hot, log out_dim
    when uniform) and the standard deviation of the teacher's probabilities over
    the batch, summed over the outputs (0 when every image gets the same output).
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        image_size: int = 16,
        out_dim: int = 256,
        hidden_dim: int = 256,
        bottleneck_dim: int = 64,
        local_crops: int = 4,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float | None = None,
        warmup_steps: int = 0,
        center_momentum: float = 0.9,
        centering: bool = True,
        momentum: float = 0.99,
        momentum_steps: int | None = None,
        views: ContrastiveViews | None = None,
    ) -> None:
        super().__init__()
        for name, t in (("student_temp", student_temp), ("teacher_temp", teacher_temp)):
            if not t > 0:
                raise ValueError(f"{name} must be positive, got {t}")
        if warmup_teacher_temp is not None and not warmup_teacher_temp > 0:
            raise ValueError(f"warmup_teacher_temp must be positive, got {warmup_teacher_temp}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        if local_crops < 0 or warmup_steps < 0:
            raise ValueError(f"local_crops and warmup_steps must be >= 0, got {local_crops} and {warmup_steps}")
        cosine_momentum(0, momentum, 1.0, momentum_steps)  # validates
        self.encoder = encoder if encoder is not None else ConvEncoder(in_channels, widths)
        self.in_channels = _encoder_channels(encoder, in_channels)
        self.image_size = image_size
        self.local_crops = local_crops
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp if warmup_teacher_temp is not None else teacher_temp
        self.warmup_steps = warmup_steps
        self.center_momentum, self.centering = center_momentum, centering
        self.momentum, self.momentum_steps = momentum, momentum_steps
        base = views if views is not None else ContrastiveViews(image_size)
        self.global_views = copy.copy(base)
        self.global_views.crop_scale = global_scale
        self.local_views = copy.copy(base)
        self.local_views.crop_scale = local_scale
        dim = _feature_dim(self.encoder, self.in_channels, image_size, "images")
        self.head = DINOHead(dim, out_dim, hidden_dim, bottleneck_dim)
        self.teacher_encoder = _frozen_copy(self.encoder)
        self.teacher_head = _frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(out_dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._pending_center: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Student logits: (B, C, H, W) -> (B, out_dim)."""
        return self.head(self.encoder(x))

    @torch.no_grad()
    def teacher(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher logits, no gradient: (B, C, H, W) -> (B, out_dim)."""
        return self.teacher_head(self.teacher_encoder(x))

    def current_teacher_temp(self) -> float:
        """The teacher temperature now: linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``."""
        if self.warmup_steps == 0 or int(self.step) >= self.warmup_steps:
            return self.teacher_temp
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * int(self.step) / self.warmup_steps

    def crops(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-crop: [global 1, global 2, local 1, ..., local n], each (B, C, image_size, image_size)."""
        return [self.global_views(x), self.global_views(x)] + [self.local_views(x) for _ in range(self.local_crops)]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        _check_image_size(self, x)
        b = x.shape[0]
        crops = self.crops(x)
        student = self(torch.cat(crops)).chunk(len(crops))  # one (B, K) per crop
        teacher = self.teacher(torch.cat(crops[:2])).chunk(2)  # the global crops only
        center = self.center if self.centering else torch.zeros_like(self.center)
        t_temp = self.current_teacher_temp()
        pairs = [(t, s) for t in range(2) for s in range(len(crops)) if s != t]
        loss = sum(losses.dino_loss(student[s], teacher[t], center, self.student_temp, t_temp) for t, s in pairs) / len(pairs)
        with torch.no_grad():
            logits = torch.cat(teacher).float()
            probs = F.softmax((logits - center) / t_temp, dim=1)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1).mean()
            spread = probs[:b].std(dim=0).sum()
            self._pending_center = logits.mean(dim=0)
        return {"loss": loss, "teacher_entropy": entropy, "spread": spread}

    @torch.no_grad()
    def update_center(self, batch_center: torch.Tensor) -> None:
        """c <- m * c + (1 - m) * batch_center, with m = ``center_momentum``."""
        self.center.mul_(self.center_momentum).add_(batch_center.to(self.center.dtype), alpha=1.0 - self.center_momentum)

    def after_step(self) -> None:
        """Move the teacher towards the student, then the center towards this step's teacher outputs."""
        m = cosine_momentum(int(self.step), self.momentum, 1.0, self.momentum_steps)
        momentum_update(self.teacher_encoder, self.encoder, m)
        momentum_update(self.teacher_head, self.head, m)
        if self._pending_center is not None:
            self.update_center(self._pending_center)
            self._pending_center = None
        self.step += 1

    def extra_repr(self) -> str:
        return (
            f"image_size={self.image_size}, local_crops={self.local_crops}, student_temp={self.student_temp}, "
            f"teacher_temp={self.teacher_temp}, centering={self.centering}, momentum={self.momentum}"
        )
