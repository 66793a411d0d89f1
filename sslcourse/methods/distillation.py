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

from .. import distributed, losses
from ..augment import ContrastiveViews
from ..nets import MLPHead
from .base import SSLMethod, check_number, frozen_copy, views_or_default

__all__ = ["cosine_momentum", "BYOL", "DINOHead", "DINO"]


def cosine_momentum(step: int | torch.Tensor, base: float, final: float = 1.0, total_steps: int | None = None) -> float:
    """The momentum of BYOL's and DINO's target after ``step`` steps (Grill et al. 2020, implementation details)::

        tau = final - (final - base) * (cos(pi * step / total_steps) + 1) / 2

    It starts at ``base`` and rises to ``final`` at ``total_steps`` (and stays there).
    ``total_steps=None`` keeps it at ``base`` (without reading ``step``, which
    may be a counter on a GPU: reading it waits for the GPU).
    """
    if not 0.0 <= base <= 1.0 or not 0.0 <= final <= 1.0:
        raise ValueError(f"momentum values must be in [0, 1], got base={base}, final={final}")
    if total_steps is None:
        return base
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1 or None, got {total_steps}")
    progress = min(int(step), total_steps) / total_steps
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


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
        self.momentum = check_number("momentum", momentum, low=0, high=1)
        self.momentum_steps = check_number("momentum_steps", momentum_steps, low=1, integer=True, allow_none=True)
        self.init_encoder(encoder, in_channels=in_channels, widths=widths, image_size=image_size)
        self.views = views_or_default(views, image_size)
        self.projector = MLPHead(self.feature_dim(), projection_dim, hidden_dim=hidden_dim, num_layers=2)
        self.predictor = MLPHead(projection_dim, projection_dim, hidden_dim=hidden_dim, num_layers=2) if predictor else nn.Identity()
        self.target_encoder = frozen_copy(self.encoder)
        self.target_projector = frozen_copy(self.projector)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # applied steps: the schedule's position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Online projections: (B, C, H, W) -> (B, projection_dim)."""
        return self.projector(self.encoder(x).flatten(1))

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        """Target projections, no gradient: (B, C, H, W) -> (B, projection_dim)."""
        return self.target_projector(self.target_encoder(x).flatten(1))

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self.target_encoder), (self.projector, self.target_projector)]

    def current_momentum(self) -> float:
        """The target's momentum for the next update: :func:`cosine_momentum` after ``step`` applied steps."""
        return cosine_momentum(self.applied_steps, self.momentum, 1.0, self.momentum_steps)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        self.check_images(x)
        v1, v2 = self.views.pair(x)
        both = torch.cat([v1, v2])
        z1, z2 = self(both).chunk(2)  # online projections of view 1 and view 2
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self.target(both).chunk(2)
        loss = losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1)  # each view predicts the other
        with torch.no_grad():
            spread = F.normalize(z1.float(), dim=1).std(dim=0).mean() * math.sqrt(z1.shape[1])
        return {"loss": loss, "spread": spread}

    def after_step(self, out: dict[str, torch.Tensor]) -> None:
        """Move the target towards the online network by the scheduled momentum; count the step."""
        self.update_momentum(self.current_momentum())
        self.count_step()

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

    ``training_step`` returns ``{"loss", "teacher_entropy", "spread", "teacher_mean"}``:
    the mean entropy of the teacher's distributions (0 when each is one-hot, log
    out_dim when uniform), the standard deviation of the teacher's probabilities
    over the batch, summed over the outputs (0 when every image gets the same
    output), and the teacher's mean logits over the batch (out_dim,), which
    ``after_step`` moves the center towards once the optimizer has applied the step.
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
        self.student_temp = check_number("student_temp", student_temp, low=0, low_open=True)
        self.teacher_temp = check_number("teacher_temp", teacher_temp, low=0, low_open=True)
        check_number("warmup_teacher_temp", warmup_teacher_temp, low=0, low_open=True, allow_none=True)
        self.warmup_steps = check_number("warmup_steps", warmup_steps, low=0, integer=True)
        self.center_momentum = check_number("center_momentum", center_momentum, low=0, high=1)
        self.local_crops = check_number("local_crops", local_crops, low=0, integer=True)
        self.momentum = check_number("momentum", momentum, low=0, high=1)
        self.momentum_steps = check_number("momentum_steps", momentum_steps, low=1, integer=True, allow_none=True)
        for name, scale in (("global_scale", global_scale), ("local_scale", local_scale)):
            if not (isinstance(scale, (tuple, list)) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 1, got {scale!r}")
        self.init_encoder(encoder, in_channels=in_channels, widths=widths, image_size=image_size)
        self.warmup_teacher_temp = warmup_teacher_temp if warmup_teacher_temp is not None else teacher_temp
        self.centering = centering
        base = views_or_default(views, image_size)
        self.global_views = copy.copy(base)
        self.global_views.crop_scale = global_scale
        self.local_views = copy.copy(base)
        self.local_views.crop_scale = local_scale
        self.head = DINOHead(self.feature_dim(), out_dim, hidden_dim, bottleneck_dim)
        self.teacher_encoder = frozen_copy(self.encoder)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(out_dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # applied steps: the schedules' position

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self.teacher_encoder), (self.head, self.teacher_head)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Student logits: (B, C, H, W) -> (B, out_dim)."""
        return self.head(self.encoder(x))

    @torch.no_grad()
    def teacher(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher logits, no gradient: (B, C, H, W) -> (B, out_dim)."""
        return self.teacher_head(self.teacher_encoder(x))

    def current_teacher_temp(self) -> float:
        """The teacher temperature now: linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``."""
        if self.warmup_steps == 0 or self.applied_steps >= self.warmup_steps:
            return self.teacher_temp
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * self.applied_steps / self.warmup_steps

    def crops(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-crop: [global 1, global 2, local 1, ..., local n], each (B, C, image_size, image_size)."""
        return [self.global_views(x), self.global_views(x)] + [self.local_views(x) for _ in range(self.local_crops)]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        self.check_images(x)
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
        return {"loss": loss, "teacher_entropy": entropy, "spread": spread, "teacher_mean": distributed.all_reduce_mean(logits.mean(dim=0))}  # over all processes' images

    @torch.no_grad()
    def update_center(self, batch_center: torch.Tensor) -> None:
        """c <- m * c + (1 - m) * batch_center, with m = ``center_momentum``."""
        self.center.mul_(self.center_momentum).add_(batch_center.to(self.center.dtype), alpha=1.0 - self.center_momentum)

    def current_momentum(self) -> float:
        """The teacher's momentum for the next update: :func:`cosine_momentum` after ``step`` applied steps."""
        return cosine_momentum(self.applied_steps, self.momentum, 1.0, self.momentum_steps)

    def after_step(self, out: dict[str, torch.Tensor]) -> None:
        """Move the teacher towards the student, then the center towards this step's mean teacher output; count the step."""
        self.update_momentum(self.current_momentum())
        self.update_center(out["teacher_mean"])
        self.count_step()

    def extra_repr(self) -> str:
        return (
            f"image_size={self.image_size}, local_crops={self.local_crops}, student_temp={self.student_temp}, "
            f"teacher_temp={self.teacher_temp}, centering={self.centering}, momentum={self.momentum}"
        )
