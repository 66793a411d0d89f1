"""DeepCluster: feature preprocessing, empty clusters, balanced sampling, and the method under fit."""

from __future__ import annotations

import math

import pytest
import torch
from threadpoolctl import threadpool_limits

import sslcourse
from sslcourse.methods.clustering import (
    DeepCluster,
    balanced_cluster_sampler_indices,
    cluster_features,
    fix_empty_clusters,
    preprocess_features,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny problems: one thread for torch and for scikit-learn's BLAS is as fast, and on a
    # busy 2-core box competing threads make PCA and k-means 10-100x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return sslcourse.load_dataset("digits", "train").subset(torch.arange(256))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def blobs(k=4, per=25, dim=8, seed=0):
    """k well separated gaussian blobs: features (k * per, dim) and their true labels."""
    g = gen(seed)
    centres = torch.randn(k, dim, generator=g) * 10
    labels = torch.arange(k).repeat_interleave(per)
    return centres[labels] + 0.1 * torch.randn(k * per, dim, generator=g), labels


def nearest(features, centroids):
    return torch.cdist(features, centroids).argmin(1)


# ------------------------------------------------------------- preprocessing
def test_preprocess_features_reduces_and_normalises():
    x = torch.randn(50, 20, generator=gen()) * torch.linspace(0.1, 10, 20)
    out = preprocess_features(x, 8)
    assert out.shape == (50, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(50))
    assert preprocess_features(x, 64).shape == (50, 20), "capped by the feature dimension"
    assert preprocess_features(x[:5], 64).shape == (5, 5), "and by the number of samples"
    assert preprocess_features(x, None).shape == (50, 20)


def test_preprocess_features_whitens_before_normalising():
    # one direction with 100x the variance would dominate k-means; whitening equalises them
    x = torch.randn(400, 3, generator=gen()) * torch.tensor([100.0, 1.0, 1.0])
    out = preprocess_features(x, 3)
    spread = out.abs().mean(0)
    assert spread.max() / spread.min() < 1.5


def test_preprocess_features_bad_input():
    with pytest.raises(ValueError, match=r"preprocess_features expects features \(N, D\); got \(2, 3, 4\)"):
        preprocess_features(torch.zeros(2, 3, 4))


# ------------------------------------------------------------- empty clusters
def test_fix_empty_clusters_when_centroids_sit_far_from_the_data():
    # a Lloyd assignment step with three of six centroids far away leaves those three empty
    features, _ = blobs(k=3, per=30, dim=4)
    centroids = torch.cat([features[[0, 30, 60]], torch.full((3, 4), 1000.0)])
    assignments = nearest(features, centroids)
    counts = torch.bincount(assignments, minlength=6)
    assert (counts == 0).sum() == 3, "the constructed case has empty clusters"
    new_centroids, new_assignments = fix_empty_clusters(features, centroids, assignments, generator=gen())
    new_counts = torch.bincount(new_assignments, minlength=6)
    assert bool((new_counts > 0).all()), new_counts.tolist()
    assert new_counts.sum() == 90
    # every centroid touched is the mean of its members
    for c in range(6):
        if not torch.equal(new_centroids[c], centroids[c]):
            torch.testing.assert_close(new_centroids[c], features[new_assignments == c].mean(0))
    # the inputs are not modified
    assert torch.equal(assignments, nearest(features, centroids))
    assert bool((centroids[3:] == 1000).all())


def test_fix_empty_clusters_all_points_in_one_cluster():
    features = torch.randn(40, 5, generator=gen())
    assignments = torch.zeros(40, dtype=torch.int64)
    _, fixed = fix_empty_clusters(features, torch.zeros(10, 5), assignments, generator=gen())
    assert bool((torch.bincount(fixed, minlength=10) > 0).all())


def test_fix_empty_clusters_identical_points_still_split():
    # no perturbation can separate identical points: one of them is moved
    features = torch.ones(6, 3)
    _, fixed = fix_empty_clusters(features, torch.ones(6, 3), torch.zeros(6, dtype=torch.int64), generator=gen())
    assert torch.bincount(fixed, minlength=6).tolist() == [1] * 6


def test_fix_empty_clusters_leaves_full_clusterings_alone():
    features, labels = blobs()
    centroids = torch.stack([features[labels == c].mean(0) for c in range(4)])
    new_centroids, new_assignments = fix_empty_clusters(features, centroids, labels)
    assert torch.equal(new_assignments, labels) and torch.equal(new_centroids, centroids)


def test_fix_empty_clusters_fewer_points_than_clusters():
    features = torch.randn(3, 2, generator=gen())
    _, fixed = fix_empty_clusters(features, torch.zeros(5, 2), torch.zeros(3, dtype=torch.int64), generator=gen())
    assert (torch.bincount(fixed, minlength=5) > 0).sum() == 3


def test_fix_empty_clusters_reproducible():
    features = torch.randn(60, 4, generator=gen())
    assignments = torch.zeros(60, dtype=torch.int64)
    a = fix_empty_clusters(features, torch.zeros(8, 4), assignments, generator=gen(1))
    b = fix_empty_clusters(features, torch.zeros(8, 4), assignments, generator=gen(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_fix_empty_clusters_bad_inputs():
    with pytest.raises(TypeError, match="assignments must be an int64 tensor"):
        fix_empty_clusters(torch.zeros(4, 2), torch.zeros(2, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="4 features but 3 assignments"):
        fix_empty_clusters(torch.zeros(4, 2), torch.zeros(2, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="assignment 5 out of range for 2 centroids"):
        fix_empty_clusters(torch.zeros(4, 2), torch.zeros(2, 2), torch.tensor([0, 1, 5, 0]))


# ------------------------------------------------------------------ k-means
def test_cluster_features_finds_separated_blobs():
    from sklearn.metrics import normalized_mutual_info_score

    features, labels = blobs(k=5, per=20, dim=16)
    assignments, centroids = cluster_features(features, 5, pca_dim=8)
    assert assignments.shape == (100,) and assignments.dtype == torch.int64
    assert centroids.shape == (5, 8)
    assert normalized_mutual_info_score(labels.numpy(), assignments.numpy()) > 0.99


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
@pytest.mark.parametrize("k", [10, 30])
def test_cluster_features_never_leaves_a_cluster_empty(k):
    # as many clusters as points, or many duplicates: k-means alone may leave clusters empty
    features = torch.randn(10, 4, generator=gen()).repeat(3, 1)
    assignments, _ = cluster_features(features, k, pca_dim=None)
    assert bool((torch.bincount(assignments, minlength=k) > 0).all())


def test_cluster_features_needs_enough_points():
    with pytest.raises(ValueError, match="5 samples cannot fill 8 clusters"):
        cluster_features(torch.randn(5, 3), 8)


# ----------------------------------------------------------- balanced sampler
def test_balanced_sampler_is_uniform_over_clusters():
    sizes = [1, 5, 50, 500, 0, 20]  # very unequal, one empty
    assignments = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(sizes)])
    idx = balanced_cluster_sampler_indices(assignments, 50_000, generator=gen())
    assert idx.shape == (50_000,) and idx.dtype == torch.int64
    freq = torch.bincount(assignments[idx], minlength=6).float() / 50_000
    assert freq[4] == 0, "empty clusters are never drawn"
    for c in (0, 1, 2, 3, 5):
        assert abs(freq[c].item() - 0.2) < 0.01, freq.tolist()


def test_balanced_sampler_is_uniform_within_a_cluster():
    assignments = torch.tensor([0] * 4 + [1] * 100)
    idx = balanced_cluster_sampler_indices(assignments, 40_000, generator=gen())
    small = torch.bincount(idx[idx < 4], minlength=4).float()
    assert bool((small / small.sum() - 0.25).abs().max() < 0.02)
    big = torch.bincount(idx[idx >= 4] - 4, minlength=100)
    assert big.min() > 0, "every member of the large cluster is drawn"


def test_balanced_sampler_reproducible_and_any_order():
    assignments = torch.randint(0, 7, (300,), generator=gen())
    a = balanced_cluster_sampler_indices(assignments, 100, generator=gen(1))
    b = balanced_cluster_sampler_indices(assignments, 100, generator=gen(1))
    c = balanced_cluster_sampler_indices(assignments, 100, generator=gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 300


@pytest.mark.parametrize("device", DEVICES)
def test_balanced_sampler_on_the_assignments_device(device):
    assignments = torch.randint(0, 5, (100,), generator=gen()).to(device)
    idx = balanced_cluster_sampler_indices(assignments, 64, generator=gen(3))
    assert idx.device.type == device
    assert torch.equal(idx.cpu(), balanced_cluster_sampler_indices(assignments.cpu(), 64, generator=gen(3)))


def test_balanced_sampler_bad_inputs():
    with pytest.raises(TypeError, match=r"assignments must be an int64 tensor \(N,\); got torch.float32"):
        balanced_cluster_sampler_indices(torch.zeros(5), 3)
    with pytest.raises(ValueError, match="num_samples must be an int >= 0, got -1"):
        balanced_cluster_sampler_indices(torch.zeros(5, dtype=torch.int64), -1)


# ------------------------------------------------------------------- method
def make(tiny, **kw):
    torch.manual_seed(0)
    kw.setdefault("num_clusters", 16)
    return DeepCluster(tiny, widths=(8, 16), **kw)


def test_deepcluster_clusters_in_its_epoch_hook_not_in_the_training_step(tiny):
    method = make(tiny)
    assert bool((method.assignments == -1).all())
    x = tiny.images[:64].float().div(255)
    with pytest.raises(RuntimeError, match=r"DeepCluster has no pseudo-labels yet: .*on_epoch_start\(0\)"):
        method.training_step((x, None))
    reset = method.on_epoch_start(0)
    assert reset == list(method.head.parameters()), "the re-initialised head's parameters, for fit to reset their optimizer state"
    assert int(method.clusterings) == 1 and int(method.last_clustered) == 0
    assert bool((torch.bincount(method.assignments, minlength=16) > 0).all())
    assignments = method.assignments.clone()
    out = method.training_step((x, torch.full((64,), -12345)))
    assert torch.equal(method.assignments, assignments), "no k-means inside the training step"
    assert set(out) == {"loss", "acc", "nmi_prev"}
    assert out["loss"].dim() == 0 and math.isfinite(out["loss"].item())
    assert math.isnan(out["nmi_prev"].item()), "no previous clustering yet"
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder.parameters())


def test_deepcluster_ignores_the_loaders_labels_and_images(tiny):
    x = tiny.images[:64].float().div(255)
    other = torch.rand(x.shape, generator=gen())
    a, b = make(tiny), make(tiny)
    for method in (a, b):
        torch.manual_seed(0)  # the same re-initialised head
        method.on_epoch_start(0)
    torch.manual_seed(1)
    out_a = a.training_step((x, torch.full((64,), -12345)))
    torch.manual_seed(1)
    out_b = b.training_step((other, torch.arange(64)))
    assert out_a["loss"].item() == out_b["loss"].item()


def _train_steps(method, n, x):
    for _ in range(n):
        out = method.training_step((x, None))
        method.after_step(out)


def test_deepcluster_reclusters_at_an_epoch_start_after_min_recluster_steps_applied_steps(tiny):
    method = make(tiny, min_recluster_steps=5)
    x = tiny.images[:64].float().div(255)
    assert method.on_epoch_start(0) != []
    for _ in range(7):
        method.training_step((x, None))  # steps the optimizer never applied (no after_step) do not count
    assert method.on_epoch_start(1) == [] and int(method.clusterings) == 1
    _train_steps(method, 4, x)
    assert method.on_epoch_start(2) == [], "4 applied steps since the clustering, fewer than 5"
    _train_steps(method, 1, x)
    assert method.on_epoch_start(3) != [] and int(method.clusterings) == 2
    assert int(method.last_clustered) == 5 == int(method.step)


def test_deepcluster_min_recluster_steps_1_clusters_every_epoch_and_resets_the_head_in_place(tiny):
    method = make(tiny, min_recluster_steps=1)
    x = tiny.images[:64].float().div(255)
    weight = method.head.weight
    method.on_epoch_start(0)
    first = method.head.weight.detach().clone()
    with torch.no_grad():
        method.head.weight.add_(1.0)  # pretend training moved it
    _train_steps(method, 4, x)
    out = method.training_step((x, None))
    assert math.isnan(out["nmi_prev"].item())
    assert method.on_epoch_start(1) == [method.head.weight, method.head.bias]
    assert int(method.clusterings) == 2
    out = method.training_step((x, None))
    assert 0.0 <= out["nmi_prev"].item() <= 1.0
    assert out["nmi_prev"] is not method.nmi_prev, "a copy: the logged value must not change with the next clustering"
    assert method.head.weight is weight, "reset in place: the optimizer keeps the same tensor"
    assert not torch.equal(method.head.weight, first + 1.0), "the head was re-initialised"
    assert method.head.weight.abs().max() <= 1 / math.sqrt(method.head.in_features) + 1e-6


def test_deepcluster_state_dict_resumes_the_pseudo_labels_and_the_schedule(tiny):
    method = make(tiny, min_recluster_steps=2)
    x = tiny.images[:64].float().div(255)
    method.on_epoch_start(0)
    _train_steps(method, 2, x)
    method.on_epoch_start(1)
    _train_steps(method, 1, x)
    state = method.state_dict()
    assert "images" not in state, "the data set stays out of checkpoints"
    other = make(tiny, min_recluster_steps=2)
    other.load_state_dict(state)
    assert torch.equal(other.assignments, method.assignments)
    assert (int(other.step), int(other.clusterings), int(other.last_clustered)) == (3, 2, 2)
    assert other.nmi_prev.item() == method.nmi_prev.item()
    assert other.on_epoch_start(2) == [] and other.on_epoch_start(2) == [], "1 applied step since the last clustering"
    _train_steps(other, 1, x)
    assert other.on_epoch_start(2) != []


def test_deepcluster_bad_arguments(tiny):
    with pytest.raises(ValueError, match="num_clusters must be an int in 2..N = 256, got 1000"):
        DeepCluster(tiny, num_clusters=1000)
    with pytest.raises(TypeError, match=r"uint8 \(N, C, H, W\); got torch.float32"):
        DeepCluster(torch.rand(10, 1, 16, 16))
    with pytest.raises(ValueError, match="min_recluster_steps must be an int >= 1, got 0"):
        DeepCluster(tiny, min_recluster_steps=0)
    with pytest.raises(ValueError, match="pca_dim must be an int >= 1 or None, got 0"):
        DeepCluster(tiny, pca_dim=0)
    with pytest.raises(ValueError, match="kmeans_iter must be an int >= 1, got 0"):
        DeepCluster(tiny, kmeans_iter=0)


def test_deepcluster_fit_learns_the_pseudo_labels(tiny):
    # one clustering, then 40 steps (10 epochs of 4) on its pseudo-labels: the classifier learns them
    method = make(tiny, min_recluster_steps=1000)
    history = sslcourse.fit(method, tiny, steps=40, batch_size=64, lr=3e-3, progress=False, device="cpu", seed=0)
    assert int(method.clusterings) == 1 and int(method.step) == 40
    acc, loss = history.metrics["acc"], history.loss
    assert sum(loss[-5:]) / 5 < sum(loss[:5]) / 5 - 0.3, f"loss {loss[:5]} -> {loss[-5:]}"
    assert sum(acc[-5:]) / 5 > sum(acc[:5]) / 5 + 0.15, f"pseudo-label accuracy {acc[:5]} -> {acc[-5:]}"
    assert len(history.metrics["nmi_prev"]) == 40


def test_deepcluster_under_fit_clusters_at_epoch_starts(tiny):
    # 256 images in batches of 64: 4 steps an epoch; with at least 6 steps between clusterings,
    # the epochs starting at steps 0, 8 and 16 cluster (not 4 and 12)
    method = make(tiny, min_recluster_steps=6)
    sslcourse.fit(method, tiny, epochs=5, batch_size=64, lr=3e-3, progress=False, device="cpu", seed=0)
    assert (int(method.clusterings), int(method.last_clustered), int(method.step)) == (3, 16, 20)


@pytest.mark.slow
def test_deepcluster_pretraining_beats_random_init():
    from sslcourse.evaluate import compare_representations, random_init_like

    train, test = sslcourse.load_dataset("digits", "train"), sslcourse.load_dataset("digits", "test")
    torch.manual_seed(0)
    method = DeepCluster(train)
    history = sslcourse.fit(method, train, steps=150, batch_size=128, lr=2e-3, seed=0, progress=False, device="cpu")
    assert int(method.clusterings) == 3  # 11 steps an epoch, at least 50 between clusterings: steps 0, 55, 110
    encoder = method.encoder.cpu()
    rows = compare_representations(
        {"pretrained": encoder, "random": random_init_like(encoder)}, train, test, fractions=(0.1,), probes=("linear",), device="cpu"
    )
    pretrained, random = rows["pretrained"]["linear"]["0.1"], rows["random"]["linear"]["0.1"]
    assert pretrained - random > 0.04, f"linear probe at 10% labels: DeepCluster {pretrained:.3f}, random init {random:.3f}"
    nmi = history.metrics["nmi_prev"]
    assert math.isnan(nmi[0]) and 0.3 < nmi[-1] <= 1.0
