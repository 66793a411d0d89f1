"""The one in-memory dataset type every source returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ImageDataset"]


@dataclass
class ImageDataset:
    """Images as a uint8 tensor and their labels.

    Attributes:
        images: uint8 (N, C, H, W), values 0..255.
        labels: int64 (N,), values in ``range(len(classes))``.
        classes: class names, ``classes[label]``.
        name: the source's name, e.g. ``"digits"``.
        split: ``"train"`` or ``"test"`` (or another split the source has).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = f"{self.images.dtype} {tuple(self.images.shape)}" if isinstance(self.images, torch.Tensor) else type(self.images).__name__
            raise TypeError(f"ImageDataset.images must be a uint8 tensor (N, C, H, W); got {got}")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dim() != 1 or self.labels.dtype != torch.int64:
            got = f"{self.labels.dtype} {tuple(self.labels.shape)}" if isinstance(self.labels, torch.Tensor) else type(self.labels).__name__
            raise TypeError(f"ImageDataset.labels must be an int64 tensor (N,); got {got}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"ImageDataset has {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    def subset(self, indices: torch.Tensor) -> "ImageDataset":
        """The images at ``indices`` (a LongTensor or bool mask), same classes."""
        return ImageDataset(self.images[indices], self.labels[indices], list(self.classes), self.name, self.split)

    def to(self, device: str | torch.device) -> "ImageDataset":
        return ImageDataset(self.images.to(device), self.labels.to(device), list(self.classes), self.name, self.split)

    def floats(self) -> torch.Tensor:
        """All images as float32 in [0, 1], (N, C, H, W)."""
        return self.images.float().div_(255)

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, split={self.split!r}, {len(self)} images of "
            f"{'x'.join(map(str, self.image_shape))}, {self.num_classes} classes, on {self.images.device})"
        )
