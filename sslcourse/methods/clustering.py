"""Clustering: learn features by predicting the cluster of each image.

DeepCluster (Caron et al. 2018, "Deep Clustering for Unsupervised Learning of
Visual Features") alternates two steps. Every epoch it encodes the whole
training set, clusters the features with k-means, and uses the cluster
indices as pseudo-labels; between clusterings it trains the encoder and a
linear classifier to predict them. Better features make better clusters, and
better clusters teach better features. Three details keep this from
collapsing into a trivial solution: empty clusters are refilled by splitting
a populated one, the classifier samples clusters uniformly (not images), and
the classifier is re-initialised after each clustering, since cluster 7 of
one epoch has nothing to do with cluster 7 of the next.

- :func:`preprocess_features`: PCA, whitening and L2 normalisation before k-means.
- :func:`fix_empty_clusters`: the paper's recipe for empty clusters.
- :func:`cluster_features`: all of the above plus scikit-learn's k-means.
- :func:`balanced_cluster_sampler_indices`: uniform over clusters, then within one.
- :class:`DeepCluster`: the method, for :func:`sslcourse.fit`; it clusters in
  its epoch hook, :meth:`DeepCluster.on_epoch_start`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score
from threadpoolctl import threadpool_limits

from .. import augment as aug
from ..data import ImageDataset
from .base import SSLMethod, check_number

__all__ = [
    "preprocess_features",
    "fix_empty_clusters",
    "cluster_features",
    "balanced_cluster_sampler_indices",
    "deepcluster_augment",
    "DeepCluster",
]


def _rand(shape, device: torch.device, generator: torch.Generator | None, normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) float32 numbers of ``shape`` on ``device``."""
    draw = torch.randn if normal else torch.rand
    if generator is None or generator.device == device:
        return draw(shape, device=device, generator=generator)
    return draw(shape, device=generator.device, generator=generator).to(device)


def _check_assignments(assignments: torch.Tensor, name: str) -> None:
    if not isinstance(assignments, torch.Tensor) or assignments.dim() != 1 or assignments.dtype != torch.int64:
        got = f"{assignments.dtype} {tuple(assignments.shape)}" if isinstance(assignments, torch.Tensor) else type(assignments).__name__
        raise TypeError(f"{name}: assignments must be an int64 tensor (N,); got {got}")
    if len(assignments) and int(assignments.min()) < 0:
        raise ValueError(f"{name}: assignments must be cluster indices >= 0; got {int(assignments.min())}")


# ------------------------------------------------------------ clustering math
def preprocess_features(features: torch.Tensor, pca_dim: int | None = 32, *, seed: int = 0) -> torch.Tensor:
    """PCA to ``pca_dim`` dimensions with whitening, then L2 normalisation of each row.

    Caron et al. (2018) reduce the 4096-D features to 256 dimensions with
    PCA, whiten them (each principal component scaled to unit variance) and
    L2-normalise them before k-means. We keep all three steps; ``pca_dim``
    is capped by the feature dimension and the number of samples, and
    ``None`` skips the PCA and whitening.

    Args:
        features: (N, D) float.
    Returns:
        (N, d) float32 on the CPU, unit rows, d = min(pca_dim, D, N).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"preprocess_features expects features (N, D); got {got}")
    x = features.detach().float().cpu().numpy()
    if pca_dim is not None:
        d = min(int(pca_dim), x.shape[1], x.shape[0])
        x = PCA(n_components=d, whiten=True, random_state=seed).fit_transform(x)
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return F.normalize(x, dim=1)


def fix_empty_clusters(
    features: torch.Tensor,
    centroids: torch.Tensor,
    assignments: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Refill every empty cluster by splitting a populated one (Caron et al. 2018, section 3.3).

    For each empty cluster k, in order: pick a cluster j with at least two
    members (at random, with probability proportional to its size), give k
    the centroid of j plus a small random perturbation and j the centroid
    minus it, and reassign the members of j to whichever of the two
    centroids is closer. If the split still leaves one side empty (the
    members of j are all equally far from both, e.g. identical points), the
    member nearest the empty side moves there. The two centroids are then
    set to the means of their members. Other clusters are not touched.

    Guarantee: when N >= K no cluster is empty on return (a cluster with two
    or more members always exists while one is empty). When N < K some must
    stay empty; those are left as they are.

    Args:
        features: (N, D) float, the points that were clustered.
        centroids: (K, D) float.
        assignments: (N,) int64 cluster indices in [0, K).
        generator: makes the choices and perturbations reproducible.
        eps: the size of the perturbation, relative to the centroid's norm
            (or absolute, for a zero centroid).
    Returns:
        (centroids (K, D), assignments (N,)): new tensors; the inputs are unchanged.
    """
    _check_assignments(assignments, "fix_empty_clusters")
    if features.dim() != 2 or centroids.dim() != 2 or features.shape[1] != centroids.shape[1]:
        raise ValueError(
            f"fix_empty_clusters expects features (N, D) and centroids (K, D); got {tuple(features.shape)} and {tuple(centroids.shape)}"
        )
    if len(assignments) != len(features):
        raise ValueError(f"fix_empty_clusters: {len(features)} features but {len(assignments)} assignments")
    k = len(centroids)
    if len(assignments) and int(assignments.max()) >= k:
        raise ValueError(f"fix_empty_clusters: assignment {int(assignments.max())} out of range for {k} centroids")
    device = features.device
    features = features.float()
    centroids = centroids.detach().float().clone()
    assignments = assignments.clone()
    counts = torch.bincount(assignments, minlength=k)
    for empty in (counts == 0).nonzero().flatten().tolist():
        splittable = counts >= 2
        if not bool(splittable.any()):
            break  # N < K: nothing left to split
        # j with probability proportional to its size, among the clusters with two or more members
        cumulative = torch.where(splittable, counts, torch.zeros_like(counts)).cumsum(0).float()
        u = _rand((1,), device, generator) * cumulative[-1]
        j = int(torch.searchsorted(cumulative, u, right=True).clamp_max(k - 1))
        members = (assignments == j).nonzero().flatten()
        scale = float(centroids[j].norm()) or 1.0
        noise = eps * scale * _rand((centroids.shape[1],), device, generator, normal=True)
        new_j, new_k = centroids[j] - noise, centroids[j] + noise
        points = features[members]
        d_j = (points - new_j).pow(2).sum(1)
        d_k = (points - new_k).pow(2).sum(1)
        to_k = d_k < d_j
        if bool(to_k.all()):
            to_k[torch.argmax(d_k - d_j)] = False  # the member that least prefers k goes back to j
        elif not bool(to_k.any()):
            to_k[torch.argmax(d_j - d_k)] = True  # the member that least prefers j goes to k
        assignments[members[to_k]] = empty
        centroids[j] = points[~to_k].mean(0)
        centroids[empty] = points[to_k].mean(0)
        counts[empty] = int(to_k.sum())
        counts[j] -= counts[empty]
    return centroids, assignments


def cluster_features(
    features: torch.Tensor,
    num_clusters: int,
    *,
    pca_dim: int | None = 32,
    max_iter: int = 100,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means on preprocessed features, with no empty cluster.

    :func:`preprocess_features` (PCA, whitening, L2 normalisation), then
    scikit-learn's ``KMeans`` (k-means++ start, one run, ``max_iter``
    Lloyd iterations), then :func:`fix_empty_clusters`.

    Args:
        features: (N, D) float, N >= ``num_clusters``.
    Returns:
        (assignments (N,) int64, centroids (K, d) float32 in the preprocessed space), on the CPU.
    """
    if not isinstance(num_clusters, int) or num_clusters < 1:
        raise ValueError(f"cluster_features: num_clusters must be a positive int, got {num_clusters!r}")
    if len(features) < num_clusters:
        raise ValueError(f"cluster_features: {len(features)} samples cannot fill {num_clusters} clusters; need N >= K")
    x = preprocess_features(features, pca_dim, seed=seed)
    km = KMeans(n_clusters=num_clusters, n_init=1, max_iter=max_iter, random_state=seed).fit(x.numpy())
    centroids = torch.from_numpy(km.cluster_centers_.astype(np.float32))
    assignments = torch.from_numpy(km.labels_.astype(np.int64))
    centroids, assignments = fix_empty_clusters(x, centroids, assignments, generator=generator)
    return assignments, centroids


def balanced_cluster_sampler_indices(
    assignments: torch.Tensor, num_samples: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw sample indices uniformly over clusters, then uniformly within the chosen cluster.

    Caron et al. (2018) sample images from a uniform distribution over the
    clusters (equivalently, weight each image by the inverse size of its
    cluster), so that a few huge clusters cannot dominate the classifier and
    make "everything is one cluster" a good solution. Empty clusters are never
    chosen. Draws are independent (with replacement) and happen on the
    assignments' device.

    Args:
        assignments: (N,) int64 cluster index of every sample.
        num_samples: how many indices to draw.
    Returns:
        (num_samples,) int64 indices into ``assignments``.
    """
    _check_assignments(assignments, "balanced_cluster_sampler_indices")
    if not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"balanced_cluster_sampler_indices: num_samples must be an int >= 0, got {num_samples!r}")
    if len(assignments) == 0:
        raise ValueError("balanced_cluster_sampler_indices: no samples to draw from (assignments is empty)")
    device = assignments.device
    order = torch.argsort(assignments, stable=True)  # sample indices grouped by cluster
    counts = torch.bincount(assignments)
    starts = torch.cumsum(counts, 0) - counts  # where each cluster's group begins in ``order``
    clusters = (counts > 0).nonzero().flatten()
    u = _rand((2, num_samples), device, generator)
    chosen = clusters[(u[0] * len(clusters)).long().clamp_max(len(clusters) - 1)]
    within = (u[1] * counts[chosen]).long().clamp_max(counts[chosen] - 1)
    return order[starts[chosen] + within]


def deepcluster_augment(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The default augmentation: a random resized crop of 40-100% of the area (no flip,
    which would change what a digit is). (B, C, H, W) -> (B, C, H, W)."""
    return aug.random_resized_crop(x, scale=(0.4, 1.0), generator=generator)


# -------------------------------------------------------------------- method
class DeepCluster(SSLMethod):
    """DeepCluster (Caron et al. 2018): k-means pseudo-labels, a classifier, repeat.

    How it fits :func:`sslcourse.fit`: k-means needs the features of the whole
    training set, which a batch does not give. So the method is built with the
    training images and keeps them (a non-persistent buffer: it moves to the
    training device with the method and stays out of checkpoints). Before each
    epoch ``fit`` calls :meth:`on_epoch_start`, which clusters
    (:meth:`recluster`): it encodes every stored image (encoder in eval mode,
    no gradients), runs :func:`cluster_features` (PCA to ``pca_dim`` with
    whitening, L2 normalisation, k-means with ``num_clusters`` clusters, empty
    clusters split), stores the cluster indices as pseudo-labels, logs the NMI
    with the previous clustering and re-initialises the classifier head. It
    returns the head's parameters, so that ``fit`` also drops their optimizer
    state (Adam's moment estimates were built for the old classifier). Each
    step then ignores the loader's images and labels (only their number and
    device matter) and draws its own batch of the same size from the stored
    images, balanced over clusters (:func:`balanced_cluster_sampler_indices`),
    augments it, and minimises the cross-entropy of ``head(encoder(x))``
    against the pseudo-labels. Pass :func:`sslcourse.fit` the same data: it
    sets the batch size, the device and the epochs.

    When it clusters: before the first epoch, then before every epoch that
    starts at least ``min_recluster_steps`` applied steps after the last
    clustering. ``min_recluster_steps=1`` clusters before every epoch, as the
    paper does. The default, 50, is for small data sets: after each
    clustering the classifier starts from scratch and needs some tens of
    steps to learn the new pseudo-labels before its gradients say anything
    useful about the features. An ImageNet epoch is thousands of steps; a
    digits epoch at batch 128 is 11, so on digits the method clusters every
    5th epoch (every 55 steps). Measured on digits (50 s on one CPU thread,
    linear probe at 10% labels on the encoder output), with step-based
    clustering: every 11 steps left the classifier at chance and the features
    below random init (85% against 86%), every 50 steps gave 95-97%.

    The pseudo-labels (``assignments``), the applied steps (``step``), the
    number of clusterings, the step of the last one and the last NMI are
    buffers, so a checkpoint resumes with them, also in the middle of an epoch.

    What we keep from the paper: PCA + whitening + L2 normalisation, k-means
    every epoch, the empty-cluster fix, uniform sampling over clusters, the
    head re-initialised after each clustering, and data augmentation (random
    resized crops). What we leave out: the Sobel filter on the input (for
    color images; digits are gray) and the MLP between encoder and classifier
    (the head is one linear layer on the flattened encoder output).

    Args:
        images: the training images: an ImageDataset or uint8 (N, C, H, W).
        encoder: defaults to :class:`~sslcourse.nets.ConvEncoder` with ``widths``.
        widths: encoder widths when built here.
        num_clusters: K. The paper uses 10x the number of classes (10,000 on
            ImageNet); on digits (10 classes, 1,437 training images) 30
            did as well as 100 and better than 10.
        pca_dim: dimensions kept by the PCA (None: no PCA, no whitening).
        min_recluster_steps: the fewest applied steps between two clusterings.
        augment: ``x -> x'`` on float batches, or None; default
            :func:`deepcluster_augment`.
        kmeans_iter: Lloyd iterations per clustering.
        seed: seeds k-means (with the clustering count) for reproducibility.

    ``training_step`` returns ``{"loss", "acc", "nmi_prev"}``: the cross-entropy,
    the accuracy on the pseudo-labels of the batch, and the NMI between the
    last two clusterings (NaN until there have been two; every step logs the
    latest value, so the metric stays aligned with the steps).
    """

    def __init__(
        self,
        images: ImageDataset | torch.Tensor,
        encoder: nn.Module | None = None,
        *,
        widths: tuple[int, int] = (32, 64),
        num_clusters: int = 30,
        pca_dim: int | None = 32,
        min_recluster_steps: int = 50,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = deepcluster_augment,
        kmeans_iter: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        data = images.images if isinstance(images, ImageDataset) else images
        if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.dim() != 4:
            got = f"{data.dtype} {tuple(data.shape)}" if isinstance(data, torch.Tensor) else type(data).__name__
            raise TypeError(f"DeepCluster needs the training images, an ImageDataset or uint8 (N, C, H, W); got {got}")
        if not isinstance(num_clusters, int) or not 2 <= num_clusters <= len(data):
            raise ValueError(f"num_clusters must be an int in 2..N = {len(data)}, got {num_clusters!r}")
        self.pca_dim = check_number("pca_dim", pca_dim, low=1, integer=True, allow_none=True)
        self.min_recluster_steps = check_number("min_recluster_steps", min_recluster_steps, low=1, integer=True)
        self.kmeans_iter = check_number("kmeans_iter", kmeans_iter, low=1, integer=True)
        self.seed = check_number("seed", seed, low=0, integer=True)
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be a function x -> x' or None, got {type(augment).__name__}")
        self.init_encoder(encoder, in_channels=data.shape[1], widths=widths)
        self.register_buffer("images", data, persistent=False)
        self.num_clusters = num_clusters
        self.augment = augment
        self.head = nn.Linear(self.feature_dim(tuple(data.shape[-2:])), num_clusters)
        # the pseudo-labels, -1 until the first clustering, and the clustering schedule: all in the state dict
        self.register_buffer("assignments", torch.full((len(data),), -1, dtype=torch.int64))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # applied training steps
        self.register_buffer("clusterings", torch.zeros((), dtype=torch.long))  # clusterings done
        self.register_buffer("last_clustered", torch.full((), -1, dtype=torch.long))  # the step of the last one
        self.register_buffer("nmi_prev", torch.full((), float("nan")))  # NMI of the last two clusterings

    def extra_repr(self) -> str:
        return (
            f"{len(self.images)} images, num_clusters={self.num_clusters}, pca_dim={self.pca_dim}, "
            f"min_recluster_steps={self.min_recluster_steps}, clusterings={int(self.clusterings)}"
        )

    @torch.no_grad()
    def features(self, batch_size: int = 512) -> torch.Tensor:
        """The encoder's flattened features of every stored image, in eval mode: (N, D) float32."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            out = [
                self.encoder(self.images[i : i + batch_size].float().div(255)).flatten(1).float()
                for i in range(0, len(self.images), batch_size)
            ]
        finally:
            self.encoder.train(was_training)
        return torch.cat(out)

    @torch.no_grad()
    def recluster(self) -> torch.Tensor:
        """Cluster the stored images' features and make the clusters the new pseudo-labels.

        Re-initialises the head in place and updates ``nmi_prev``. Returns
        the assignments (N,) int64 on the images' device. scikit-learn runs
        with at most ``torch.get_num_threads()`` threads.
        """
        previous = self.assignments.cpu()
        count = int(self.clusterings)
        features = self.features()
        # scikit-learn's BLAS and OpenMP threads follow torch's setting: with torch.set_num_threads(1)
        # on a busy CPU, competing BLAS threads can make PCA and k-means 10-100x slower
        with threadpool_limits(torch.get_num_threads()):
            assignments, _ = cluster_features(
                features,
                self.num_clusters,
                pca_dim=self.pca_dim,
                max_iter=self.kmeans_iter,
                seed=self.seed * 1_000_003 + count,
                generator=torch.Generator().manual_seed(self.seed * 1_000_003 + count),
            )
        if count > 0:
            self.nmi_prev.fill_(normalized_mutual_info_score(previous.numpy(), assignments.numpy()))
        self.assignments.copy_(assignments)
        self.head.reset_parameters()
        self.clusterings += 1
        self.last_clustered.copy_(self.step)
        return self.assignments

    def on_epoch_start(self, epoch: int) -> list[nn.Parameter]:
        """Before each epoch: cluster if there are no pseudo-labels yet or at least
        ``min_recluster_steps`` steps were applied since the last clustering. Returns
        the re-initialised head's parameters (fit drops their optimizer state), or []."""
        if self.clusterings > 0 and self.step - self.last_clustered < self.min_recluster_steps:
            return []
        self.recluster()
        return list(self.head.parameters())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.clusterings == 0:
            raise RuntimeError(
                "DeepCluster has no pseudo-labels yet: sslcourse.fit clusters in on_epoch_start before every epoch; "
                "outside fit, call method.on_epoch_start(0) (or method.recluster()) before the first training_step"
            )
        batch_size = batch[0].shape[0]
        idx = balanced_cluster_sampler_indices(self.assignments, batch_size)
        x = self.images[idx].float().div(255)
        if self.augment is not None:
            x = self.augment(x)
        targets = self.assignments[idx]
        logits = self.head(self.encoder(x).flatten(1)).float()
        loss = F.cross_entropy(logits, targets)
        acc = (logits.detach().argmax(1) == targets).float().mean()
        return {"loss": loss, "acc": acc, "nmi_prev": self.nmi_prev.clone()}

    def after_step(self, out: dict[str, torch.Tensor]) -> None:
        """Count the applied step (the clustering schedule's clock)."""
        self.step += 1
