"""How good is a representation? Probes, kNN, fine-tuning, and honest baselines.

A pretrained encoder is only interesting beside two baselines that cost
nothing: the raw pixels, and the same encoder at random initialisation (a
random conv net is a surprisingly good feature extractor). Every result of
the course stands next to both.

- :func:`extract_features` runs an encoder over a dataset: (N, D) features.
- :func:`linear_probe` fits a logistic regression on frozen features.
- :func:`knn_accuracy` classifies by the k nearest (cosine) neighbours.
- :func:`fine_tune` trains encoder and a linear head on a fraction of labels.
- :func:`compare_representations` and :func:`fine_tune_sweep` build the
  tables and curves of label efficiency.
"""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from . import distributed
from .data import DeviceLoader, ImageDataset
from .runtime import get_device

__all__ = [
    "extract_features",
    "pixel_features",
    "random_init_like",
    "stratified_subset",
    "linear_probe",
    "knn_accuracy",
    "compare_representations",
    "fine_tune",
    "fine_tune_sweep",
    "tsne_embedding",
]


def _as_float_images(images: ImageDataset | torch.Tensor) -> torch.Tensor:
    if isinstance(images, ImageDataset):
        images = images.images
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise TypeError(f"expected images (N, C, H, W) as a tensor or ImageDataset; got {type(images).__name__}")
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def extract_features(
    encoder: nn.Module, images: ImageDataset | torch.Tensor, *, batch_size: int = 512, device: str | torch.device | None = None
) -> torch.Tensor:
    """Encode every image with ``encoder`` in eval mode; flatten the outputs.

    ``images``: an ImageDataset, uint8 (N, C, H, W), or float (N, C, H, W) in
    [0, 1]. Returns float32 (N, D) on the CPU. The encoder's train/eval mode
    and device are restored afterwards. Under ``torchrun`` the processes share
    the work and every process returns all the features.
    """
    device = get_device(device)
    x = _as_float_images(images)
    here = distributed.world()
    if here.size > 1:  # under torchrun each process encodes its share of the images; all get every feature
        x = x.tensor_split(here.size)[here.rank]
    was_training = encoder.training
    param = next(encoder.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    encoder.eval().to(device)
    try:
        with torch.no_grad():
            out = [encoder(x[i : i + batch_size].to(device)).flatten(1).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        encoder.train(was_training).to(home)
    feats = torch.cat(out) if out else torch.empty(0)
    if here.size > 1:
        shares: list = [None] * here.size
        torch.distributed.all_gather_object(shares, feats)
        feats = torch.cat([f for f in shares if f.numel()])
    if not torch.isfinite(feats).all():
        raise FloatingPointError("extract_features: the encoder produced NaN or infinite features")
    return feats


def pixel_features(images: ImageDataset | torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline: each image flattened, float32 (N, C*H*W) in [0, 1]."""
    return _as_float_images(images).flatten(1)


def random_init_like(encoder: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``encoder`` with every layer re-initialised: the random-init baseline."""
    fresh = copy.deepcopy(encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    return fresh


@torch.no_grad()
def recalibrate_batch_norm(
    encoder: nn.Module, images: ImageDataset | torch.Tensor, *, batch_size: int = 256, device: str | torch.device | None = None
) -> nn.Module:
    """A copy of ``encoder`` whose batch-norm running statistics are re-estimated on ``images``.

    Nothing else changes: no parameter is trained. A freshly initialised
    network's batch norms hold mean 0 and variance 1, so in eval mode they do
    not normalise at all, while a network trained for even a few steps has
    statistics of real images. Probing ``recalibrate_batch_norm(random_init_like(e), train)``
    separates what training taught from what the statistics alone give.
    Each batch-norm layer gets the plain average over all batches (momentum None).
    Raises ValueError if ``encoder`` has no batch-norm layer.
    """
    fresh = copy.deepcopy(encoder)
    norms = [m for m in fresh.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError(f"recalibrate_batch_norm: {type(encoder).__name__} has no batch-norm layer")
    device = get_device(device)
    x = _as_float_images(images)
    param = next(fresh.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    fresh.train().to(device)
    for i in range(0, len(x), batch_size):
        fresh(x[i : i + batch_size].to(device))
    return fresh.eval().to(home)


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Indices of about ``fraction`` of the samples, the same fraction of every
    class and at least one per class. (N,) labels -> (M,) int64 indices, sorted."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = torch.as_tensor(labels).cpu()
    if fraction == 1:
        return torch.arange(len(labels))
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        k = max(1, int(round(fraction * len(members))))
        chosen.append(members[torch.randperm(len(members), generator=gen)[:k]])
    return torch.cat(chosen).sort().values


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    C: float = 1.0,
    max_iter: int = 2000,
) -> float:
    """Test accuracy of a logistic regression fitted on frozen, standardised features.

    Features (N, D) float, labels (N,) int. Returns a float in [0, 1].
    """
    scaler = StandardScaler().fit(_numpy(train_features))
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(scaler.transform(_numpy(train_features)), _numpy(train_labels))
    return float(clf.score(scaler.transform(_numpy(test_features)), _numpy(test_labels)))


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 20,
) -> float:
    """Test accuracy of a distance-weighted k-nearest-neighbour vote under cosine similarity."""
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_labels)), metric="cosine", weights="distance")
    knn.fit(_numpy(train_features), _numpy(train_labels))
    return float(knn.score(_numpy(test_features), _numpy(test_labels)))


PROBES = {"linear": linear_probe, "knn": knn_accuracy}


def compare_representations(
    encoders: Mapping[str, nn.Module | None],
    train: ImageDataset,
    test: ImageDataset,
    *,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    probes: Sequence[str] = ("linear", "knn"),
    repeats: int = 3,
    device: str | torch.device | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Probe each representation at each label fraction.

    ``encoders`` maps a row name to an encoder, or to None for raw pixels. For
    fractions below 1 the accuracy is the mean over ``repeats`` random labelled
    subsets (small fractions are noisy). Returns
    ``{row: {probe: {str(fraction): accuracy}}}``, e.g.
    ``rows["dae"]["linear"]["0.1"]``.
    """
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probes {sorted(unknown)}; expected some of {sorted(PROBES)}")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for name, encoder in encoders.items():
        if encoder is None:
            f_train, f_test = pixel_features(train), pixel_features(test)
        else:
            f_train, f_test = extract_features(encoder, train, device=device), extract_features(encoder, test, device=device)
        rows[name] = {}
        for probe in probes:
            rows[name][probe] = {}
            for fraction in fractions:
                seeds = range(repeats) if fraction < 1 else range(1)
                accs = []
                for seed in seeds:
                    idx = stratified_subset(train.labels, fraction, seed=seed)
                    accs.append(PROBES[probe](f_train[idx], train.labels[idx], f_test, test.labels))
                rows[name][probe][str(float(fraction))] = float(np.mean(accs))
    return rows


class _Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).flatten(1))


def fine_tune(
    encoder: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    *,
    fraction: float = 1.0,
    epochs: int = 30,
    min_steps: int = 0,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    augment=None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> float:
    """Train a copy of ``encoder`` with a linear head on ``fraction`` of the labels; return test accuracy.

    The encoder passed in is not changed. ``augment`` (optional) maps a float
    batch (B, C, H, W) to an augmented one. Every run makes ``epochs`` passes
    over its labelled subset, and more if that is fewer than ``min_steps``
    optimizer steps: without a floor, a 1% subset gets a handful of steps and
    a network trained from scratch barely leaves chance.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not isinstance(min_steps, int) or min_steps < 0:
        raise ValueError(f"min_steps must be an int >= 0, got {min_steps!r}")
    device = get_device(device)
    idx = stratified_subset(train.labels, fraction, seed=seed)
    subset = train.subset(idx)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = copy.deepcopy(encoder).to(device)
        with torch.no_grad():
            dim = net.eval()(subset.images[:2].float().div(255).to(device)).flatten(1).shape[1]
        model = _Classifier(net, dim, test.num_classes).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        loader = DeviceLoader(subset, min(batch_size, len(subset)), device=device, seed=seed, drop_last=len(subset) > batch_size)
        for epoch in range(max(epochs, -(-min_steps // len(loader)))):
            for x, y in loader.batches(epoch):
                if augment is not None:
                    x = augment(x)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(test), 512):
                x = test.images[i : i + 512].float().div(255).to(device)
                correct += (model(x).argmax(1).cpu() == test.labels[i : i + 512]).sum().item()
    return correct / len(test)


def fine_tune_sweep(
    encoders: Mapping[str, nn.Module],
    train: ImageDataset,
    test: ImageDataset,
    *,
    fractions: Sequence[float] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
    **fine_tune_kwargs,
) -> dict[str, dict[str, float]]:
    """:func:`fine_tune` every encoder at every label fraction: ``{name: {str(fraction): accuracy}}``.

    Pass the pretrained encoder and :func:`random_init_like` of it to get the
    label-efficiency curves of pretraining against training from scratch.
    """
    return {
        name: {str(float(f)): fine_tune(enc, train, test, fraction=f, **fine_tune_kwargs) for f in fractions}
        for name, enc in encoders.items()
    }


def tsne_embedding(features: torch.Tensor, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """A 2-D t-SNE map of (N, D) features (scikit-learn), for plotting: (N, 2)."""
    return TSNE(n_components=2, perplexity=min(perplexity, (len(features) - 1) / 3), random_state=seed, init="pca").fit_transform(
        _numpy(features)
    )
