"""Datasets as tensors, and a loader that keeps them on the training device.

``load_dataset(name, split)`` returns an :class:`ImageDataset`: uint8 images
(N, C, H, W), int64 labels (N,) and class names. ``DeviceLoader`` turns one into
shuffled float batches in [0, 1] on any device, with no worker processes.
"""

from .dataset import ImageDataset
from .loader import DeviceLoader
from .sources import DatasetNotAvailableError, available_datasets, load_dataset

__all__ = [
    "ImageDataset",
    "DeviceLoader",
    "DatasetNotAvailableError",
    "available_datasets",
    "load_dataset",
]
