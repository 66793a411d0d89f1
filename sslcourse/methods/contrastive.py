"""Contrastive methods: pull two views of one image together, push other images away.

- :class:`SimCLR` (Chen et al. 2020): two augmented views per image, an MLP
  projection head, NT-Xent over the batch (:func:`sslcourse.losses.nt_xent`).
- :class:`MoCo` (He et al. 2020; v2 of Chen, Fan, Girshick and He 2020 as
  options): a query encoder trained by gradient, a key encoder that follows it
  by momentum, and a FIFO queue of past keys as the negatives
  (:func:`sslcourse.losses.info_nce`).

Both keep the representation *before* the projection head: the head absorbs
what the loss makes invariant (colour, crop), the encoder keeps it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import distributed, losses
from ..augment import ContrastiveViews
from ..nets import MLPHead
from .base import SSLMethod, check_number, frozen_copy, views_or_default

__all__ = ["positive_accuracy", "SimCLR", "MoCo"]


@torch.no_grad()
def positive_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """How often each of the 2N embeddings finds its partner view as its nearest other embedding.

    The top-1 accuracy of the 2N-way classification behind NT-Xent: a training
    diagnostic that climbs towards 1 as the views of one image become
    recognisable among the batch. (N, D), (N, D) -> scalar in [0, 1].
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sims = z @ z.T
    sims.fill_diagonal_(float("-inf"))
    partner = torch.arange(2 * n, device=z.device).roll(n)  # built on the device: no copy from the host
    return (sims.argmax(dim=1) == partner).float().mean()


class SimCLR(SSLMethod):
    """SimCLR (Chen et al. 2020): agree across two augmented views, against the rest of the batch.

    Each step draws two views of every image (:class:`~sslcourse.augment.ContrastiveViews`),
    encodes all 2B views in one pass, projects them with an MLP head and
    applies NT-Xent with ``temperature``. ``projection_layers=0`` removes the
    head (the loss then acts on the flattened encoder output), for the
    ablation of the paper's Fig. 8.

    Args:
        encoder: defaults to :class:`~sslcourse.nets.ConvEncoder` with ``widths``.
        in_channels: image channels (1 for digits, 3 for CIFAR-10).
        widths: the default encoder's widths.
        image_size: the side of the square training images.
        projection_dim, hidden_dim, projection_layers: the head (2 layers in the paper).
        temperature: NT-Xent's tau (0.5 is the paper's CIFAR-10 choice).
        views: the augmentation; default ``ContrastiveViews(image_size)``.

    ``training_step`` returns ``{"loss", "accuracy"}``, accuracy being
    :func:`positive_accuracy` on the projections.
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
        projection_layers: int = 2,
        temperature: float = 0.5,
        views: ContrastiveViews | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)
        check_number("projection_layers", projection_layers, low=0, integer=True)
        self.init_encoder(encoder, in_channels=in_channels, widths=widths, image_size=image_size)
        self.views = views_or_default(views, image_size)
        dim = self.feature_dim()
        self.projector = (
            MLPHead(dim, projection_dim, hidden_dim=hidden_dim, num_layers=projection_layers)
            if projection_layers > 0
            else nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections: (B, C, H, W) -> (B, projection_dim)."""
        return self.projector(self.encoder(x).flatten(1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        self.check_images(x)
        v1, v2 = self.views.pair(x)
        z1, z2 = self(torch.cat([v1, v2])).chunk(2)
        # under torchrun every process's embeddings are negatives too: the loss of the whole global batch
        loss = losses.nt_xent(distributed.gather(z1), distributed.gather(z2), self.temperature)
        return {"loss": loss, "accuracy": positive_accuracy(z1, z2)}

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, temperature={self.temperature}"


class MoCo(SSLMethod):
    """Momentum Contrast (He et al. 2020), with the MoCo v2 options (Chen et al. 2020b).

    A query encoder (``encoder`` + ``projector``) is trained by gradient; a key
    encoder of the same shape follows it by momentum,
    ``key <- m * key + (1 - m) * query`` (:meth:`~SSLMethod.update_momentum` on
    :meth:`momentum_pairs`), and never receives a gradient. Each step encodes one view of every image
    as queries and another as keys, scores each query against its own key
    (the positive) and against the ``queue_size`` keys of earlier batches
    (the negatives), and applies InfoNCE. The new keys then enter the queue
    and the oldest leave it (first in, first out).

    MoCo shuffles the keys across GPUs so that batch norm cannot leak which
    key belongs to which query ("shuffling BN"). On one device the keys are
    shuffled and encoded in ``key_bn_splits`` groups, each with its own
    batch statistics, which breaks the same leak.

    Args:
        encoder, in_channels, widths, image_size: as :class:`SimCLR`.
        projection_dim: the embedding size (128 in the papers).
        mlp_head: MoCo v2's 2-layer MLP head (True) or v1's linear layer (False).
        hidden_dim: the MLP's hidden width.
        queue_size: K, the number of negatives.
        momentum: m; 0.999 in the paper for long runs, 0.99 for the short CPU ones.
        temperature: 0.07 in v1, 0.2 in v2.
        key_bn_splits: groups for the key encoder's batch norm (1 turns the shuffle off).
        views: the augmentation; default ``ContrastiveViews(image_size)`` (v2's, without blur on small images).

    ``training_step`` returns ``{"loss", "accuracy", "keys"}``, accuracy being
    how often the positive key scores above every queued negative; ``after_step``
    enqueues the keys (B, projection_dim) once the optimizer has applied the step.
    """

    #: under torchrun its key encoder keeps per-process batch norm (the paper's shuffled BN), not synchronised BN
    shuffles_batch_norm = True

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        image_size: int = 16,
        projection_dim: int = 64,
        mlp_head: bool = True,
        hidden_dim: int = 256,
        queue_size: int = 1024,
        momentum: float = 0.99,
        temperature: float = 0.2,
        key_bn_splits: int = 4,
        views: ContrastiveViews | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)
        self.momentum = check_number("momentum", momentum, low=0, high=1)
        check_number("queue_size", queue_size, low=1, integer=True)
        self.key_bn_splits = check_number("key_bn_splits", key_bn_splits, low=1, integer=True)
        self.init_encoder(encoder, in_channels=in_channels, widths=widths, image_size=image_size)
        self.views = views_or_default(views, image_size)
        self.projector = MLPHead(self.feature_dim(), projection_dim, hidden_dim=hidden_dim, num_layers=2 if mlp_head else 1)
        self.key_encoder = frozen_copy(self.encoder)
        self.key_projector = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        return self.queue.shape[0]

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self.key_encoder), (self.projector, self.key_projector)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Query embeddings: (B, C, H, W) -> (B, projection_dim)."""
        return self.projector(self.encoder(x).flatten(1))

    @torch.no_grad()
    def encode_keys(self, x: torch.Tensor) -> torch.Tensor:
        """Key embeddings, L2-normalized, with shuffled batch-norm groups: (B, C, H, W) -> (B, projection_dim).

        Under torchrun the groups are the processes, as in the paper: the global batch is shuffled across
        them, each encodes its share with its own batch statistics, and the keys come back in order."""
        here = distributed.world()
        if here.size > 1:
            share, order = distributed.shuffle_across(x)
            keys = F.normalize(self.key_projector(self.key_encoder(share).flatten(1)).float(), dim=1)
            return distributed.gather(keys)[order.argsort()].chunk(here.size)[here.rank]
        order = torch.randperm(x.shape[0], device=x.device)
        n_groups = max(1, min(self.key_bn_splits, x.shape[0] // 2))  # batch norm needs 2 images per group
        groups = x[order].tensor_split(n_groups)
        keys = torch.cat([self.key_projector(self.key_encoder(g).flatten(1)) for g in groups])
        keys = F.normalize(keys.float(), dim=1)
        return keys[order.argsort()]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (B, D) over the oldest entries of the queue (first in, first out)."""
        b, k = keys.shape[0], self.queue_size
        if keys.dim() != 2 or keys.shape[1] != self.queue.shape[1]:
            raise ValueError(f"enqueue: keys must be (B, {self.queue.shape[1]}); got {tuple(keys.shape)}")
        if b > k:
            raise ValueError(f"enqueue: a batch of {b} keys does not fit a queue of {k}; use queue_size >= batch size")
        rows = (self.queue_pointer + torch.arange(b, device=self.queue.device)) % k  # on the device: no sync
        self.queue[rows] = keys.detach().to(self.queue.dtype)
        self.queue_pointer.copy_((self.queue_pointer + b) % k)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        self.check_images(x)
        if x.shape[0] * distributed.world().size > self.queue_size:
            raise ValueError(f"MoCo: a batch of {x.shape[0] * distributed.world().size} images does not fit a queue of "
                             f"{self.queue_size} keys; use queue_size >= batch size")
        view_q, view_k = self.views.pair(x)
        q = self(view_q)
        k = self.encode_keys(view_k)
        negatives = self.queue.clone().detach()
        loss = losses.info_nce(q, k, negatives, self.temperature)
        with torch.no_grad():
            qn = F.normalize(q.float(), dim=1)
            positive = (qn * k).sum(dim=1)
            accuracy = (positive > (qn @ negatives.T).amax(dim=1)).float().mean()
        return {"loss": loss, "accuracy": accuracy, "keys": distributed.gather(k)}  # every process enqueues every key

    def after_step(self, out: dict[str, torch.Tensor]) -> None:
        """Move the key encoder and head towards the query encoder and head, then enqueue this step's keys."""
        self.update_momentum(self.momentum)
        self.enqueue(out["keys"])

    def extra_repr(self) -> str:
        return (
            f"image_size={self.image_size}, queue_size={self.queue_size}, momentum={self.momentum}, "
            f"temperature={self.temperature}, key_bn_splits={self.key_bn_splits}"
        )
