"""Tests for sslcourse.data.sources: digits, the torchvision sources on tiny files, offline errors.

The torchvision sources are tested on small files written here in each dataset's
real on-disk format (CIFAR-10 pickled batches, SVHN .mat, STL-10 binaries,
MNIST idx). CIFAR-10, SVHN and STL-10 check md5 sums: a subclass of the real
torchvision class carries the md5 sums of the files written here, so
torchvision's own checking and reading code runs. Nothing touches the network:
an autouse fixture makes every URL open fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets

from sslcourse.data import sources
from sslcourse.data.sources import DatasetNotAvailableError, available_datasets, load_dataset

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may reach the network: every URL open fails as it would offline."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("offline (tests never touch the network)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.delenv("SSLCOURSE_DATA", raising=False)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def register(monkeypatch, name: str, dataset_class: type) -> None:
    """Make load_dataset(name) use dataset_class (a subclass with our md5 sums)."""
    spec = dataclasses.replace(sources.TORCHVISION_SOURCES[name], dataset=dataset_class)
    monkeypatch.setitem(sources.TORCHVISION_SOURCES, name, spec)


# --------------------------------------------------------------------------- digits


def test_available_datasets():
    assert available_datasets() == ["digits", "photos", "cifar10", "svhn", "stl10", "mnist", "fashion_mnist"]


def test_digits_shapes_dtypes_and_classes():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    for data, split in ((train, "train"), (test, "test")):
        assert data.images.shape[1:] == (1, 16, 16)
        assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
        assert 0 <= int(data.labels.min()) and int(data.labels.max()) <= 9
        assert data.classes == [str(d) for d in range(10)]
        assert (data.name, data.split) == ("digits", split)
    assert int(train.images.min()) == 0 and int(train.images.max()) == 255


def test_digits_splits_disjoint_stratified_deterministic():
    train, test, everything = (load_dataset("digits", s) for s in ("train", "test", "all"))
    assert len(everything) == 1797 == len(train) + len(test)
    # The 1,797 digits are pairwise distinct images, so compare (image, label) rows.
    def rows(data):
        return {(img.numpy().tobytes(), int(y)) for img, y in zip(data.images, data.labels)}

    assert len(rows(everything)) == 1797
    assert rows(train).isdisjoint(rows(test)) and rows(train) | rows(test) == rows(everything)
    # Stratified: every class in test, with about a fifth of its images.
    test_counts = torch.bincount(test.labels, minlength=10)
    all_counts = torch.bincount(everything.labels, minlength=10)
    assert (test_counts > 0).all()
    assert ((test_counts.float() / all_counts.float() - 0.2).abs() < 0.02).all()
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)


def test_digits_size_and_scaling():
    native = load_dataset("digits", "all", size=8)
    from sklearn.datasets import load_digits

    raw = load_digits()
    expected = np.rint(raw.images * 255 / 16).astype(np.uint8)[:, None]
    assert np.array_equal(native.images.numpy(), expected)
    assert torch.equal(native.labels, torch.from_numpy(raw.target).long())
    big = load_dataset("digits", "test", size=32)
    assert big.images.shape == (360, 1, 32, 32) and big.images.dtype == torch.uint8
    # A constant 8x8 image stays constant when upscaled (bilinear, no ringing).
    assert torch.equal(sources._resize(torch.full((1, 1, 8, 8), 77, dtype=torch.uint8), 16, antialias=False),
                       torch.full((1, 1, 16, 16), 77, dtype=torch.uint8))


# --------------------------------------------------------------------------- CIFAR-10

CIFAR_BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


def write_cifar10(source_dir: Path, per_batch: int = 2) -> dict[str, np.ndarray]:
    """Pickled batches as in cifar-10-python.tar.gz: {"data": (N, 3072) uint8, "labels": [...]}.

    Each row of "data" is the R, G and B planes, each 32 rows of 32 pixels.

    The real files are Python 2 pickles whose keys load as str with
    encoding="latin1" (what torchvision uses), so the keys here are str too.
    Returns each batch's images as (N, 3, 32, 32).
    """
    folder = source_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for b, fname in enumerate(CIFAR_BATCHES):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        if b == 0:
            data[0, 1 * 1024 + 3 * 32 + 7] = 201  # a known pixel: image 0, green, row 3, column 7
        labels = [(b * per_batch + i) % 10 for i in range(per_batch)]
        names = [f"{fname}_{i}.png" for i in range(per_batch)]
        entry = {"batch_label": fname, "labels": labels, "data": data, "filenames": names}
        (folder / fname).write_bytes(pickle.dumps(entry, protocol=2))
        written[fname] = data.reshape(-1, 3, 32, 32)
    meta = {"num_cases_per_batch": per_batch, "label_names": CIFAR_NAMES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def cifar10_with_our_md5s(source_dir: Path) -> type:
    folder = source_dir / "cifar-10-batches-py"
    sums = {f: md5(folder / f) for f in [*CIFAR_BATCHES, "batches.meta"]}
    return type("TinyCIFAR10", (torchvision.datasets.CIFAR10,), {
        "train_list": [[f, sums[f]] for f in CIFAR_BATCHES[:5]],
        "test_list": [["test_batch", sums["test_batch"]]],
        "meta": {"filename": "batches.meta", "key": "label_names", "md5": sums["batches.meta"]},
    })


def test_cifar10_reads_real_format(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path / "cifar10")
    register(monkeypatch, "cifar10", cifar10_with_our_md5s(tmp_path / "cifar10"))

    train = load_dataset("cifar10", "train", root=tmp_path, download=False)
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
    assert int(train.images[0, 1, 3, 7]) == 201
    expected = np.concatenate([written[f] for f in CIFAR_BATCHES[:5]])
    assert np.array_equal(train.images.numpy(), expected)
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == [i % 10 for i in range(10)]
    assert train.classes == CIFAR_NAMES and (train.name, train.split) == ("cifar10", "train")

    test = load_dataset("cifar10", "test", root=tmp_path, download=False)
    assert np.array_equal(test.images.numpy(), written["test_batch"])
    assert test.labels.tolist() == [10 % 10, 11 % 10]

    small = load_dataset("cifar10", "test", size=16, root=tmp_path, download=False)
    assert small.images.shape == (2, 3, 16, 16) and small.images.dtype == torch.uint8


def test_cifar10_corrupted_file_fails_the_real_md5_check(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "cifar10")
    register(monkeypatch, "cifar10", cifar10_with_our_md5s(tmp_path / "cifar10"))
    batch = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    raw = bytearray(batch.read_bytes())
    raw[-20] ^= 0xFF  # one byte of pixel data changed after the md5 was taken
    batch.write_bytes(bytes(raw))
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset("cifar10", "train", root=tmp_path, download=False)
    message = str(info.value)
    assert "corrupted" in message and "md5" in message and "download=False" in message
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_unpatched_cifar10_rejects_files_with_other_checksums(tmp_path):
    """The real class with the real md5 sums: our tiny files are not CIFAR-10."""
    write_cifar10(tmp_path / "cifar10")
    with pytest.raises(DatasetNotAvailableError, match="all present"):
        load_dataset("cifar10", root=tmp_path, download=False)


# --------------------------------------------------------------------------- SVHN


def test_svhn_reads_real_format_and_maps_label_10_to_0(tmp_path, monkeypatch):
    folder = tmp_path / "svhn"
    folder.mkdir()
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(32, 32, 3, 3), dtype=np.uint8)  # (H, W, C, N), as in train_32x32.mat
    X[4, 9, 2, 0] = 222  # image 0, row 4, column 9, blue
    X[4, 9, 2, 1] = 11
    y = np.array([[10], [3], [7]], dtype=np.uint8)  # SVHN labels digit 0 as 10
    scipy.io.savemat(folder / "train_32x32.mat", {"X": X, "y": y})
    scipy.io.savemat(folder / "test_32x32.mat", {"X": X[..., :1], "y": y[:1]})
    split_list = {s: [url, f, md5(folder / f) if (folder / f).exists() else md5_]
                  for s, (url, f, md5_) in torchvision.datasets.SVHN.split_list.items()}
    register(monkeypatch, "svhn", type("TinySVHN", (torchvision.datasets.SVHN,), {"split_list": split_list}))

    train = load_dataset("svhn", "train", root=tmp_path, download=False)
    assert train.images.shape == (3, 3, 32, 32) and train.images.dtype == torch.uint8
    assert int(train.images[0, 2, 4, 9]) == 222 and int(train.images[1, 2, 4, 9]) == 11
    assert np.array_equal(train.images.numpy(), X.transpose(3, 2, 0, 1))
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == [0, 3, 7]
    assert train.classes == [str(d) for d in range(10)]
    test = load_dataset("svhn", "test", root=tmp_path, download=False)
    assert test.images.shape == (1, 3, 32, 32) and test.labels.tolist() == [0]

    with pytest.raises(DatasetNotAvailableError) as info:  # no extra_32x32.mat written
        load_dataset("svhn", "extra", root=tmp_path, download=False)
    assert "extra_32x32.mat" in str(info.value) and str(folder) in str(info.value)


# --------------------------------------------------------------------------- STL-10

STL_FILES = ["train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin"]


def write_stl10_images(path: Path, images: np.ndarray) -> None:
    """stl10_binary/*_X.bin: uint8, per image 3 planes, each stored column-major (x outer, y inner)."""
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def test_stl10_reads_real_format_with_orientation(tmp_path, monkeypatch):
    folder = tmp_path / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    train = np.zeros((3, 3, 96, 96), dtype=np.uint8)  # (N, C, H, W)
    train[0, 1, 5, 70] = 200  # image 0, green, row 5, column 70; its transpose (70, 5) stays 0
    train[2, 0, 95, 0] = 123  # image 2, red, bottom-left corner
    test = np.full((2, 3, 96, 96), 9, dtype=np.uint8)
    unlabeled = np.full((2, 3, 96, 96), 50, dtype=np.uint8)
    write_stl10_images(folder / "train_X.bin", train)
    write_stl10_images(folder / "test_X.bin", test)
    write_stl10_images(folder / "unlabeled_X.bin", unlabeled)
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 4]))  # 1-based
    (folder / "test_y.bin").write_bytes(bytes([2, 3]))
    (folder / "class_names.txt").write_text("\n".join(STL_NAMES) + "\n")
    sums = {f: md5(folder / f) for f in STL_FILES}
    register(monkeypatch, "stl10", type("TinySTL10", (torchvision.datasets.STL10,), {
        "train_list": [[f, sums[f]] for f in STL_FILES[:3]],
        "test_list": [[f, sums[f]] for f in STL_FILES[3:]],
    }))

    data = load_dataset("stl10", "train", root=tmp_path, download=False)
    assert data.images.shape == (3, 3, 96, 96) and data.images.dtype == torch.uint8
    assert int(data.images[0, 1, 5, 70]) == 200 and int(data.images[0, 1, 70, 5]) == 0
    assert int(data.images[2, 0, 95, 0]) == 123
    assert np.array_equal(data.images.numpy(), train)
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [0, 9, 3]
    assert data.classes == STL_NAMES

    test_data = load_dataset("stl10", "test", root=tmp_path, download=False)
    assert test_data.labels.tolist() == [1, 2] and (test_data.images == 9).all()
    unl = load_dataset("stl10", "unlabeled", root=tmp_path, download=False)
    assert unl.labels.dtype == torch.int64 and unl.labels.tolist() == [-1, -1] and (unl.images == 50).all()
    both = load_dataset("stl10", "train+unlabeled", size=32, root=tmp_path, download=False)
    assert both.images.shape == (5, 3, 32, 32) and both.labels.tolist() == [0, 9, 3, -1, -1]

    (folder / "class_names.txt").unlink()  # optional in torchvision: the names fall back to STL-10's
    assert load_dataset("stl10", "test", root=tmp_path, download=False).classes == STL_NAMES


# --------------------------------------------------------------------------- MNIST, Fashion-MNIST


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Uncompressed idx files: big-endian magic 2051 (images, 3 dims) and 2049 (labels, 1 dim)."""
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder, first_class", [
    ("mnist", "MNIST", "0 - zero"),
    ("fashion_mnist", "FashionMNIST", "T-shirt/top"),
])
def test_mnist_like_reads_idx_files(tmp_path, name, folder, first_class):
    raw = tmp_path / name / folder / "raw"  # torchvision: <root>/<ClassName>/raw
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    train[1, 2, 20] = 173  # image 1, row 2, column 20
    test = rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    write_idx(raw, "train", train, np.array([5, 0, 9, 1]))
    write_idx(raw, "t10k", test, np.array([7, 2]))

    data = load_dataset(name, "train", root=tmp_path, download=False)
    assert data.images.shape == (4, 1, 28, 28) and data.images.dtype == torch.uint8
    assert int(data.images[1, 0, 2, 20]) == 173
    assert np.array_equal(data.images[:, 0].numpy(), train)
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [5, 0, 9, 1]
    assert len(data.classes) == 10 and data.classes[0] == first_class
    test_data = load_dataset(name, "test", size=14, root=tmp_path, download=False)
    assert test_data.images.shape == (2, 1, 14, 14) and test_data.labels.tolist() == [7, 2]


# --------------------------------------------------------------------------- offline, missing files


def test_missing_files_offline_message(tmp_path):
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset("cifar10", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in message
    for fname in ["data_batch_1", "data_batch_5", "test_batch", "batches.meta", "cifar-10-python.tar.gz"]:
        assert fname in message
    assert "download=False" in message and "SSLCOURSE_DATA" in message and "cs.toronto.edu" in message
    assert isinstance(info.value.__cause__, RuntimeError)  # torchvision's own "Dataset not found or corrupted"


def test_download_failure_gives_the_same_clear_error(tmp_path, monkeypatch):
    calls = []

    def no_network(url, download_root, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset("cifar10", root=tmp_path, download=True)
    message = str(info.value)
    assert calls == [torchvision.datasets.CIFAR10.url]
    assert "URLError" in message and "offline" in message
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in message and "data_batch_1" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_download_is_tried_only_when_files_are_missing(tmp_path, monkeypatch):
    """download=True fetches missing files (here a fake download writes them), then loads them."""
    write_cifar10(tmp_path / "prepared" / "cifar10")  # deterministic: the fake download writes the same bytes
    register(monkeypatch, "cifar10", cifar10_with_our_md5s(tmp_path / "prepared" / "cifar10"))
    calls = []

    def fake_download(url, download_root, *args, **kwargs):
        calls.append(download_root)
        write_cifar10(Path(download_root))

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fake_download)
    data = load_dataset("cifar10", "test", root=tmp_path / "data", download=True)
    assert calls == [str(tmp_path / "data" / "cifar10")] and data.images.shape == (2, 3, 32, 32)
    load_dataset("cifar10", "test", root=tmp_path / "data", download=True)  # files present: no second download
    assert len(calls) == 1


@pytest.mark.parametrize("name, expected_file", [
    ("svhn", "train_32x32.mat"),
    ("stl10", "train_X.bin"),
    ("mnist", "train-images-idx3-ubyte"),
    ("fashion_mnist", "t10k-labels-idx1-ubyte"),
])
def test_every_torchvision_source_fails_clearly_offline(tmp_path, name, expected_file):
    """download=True with no network (urlopen refuses, see the fixture)."""
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset(name, root=tmp_path, download=True)
    message = str(info.value)
    assert expected_file in message and str(tmp_path / name) in message and "download=True failed" in message
    assert info.value.__cause__ is not None


def test_root_from_environment_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLCOURSE_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset("svhn", download=False)
    assert str(tmp_path / "env" / "svhn") in str(info.value)
    monkeypatch.delenv("SSLCOURSE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sources.data_root() == tmp_path / "home" / ".cache" / "sslcourse" / "data"
    assert sources.data_root(tmp_path / "x") == tmp_path / "x"


# --------------------------------------------------------------------------- bad input


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*digits.*cifar10"):
        load_dataset("imagenet")


@pytest.mark.parametrize("name, split", [("digits", "valid"), ("cifar10", "extra"), ("stl10", "val")])
def test_unknown_split_lists_the_sources_splits(name, split):
    with pytest.raises(ValueError) as info:
        load_dataset(name, split)
    message = str(info.value)
    assert repr(split) in message and "'train'" in message and "'test'" in message


@pytest.mark.parametrize("size", [0, -4, 2.5, "16", True])
def test_bad_size(size):
    with pytest.raises(ValueError) as info:
        load_dataset("digits", size=size)
    assert "size must be a positive int" in str(info.value) and repr(size) in str(info.value)
