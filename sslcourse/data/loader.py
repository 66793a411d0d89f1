"""A loader that lives on the training device.

The whole dataset is moved once to the device as uint8 (CIFAR-10's 50,000
images are 150 MB) and each epoch is a permutation drawn there. There are no
worker processes and no per-image Python: a free Colab machine has two CPU
cores, and per-image CPU augmentation in DataLoader workers is what keeps GPUs
waiting in most SimCLR tutorials. Augmentation happens afterwards, batched, on
the device (see :mod:`sslcourse.augment`).

Epoch ``e`` is shuffled with a generator seeded from ``(seed, e)``, so any
batch of any epoch can be reproduced without replaying the ones before it:
that is what lets :func:`sslcourse.fit` resume mid-epoch exactly.
"""

from __future__ import annotations

from typing import Iterator

import torch

from .dataset import ImageDataset

__all__ = ["DeviceLoader"]


class DeviceLoader:
    """Shuffled float batches in [0, 1], on ``device``.

    Args:
        data: an :class:`ImageDataset`, or a uint8 tensor (N, C, H, W) of images
            (labels are then -1).
        batch_size: images per batch.
        device: where the data lives and batches come out.
        shuffle: draw a fresh permutation every epoch.
        drop_last: skip the last incomplete batch (keeps batch statistics and
            step counts stable).
        seed: seeds the per-epoch permutations.

    Yields ``(images, labels)``: float32 (B, C, H, W) in [0, 1] and int64 (B,).
    """

    def __init__(
        self,
        data: ImageDataset | torch.Tensor,
        batch_size: int = 256,
        *,
        device: str | torch.device = "cpu",
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        if isinstance(data, ImageDataset):
            images, labels = data.images, data.labels
        elif isinstance(data, torch.Tensor):
            images, labels = data, torch.full((len(data),), -1, dtype=torch.int64)
        else:
            raise TypeError(f"DeviceLoader takes an ImageDataset or a uint8 tensor (N, C, H, W); got {type(data).__name__}")
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"DeviceLoader needs uint8 images (N, C, H, W); got {images.dtype} {tuple(images.shape)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if drop_last and batch_size > len(images):
            raise ValueError(
                f"batch_size {batch_size} is larger than the dataset ({len(images)} images) and drop_last=True "
                "would yield no batch; lower batch_size or pass drop_last=False"
            )
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0  # the epoch that plain iteration yields next

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of epoch ``epoch``, (N,) int64 on the device."""
        n = len(self.images)
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=gen).to(self.device)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch``, from batch number ``start`` on."""
        order = self.permutation(epoch)
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.images[idx].float().div_(255), self.labels[idx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)

    def __repr__(self) -> str:
        return (
            f"DeviceLoader({self.num_images} images {tuple(self.images.shape[1:])}, batch_size={self.batch_size}, "
            f"{len(self)} batches/epoch, on {self.device})"
        )
