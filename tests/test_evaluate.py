"""sslcourse.evaluate: features, probes, kNN, fine-tuning and the two baselines."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import sslcourse
from sslcourse.evaluate import (
    compare_representations,
    extract_features,
    fine_tune,
    knn_accuracy,
    linear_probe,
    pixel_features,
    random_init_like,
    stratified_subset,
)
from sslcourse.nets import ConvEncoder


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny nets: one thread is as fast, and robust to a busy 2-core box
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    train = sslcourse.load_dataset("digits", "train")
    test = sslcourse.load_dataset("digits", "test")
    # small, stratified, so every probe runs in well under a second
    return train.subset(stratified_subset(train.labels, 0.25)), test.subset(stratified_subset(test.labels, 0.5))


def encoder(seed=0, widths=(8, 16)):
    torch.manual_seed(seed)
    return ConvEncoder(1, widths)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- features
def test_extract_features_shape_dtype_device(digits):
    train, _ = digits
    enc = encoder()
    feats = extract_features(enc, train, batch_size=100, device="cpu")
    assert feats.shape == (len(train), 10 * 4 * 4)
    assert feats.dtype == torch.float32 and feats.device == torch.device("cpu")
    assert torch.isfinite(feats).all()


def test_extract_features_restores_train_mode_and_batches_agree(digits):
    train, _ = digits
    enc = encoder().train()
    a = extract_features(enc, train, batch_size=64, device="cpu")
    assert enc.training
    b = extract_features(enc.eval(), train, batch_size=1000, device="cpu")
    assert not enc.training
    torch.testing.assert_close(a, b)  # eval mode throughout: batch size does not matter


def test_extract_features_uint8_float_and_dataset_agree(digits):
    train, _ = digits
    enc = encoder()
    a = extract_features(enc, train, device="cpu")
    b = extract_features(enc, train.images, device="cpu")
    c = extract_features(enc, train.images.float() / 255, device="cpu")
    assert torch.equal(a, b)
    torch.testing.assert_close(a, c)


def test_extract_features_does_not_touch_batch_norm_stats(digits):
    train, _ = digits
    enc = encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    extract_features(enc, train, device="cpu")
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_extract_features_bad_input():
    with pytest.raises(TypeError, match=r"\(N, C, H, W\)"):
        extract_features(encoder(), torch.zeros(3, 16, 16), device="cpu")


def test_pixel_features(digits):
    train, _ = digits
    feats = pixel_features(train)
    assert feats.shape == (len(train), 16 * 16) and feats.dtype == torch.float32
    assert feats.min().item() >= 0.0 and feats.max().item() == 1.0
    torch.testing.assert_close(feats, train.images.flatten(1).float() / 255)
    assert torch.equal(pixel_features(train.images), feats)


# ---------------------------------------------------------------- random init baseline
def test_random_init_like(digits):
    trained = encoder(seed=0)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # "trained": moved away from any init
        trained.layers[0][1].running_mean.fill_(3.0)
    fresh = random_init_like(trained, seed=0)
    assert type(fresh) is type(trained)
    assert [(k, v.shape) for k, v in fresh.state_dict().items()] == [(k, v.shape) for k, v in trained.state_dict().items()]
    assert fresh is not trained
    for (name, a), b in zip(fresh.named_parameters(), trained.parameters()):
        assert not torch.equal(a, b), name
    assert torch.equal(fresh.layers[0][1].running_mean, torch.zeros(8)), "batch-norm statistics reset"
    assert torch.equal(fresh.layers[0][1].weight, torch.ones(8))
    # the trained copy is untouched
    assert trained.layers[0][1].running_mean[0].item() == 3.0


def test_random_init_like_deterministic_per_seed():
    trained = encoder(seed=5)
    a, b, c = random_init_like(trained, seed=1), random_init_like(trained, seed=1), random_init_like(trained, seed=2)
    assert same_state(a, b)
    assert not same_state(a, c)


def test_random_init_like_leaves_global_rng_alone():
    trained = encoder()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_init_like(trained, seed=7)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- stratified_subset
def test_stratified_subset():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20 + [3] * 3)
    idx = stratified_subset(labels, 0.1, seed=0)
    assert idx.dtype == torch.int64
    assert torch.equal(idx, idx.sort().values)
    assert len(idx.unique()) == len(idx)
    counts = torch.bincount(labels[idx], minlength=4).tolist()
    assert counts == [5, 3, 2, 1]  # round(0.1 * n), at least one
    assert not torch.equal(idx, stratified_subset(labels, 0.1, seed=1))
    assert torch.equal(idx, stratified_subset(labels, 0.1, seed=0))


def test_stratified_subset_at_least_one_per_class():
    labels = torch.arange(10).repeat_interleave(4)
    idx = stratified_subset(labels, 0.01)
    assert torch.equal(labels[idx].sort().values, torch.arange(10))


def test_stratified_subset_all():
    labels = torch.randint(0, 5, (37,))
    assert torch.equal(stratified_subset(labels, 1.0), torch.arange(37))


@pytest.mark.parametrize("bad", [0, -0.5, 1.5])
def test_stratified_subset_bad_fraction(bad):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        stratified_subset(torch.zeros(5, dtype=torch.long), bad)


# ---------------------------------------------------------------- probes
def separable(n_per_class=40, classes=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 10 * torch.eye(classes, dim)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    feats = centers[labels] + 0.5 * torch.randn(len(labels), dim, generator=g)
    return feats, labels


@pytest.mark.parametrize("probe", [linear_probe, knn_accuracy])
def test_probes_perfect_on_separable_features(probe):
    ftr, ytr = separable(seed=0)
    fte, yte = separable(seed=1)
    assert probe(ftr, ytr, fte, yte) == 1.0


@pytest.mark.parametrize("probe", [linear_probe, knn_accuracy])
def test_probes_near_chance_on_random_labels(probe):
    g = torch.Generator().manual_seed(0)
    ftr, fte = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    ytr, yte = torch.randint(0, 10, (400,), generator=g), torch.randint(0, 10, (400,), generator=g)
    acc = probe(ftr, ytr, fte, yte)
    assert 0.0 <= acc <= 0.25, f"{probe.__name__}: {acc:.3f} on random labels (chance 0.1)"


def test_knn_with_more_neighbours_than_samples():
    ftr, ytr = separable(n_per_class=2)
    fte, yte = separable(n_per_class=5, seed=1)
    assert knn_accuracy(ftr, ytr, fte, yte, k=50) == 1.0


# ---------------------------------------------------------------- compare_representations
def test_compare_representations_structure(digits):
    train, test = digits
    enc = encoder()
    rows = compare_representations(
        {"pixels": None, "random": enc, "shallow": enc.truncated(3)},
        train,
        test,
        fractions=(0.1, 1.0),
        probes=("linear", "knn"),
        repeats=2,
        device="cpu",
    )
    assert list(rows) == ["pixels", "random", "shallow"]
    for name, row in rows.items():
        assert set(row) == {"linear", "knn"}
        for probe, accs in row.items():
            assert set(accs) == {"0.1", "1.0"}
            assert all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in accs.values())
            assert accs["1.0"] > 0.5, f"{name}/{probe}: digits are easy, got {accs['1.0']:.3f}"

    # the pixel row is exactly the probe on raw pixels (fraction 1: one run)
    expected = linear_probe(pixel_features(train), train.labels, pixel_features(test), test.labels)
    assert rows["pixels"]["linear"]["1.0"] == pytest.approx(expected)


def test_compare_representations_averages_repeats(digits):
    train, test = digits
    rows = compare_representations({"pixels": None}, train, test, fractions=(0.1,), probes=("knn",), repeats=3)
    f_tr, f_te = pixel_features(train), pixel_features(test)
    accs = []
    for seed in range(3):
        idx = stratified_subset(train.labels, 0.1, seed=seed)
        accs.append(knn_accuracy(f_tr[idx], train.labels[idx], f_te, test.labels))
    assert rows["pixels"]["knn"]["0.1"] == pytest.approx(sum(accs) / 3)


def test_compare_representations_unknown_probe(digits):
    train, test = digits
    with pytest.raises(ValueError, match=r"unknown probes \['svm'\]"):
        compare_representations({"pixels": None}, train, test, probes=("linear", "svm"))


# ---------------------------------------------------------------- fine_tune
def test_fine_tune_returns_accuracy_and_leaves_encoder_alone(digits):
    train, test = digits
    enc = encoder().train()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    torch.manual_seed(42)
    rng_before = torch.get_rng_state()
    # (with only ~15 steps, batch norm's running statistics have not converged and
    # eval-mode accuracy is at chance; 10 epochs is ~50 steps)
    acc = fine_tune(enc, train, test, fraction=0.5, epochs=10, batch_size=32, device="cpu")
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    assert acc > 0.5, f"10 epochs on half of the labels should beat chance (0.1) clearly; got {acc:.3f}"
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    assert enc.training
    assert torch.equal(torch.get_rng_state(), rng_before), "fine_tune forks the global RNG"


def test_fine_tune_deterministic_and_with_augment(digits):
    train, test = digits
    enc = encoder()
    a = fine_tune(enc, train, test, fraction=0.2, epochs=2, device="cpu", seed=1)
    b = fine_tune(enc, train, test, fraction=0.2, epochs=2, device="cpu", seed=1)
    assert a == b
    calls = []

    def flip(x):
        calls.append(x.shape)
        return x.flip(-1)

    c = fine_tune(enc, train, test, fraction=0.2, epochs=1, device="cpu", augment=flip)
    assert 0.0 <= c <= 1.0 and len(calls) > 0 and all(len(s) == 4 for s in calls)


def test_fine_tune_min_steps_sets_a_floor_on_optimizer_steps(digits):
    train, test = digits
    enc = encoder()
    calls = []

    def count(x):
        calls.append(len(x))
        return x

    # 1% of the labels is a few images: one batch per epoch, so 2 epochs are 2 steps
    fine_tune(enc, train, test, fraction=0.01, epochs=2, batch_size=64, device="cpu", augment=count)
    assert len(calls) == 2
    calls.clear()
    fine_tune(enc, train, test, fraction=0.01, epochs=2, min_steps=25, batch_size=64, device="cpu", augment=count)
    assert len(calls) == 25, f"min_steps=25 on a one-batch subset should run 25 steps, ran {len(calls)}"
    calls.clear()
    # a floor below what the epochs give changes nothing
    fine_tune(enc, train, test, fraction=1.0, epochs=2, min_steps=1, batch_size=64, device="cpu", augment=count)
    assert len(train) > 2 * 64 and len(calls) == 2 * (len(train) // 64)
    for bad in (dict(min_steps=-1), dict(epochs=0), dict(min_steps=2.5)):
        with pytest.raises(ValueError):
            fine_tune(enc, train, test, fraction=0.01, device="cpu", **bad)


def test_recalibrate_batch_norm_estimates_statistics_and_trains_nothing():
    from sslcourse.evaluate import random_init_like, recalibrate_batch_norm
    from sslcourse.nets import ConvEncoder

    torch.manual_seed(0)
    images = torch.rand(300, 1, 16, 16) * 0.5 + 0.25
    encoder = random_init_like(ConvEncoder(1, (8, 16)))
    calibrated = recalibrate_batch_norm(encoder, images, batch_size=64, device="cpu")
    first_bn = calibrated.layers[0][1]
    # the first batch norm sees the first convolution's outputs: its running mean is their mean over all images
    with torch.no_grad():
        conv_out = calibrated.layers[0][0](images)
    torch.testing.assert_close(first_bn.running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert first_bn.num_batches_tracked.item() == 5  # ceil(300 / 64) batches
    for (name, p), q in zip(encoder.named_parameters(), calibrated.parameters()):
        assert torch.equal(p, q), f"{name} changed: recalibration must train nothing"
    assert not calibrated.training
    assert torch.equal(encoder.layers[0][1].running_mean, torch.zeros(8)), "the encoder passed in must not change"
    with pytest.raises(ValueError, match="no batch-norm"):
        recalibrate_batch_norm(torch.nn.Linear(4, 2), torch.rand(4, 1, 2, 2))
