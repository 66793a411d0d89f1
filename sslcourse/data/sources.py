"""Where the images come from: ``load_dataset(name, split)``.

Sources:

- ``digits``: scikit-learn's 1,797 handwritten digits (8x8, 17 gray levels),
  shipped inside the scikit-learn wheel, so it works offline. Upscaled to 16x16
  by default. The embedded default of the course.
- ``photos``: patches of the colour photographs shipped with scikit-image
  (:mod:`sslcourse.data.photos`), for the colour methods; no download.
- ``cifar10``, ``svhn``, ``stl10``, ``mnist``, ``fashion_mnist``: torchvision's
  datasets, loaded with torchvision's own code (including its md5 checks) and
  downloaded on first use. Each lives in its own folder ``<root>/<name>``, where
  ``root`` is the ``root`` argument, else ``$SSLCOURSE_DATA``, else
  ``~/.cache/sslcourse/data``.

Offline and without the files, a torchvision source raises
:class:`DatasetNotAvailableError` saying which files it needs, where, and how
to get them.

Example::

    >>> data = load_dataset("digits", "train")
    >>> data.images.shape, data.images.dtype, data.labels.dtype
    (torch.Size([1437, 1, 16, 16]), torch.uint8, torch.int64)
"""

from __future__ import annotations

import http.client
import importlib
import numbers
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageDataset
from .photos import PHOTO_SPLITS, load_photos

__all__ = [
    "DatasetNotAvailableError",
    "SourceSpec",
    "TORCHVISION_SOURCES",
    "available_datasets",
    "data_root",
    "load_dataset",
]

DIGITS_SPLITS = ("train", "test", "all")
DIGITS_SIZE = 16  # digits' default side; the raw images are 8x8

# What torchvision raises when files are missing, fail their md5 check, or are
# unreadable (MNIST's raw files have no md5 and fail with asserts or ValueErrors
# when truncated), and what a failed download raises (urllib.error.URLError and
# socket errors are OSErrors; torchvision raises RuntimeError when the md5 of a
# download is wrong or every mirror failed).
_UNAVAILABLE = (
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    AssertionError,
    pickle.UnpicklingError,
    tarfile.TarError,
    http.client.HTTPException,
)


class DatasetNotAvailableError(RuntimeError):
    """A dataset's files are missing or corrupted and could not be downloaded."""


@dataclass(frozen=True)
class SourceSpec:
    """How to load one torchvision dataset, and what to tell a user who lacks its files.

    Attributes:
        dataset: the torchvision dataset class, or its name in
            ``torchvision.datasets`` (imported on first use). Tests replace it
            with a subclass carrying their own md5 sums.
        splits: our split name -> the constructor's keywords, e.g.
            ``{"train": {"train": True}}``.
        layout: how the dataset's ``.data`` is laid out: ``"NHWC"``, ``"NCHW"``
            or ``"NHW"`` (grayscale).
        folder: where torchvision looks for the files, relative to
            ``<root>/<name>``; ``{cls}`` stands for the class name (MNIST uses it).
        files: split -> the files torchvision needs in ``folder``.
        title: the dataset's usual name, e.g. ``"CIFAR-10"``.
        home: its home page.
        manual: how to fetch the files by hand; ``{home}``, ``{dir}`` (the
            source's folder ``<root>/<name>``) and ``{folder}`` (where the files
            go) are filled in.
        classes: class names, for datasets that carry none (SVHN), or as a
            fallback (STL-10 reads them from an optional file).
    """

    dataset: type | str
    splits: Mapping[str, Mapping[str, Any]]
    layout: str
    folder: str
    files: Mapping[str, tuple[str, ...]]
    title: str
    home: str
    manual: str
    classes: tuple[str, ...] = ()

    def dataset_class(self) -> type:
        if isinstance(self.dataset, str):
            return getattr(importlib.import_module("torchvision.datasets"), self.dataset)
        return self.dataset


_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_STL10_FILES = ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")  # all checked, every split
_MNIST_FILES = tuple(f"{s}-{kind}-ubyte" for s in ("train", "t10k") for kind in ("images-idx3", "labels-idx1"))
_TRAIN_TEST = {"train": {"train": True}, "test": {"train": False}}
_DIGIT_NAMES = tuple(str(d) for d in range(10))

TORCHVISION_SOURCES: dict[str, SourceSpec] = {
    "cifar10": SourceSpec(
        dataset="CIFAR10",
        splits=_TRAIN_TEST,
        layout="NHWC",
        folder="cifar-10-batches-py",
        files={split: _CIFAR10_FILES for split in _TRAIN_TEST},  # torchvision checks all of them for either split
        title="CIFAR-10",
        home="https://www.cs.toronto.edu/~kriz/cifar.html",
        manual="download cifar-10-python.tar.gz (the Python version, 163 MB) from {home} and extract it in {dir}",
    ),
    "svhn": SourceSpec(
        dataset="SVHN",
        splits={split: {"split": split} for split in ("train", "test", "extra")},
        layout="NCHW",
        folder="",
        files={split: (f"{split}_32x32.mat",) for split in ("train", "test", "extra")},
        title="SVHN (Street View House Numbers, format 2: cropped digits)",
        home="http://ufldl.stanford.edu/housenumbers/",
        manual="download the .mat file from {home} into {folder}",
        classes=_DIGIT_NAMES,
    ),
    "stl10": SourceSpec(
        dataset="STL10",
        splits={split: {"split": split} for split in ("train", "test", "unlabeled", "train+unlabeled")},
        layout="NCHW",
        folder="stl10_binary",
        files={split: _STL10_FILES for split in ("train", "test", "unlabeled", "train+unlabeled")},
        title="STL-10",
        home="https://cs.stanford.edu/~acoates/stl10/",
        manual="download stl10_binary.tar.gz (2.5 GB) from {home} and extract it in {dir}",
        classes=("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"),
    ),
    "mnist": SourceSpec(
        dataset="MNIST",
        splits=_TRAIN_TEST,
        layout="NHW",
        folder=os.path.join("{cls}", "raw"),
        files={split: _MNIST_FILES for split in _TRAIN_TEST},
        title="MNIST",
        home="http://yann.lecun.com/exdb/mnist/",
        manual="download the four .gz files from {home} and gunzip them in {folder}",
    ),
    "fashion_mnist": SourceSpec(
        dataset="FashionMNIST",
        splits=_TRAIN_TEST,
        layout="NHW",
        folder=os.path.join("{cls}", "raw"),
        files={split: _MNIST_FILES for split in _TRAIN_TEST},
        title="Fashion-MNIST",
        home="https://github.com/zalandoresearch/fashion-mnist",
        manual="download the four .gz files from {home} and gunzip them in {folder}",
    ),
}


def available_datasets() -> list[str]:
    """The names ``load_dataset`` accepts: ``["digits", "cifar10", "svhn", ...]``."""
    return ["digits", "photos", *TORCHVISION_SOURCES]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding one subfolder per dataset.

    ``root`` if given, else ``$SSLCOURSE_DATA``, else ``~/.cache/sslcourse/data``.
    """
    if root is None:
        root = os.environ.get("SSLCOURSE_DATA") or Path("~", ".cache", "sslcourse", "data")
    return Path(root).expanduser()


def load_dataset(
    name: str,
    split: str = "train",
    *,
    size: int | None = None,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load a dataset as uint8 images (N, C, H, W), int64 labels (N,) and class names.

    Args:
        name: one of :func:`available_datasets`.
        split: ``"train"`` or ``"test"``; also ``"all"`` for digits and photos, ``"extra"``
            for svhn, ``"unlabeled"`` and ``"train+unlabeled"`` for stl10
            (unlabeled images have label -1).
        size: resize to (size, size), bilinear. ``None`` keeps the native size
            (32 for CIFAR-10 and SVHN, 96 for STL-10, 28 for the MNISTs, 64 for
            photos), except for digits, which default to 16 (from 8).
        root: the data folder; each torchvision source lives in ``root/<name>``.
            Defaults to ``$SSLCOURSE_DATA``, else ``~/.cache/sslcourse/data``.
        download: download a torchvision source whose files are missing or
            corrupted. Digits and photos never need a download.

    Returns:
        An :class:`ImageDataset`, on the CPU. C is 1 for digits and the MNISTs,
        3 for the others.

    Raises:
        ValueError: unknown ``name`` or ``split``, or ``size`` not a positive int.
        DatasetNotAvailableError: a torchvision source's files are missing or
            corrupted, and ``download=False`` or the download failed.
    """
    if not isinstance(name, str) or name.lower().replace("-", "_") not in available_datasets():
        raise ValueError(f"unknown dataset {name!r}; expected one of {available_datasets()}")
    name = name.lower().replace("-", "_")
    embedded = {"digits": DIGITS_SPLITS, "photos": PHOTO_SPLITS}
    splits = embedded[name] if name in embedded else tuple(TORCHVISION_SOURCES[name].splits)
    if split not in splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; expected one of {list(splits)}")
    if size is not None and (not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1):
        raise ValueError(f"size must be a positive int (the side of the square images) or None, got {size!r}")

    if name == "digits":
        return _load_digits(split, DIGITS_SIZE if size is None else int(size))
    if name == "photos":
        data = load_photos(split)
    else:
        data = _load_torchvision(name, TORCHVISION_SOURCES[name], split, data_root(root) / name, download)
    if size is not None:
        data.images = _resize(data.images, int(size), antialias=True)
    return data


def _load_digits(split: str, size: int) -> ImageDataset:
    """scikit-learn's digits: uint8 (N, 1, size, size), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).mul(255 / 16).round().to(torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.from_numpy(digits.target).long()
    if split != "all":
        train, test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=digits.target, random_state=0)
        index = torch.from_numpy(np.sort(train if split == "train" else test))
        images, labels = images[index], labels[index]
    images = _resize(images, size, antialias=False)
    return ImageDataset(images, labels, list(_DIGIT_NAMES), "digits", split)


def _load_torchvision(name: str, spec: SourceSpec, split: str, source_dir: Path, download: bool) -> ImageDataset:
    """Construct the torchvision dataset (download only if needed) and convert it."""
    cls = spec.dataset_class()
    kwargs = dict(spec.splits[split])
    try:
        dataset = cls(str(source_dir), download=False, **kwargs)
    except _UNAVAILABLE as err:
        if not download:
            raise DatasetNotAvailableError(_not_available(name, spec, cls, split, source_dir, err, download)) from err
        try:
            dataset = cls(str(source_dir), download=True, **kwargs)
        except _UNAVAILABLE as err2:
            raise DatasetNotAvailableError(_not_available(name, spec, cls, split, source_dir, err2, download)) from err2

    images = torch.as_tensor(np.ascontiguousarray(dataset.data))
    if spec.layout == "NHWC":
        images = images.permute(0, 3, 1, 2)
    elif spec.layout == "NHW":
        images = images.unsqueeze(1)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = dataset.labels
    # reshape: SVHN squeezes its (N, 1) labels, which leaves a 0-d array when N == 1
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
    classes = [str(c) for c in (getattr(dataset, "classes", None) or spec.classes)]
    return ImageDataset(images.contiguous(), labels, classes, name, split)


def _not_available(
    name: str, spec: SourceSpec, cls: type, split: str, source_dir: Path, err: BaseException, download: bool
) -> str:
    """The one message a user without the files gets: which files, where, how to get them."""
    folder = source_dir / spec.folder.format(cls=cls.__name__)
    files = spec.files[split]
    missing = [f for f in files if not (folder / f).is_file()]
    if len(missing) == len(files):
        state = "none of them is there"
    elif missing:
        state = f"missing: {', '.join(missing)}"
    else:
        state = "all present, so at least one is corrupted (it failed torchvision's md5 check) or unreadable"
    if download:
        detail = " ".join(str(err).split())  # MNIST's error spans lines, one per mirror
        why = f"the files are missing or corrupted, and getting them with download=True failed ({type(err).__name__}: {detail})"
    else:
        why = "the files are missing or corrupted, and download=False"
    return (
        f"dataset {name!r} ({spec.title}, split {split!r}) is not available: {why}.\n"
        f"torchvision looks in {folder} for: {', '.join(files)} ({state}).\n"
        f"To get them: run sslcourse.load_dataset({name!r}) once on a machine with internet access "
        f"(download=True, the default) and copy its {source_dir.name!r} folder to {source_dir}; "
        f"or {spec.manual.format(home=spec.home, dir=source_dir, folder=folder)}. "
        f"To use files kept elsewhere, pass root=... or set SSLCOURSE_DATA to the folder that holds {name!r}/."
    )


def _resize(images: torch.Tensor, size: int, *, antialias: bool, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear, in chunks to bound memory."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        batch = images[start : start + chunk].float()
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
        out[start : start + chunk] = batch.round_().clamp_(0, 255).to(torch.uint8)
    return out
