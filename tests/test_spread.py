"""Accuracies with their spread: Accuracy, the bootstrap, paired subsets, beats and verdict."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

import sslcourse
from sslcourse.evaluate import (
    Accuracy,
    beats,
    bootstrap_accuracies,
    compare_representations,
    knn_accuracy,
    linear_probe,
    paired_gap,
    pixel_features,
    predict_linear_probe,
    stratified_subset,
    verdict,
    verdict_table,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def digits():
    train = sslcourse.load_dataset("digits", "train")
    test = sslcourse.load_dataset("digits", "test")
    # small and stratified, so that every probe takes well under a second
    return train.subset(stratified_subset(train.labels, 0.25)), test.subset(stratified_subset(test.labels, 0.5))


class Pixels(nn.Module):
    """Raw pixels as an encoder, optionally with one pixel of every image moved a little (a near-copy of raw pixels)."""

    def __init__(self, nudge: float = 0.0) -> None:
        super().__init__()
        self.nudge = nudge
        self.anchor = nn.Parameter(torch.zeros(1))  # extract_features wants a parameter to find the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1).clone()
        middle = x.shape[1] // 2
        x[:, middle] += self.nudge * torch.linspace(-1, 1, len(x))
        return x


class Noise(nn.Module):
    """Features that ignore the image: the same random vector for an image index, whatever the image."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.dim = dim
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(x), self.dim, generator=torch.Generator().manual_seed(len(x)))


# ---------------------------------------------------------------- Accuracy
def test_accuracy_is_the_mean_of_its_values_with_their_sample_std():
    values = [0.90, 0.92, 0.95, 0.91, 0.93]
    acc = Accuracy(values, spread_of="5 labelled subsets", paired_on="x")
    assert isinstance(acc, float)
    assert float(acc) == pytest.approx(np.mean(values), abs=1e-15)
    assert acc.std == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    assert acc.values == tuple(values) and acc.replicates == tuple(values)
    assert acc.spread_of == "5 labelled subsets"
    # it behaves as the plain number wherever chapters use one
    assert f"{acc:.1%}" == "92.2%" and f"{100 * acc:.1f}" == "92.2" and str(acc) == repr(float(acc))
    assert acc > 0.92 and acc < 0.93 and type(acc + 0) is float
    assert acc.pm() == "92.2 ± 1.9" and acc.pm(digits=2) == "92.20 ± 1.92"
    assert "± 0.0192" in repr(acc) and "5 labelled subsets" in repr(acc)


def test_accuracy_with_bootstrap_replicates_takes_its_spread_from_them():
    replicates = [0.94, 0.96, 0.95, 0.97]
    acc = Accuracy([0.955], replicates=replicates, spread_of="4 bootstrap resamples of the 10 test images")
    assert float(acc) == 0.955 and acc.values == (0.955,)
    assert acc.std == pytest.approx(np.std(replicates, ddof=1))


def test_one_subset_has_no_spread():
    acc = Accuracy([0.9], spread_of="1 labelled subset", paired_on="x")
    assert math.isnan(acc.std)
    assert acc.pm() == "90.0 (no spread: 1 labelled subset)"
    assert acc.to_dict()["std"] is None
    with pytest.raises(ValueError, match="no spread.*repeats >= 2"):
        beats(acc, acc)


@pytest.mark.parametrize(
    "values, kwargs, error, message",
    [
        ([], {}, ValueError, "values is empty"),
        ([0.5, 1.2], {}, ValueError, r"accuracies in \[0, 1\]; got \[1.2\]"),
        ([0.5, math.nan], {}, ValueError, r"accuracies in \[0, 1\]"),
        ("0.9", {}, TypeError, "sequence of accuracies"),
        ([0.5], {"spread_of": ""}, ValueError, "spread_of must say in words"),
        ([0.5], {"replicates": [0.4, -0.1]}, ValueError, "replicates must be accuracies"),
        ([0.5], {"paired_on": 3}, TypeError, "paired_on must be a string"),
    ],
)
def test_bad_accuracies_are_refused_saying_what_was_expected(values, kwargs, error, message):
    with pytest.raises(error, match=message):
        Accuracy(values, **{"spread_of": "2 labelled subsets", **kwargs})


def test_accuracy_round_trips_through_json_and_pickle():
    subsets = Accuracy([0.9, 0.8, 0.85], spread_of="3 labelled subsets", paired_on="subsets #1")
    resampled = Accuracy([0.9], replicates=[0.88, 0.91, 0.9], spread_of="3 bootstrap resamples", paired_on="boot #1")
    for acc in (subsets, resampled, Accuracy([0.7], spread_of="1 labelled subset")):
        data = acc.to_dict()
        assert {"mean", "std", "values", "spread_of"} <= set(data)
        back = Accuracy.from_dict(json.loads(json.dumps(data, allow_nan=False)))
        for copy in (back, pickle.loads(pickle.dumps(acc))):
            assert type(copy) is Accuracy and float(copy) == float(acc)
            assert copy.values == acc.values and copy.replicates == acc.replicates
            assert copy.spread_of == acc.spread_of and copy.paired_on == acc.paired_on
            assert copy.std == acc.std or (math.isnan(copy.std) and math.isnan(acc.std))
    assert "replicates" not in subsets.to_dict() and len(resampled.to_dict()["replicates"]) == 3


def test_from_dict_refuses_numbers_that_do_not_follow_from_the_values():
    resampled = Accuracy([0.9], replicates=[0.88, 0.91, 0.9], spread_of="3 bootstrap resamples", paired_on="boot")
    data = resampled.to_dict()
    del data["replicates"]
    with pytest.raises(ValueError, match="were the replicates left out"):
        Accuracy.from_dict(data)
    with pytest.raises(ValueError, match="is not the mean of the values"):
        Accuracy.from_dict({**resampled.to_dict(), "mean": 0.5})
    with pytest.raises(ValueError, match=r"missing \['spread_of'\]"):
        Accuracy.from_dict({"values": [0.5]})


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_is_deterministic_for_a_seed_and_shrinks_with_more_test_images():
    rate = 0.8
    small = np.arange(100) < rate * 100  # 80 of 100 right
    large = np.arange(2500) < rate * 2500
    a, b = bootstrap_accuracies(small, seed=3), bootstrap_accuracies(small, seed=3)
    assert a.shape == (1000,) and np.array_equal(a, b)
    assert not np.array_equal(a, bootstrap_accuracies(small, seed=4))
    assert np.array_equal(bootstrap_accuracies(torch.from_numpy(small), seed=3), a)  # a tensor gives the same resamples
    for correct in (small, large):
        std = bootstrap_accuracies(correct).std(ddof=1)
        expected = math.sqrt(rate * (1 - rate) / len(correct))  # the binomial standard error
        assert std == pytest.approx(expected, rel=0.1), (len(correct), std, expected)
    assert bootstrap_accuracies(large).std() < bootstrap_accuracies(small).std() / 3


@pytest.mark.parametrize("bad, message", [(np.zeros((2, 3), dtype=bool), "non-empty \\(N,\\) bool"),
                                          (np.array([], dtype=bool), "non-empty"), (np.array([0.5, 1.0]), "bool")])
def test_bootstrap_refuses_anything_but_a_vector_of_right_and_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_accuracies(bad)


# ---------------------------------------------------------------- compare_representations
def test_subsets_are_paired_across_rows_and_are_the_seeded_stratified_ones(digits):
    train, test = digits
    rows = compare_representations({"pixels": None, "pixels again": Pixels()}, train, test, fractions=(0.1,), probes=("knn",))
    ours, again = rows["pixels"]["knn"]["0.1"], rows["pixels again"]["knn"]["0.1"]
    assert isinstance(ours, Accuracy) and len(ours.values) == 5 and ours.spread_of == "5 labelled subsets"
    # the same subsets for both rows: identical features give identical accuracies, subset by subset
    assert ours.values == again.values and ours.paired_on == again.paired_on
    f_train, f_test = pixel_features(train), pixel_features(test)
    expected = [knn_accuracy(f_train[i], train.labels[i], f_test, test.labels)
                for i in (stratified_subset(train.labels, 0.1, seed=s) for s in range(5))]
    assert list(ours.values) == pytest.approx(expected, abs=1e-12)
    assert float(ours) == pytest.approx(np.mean(expected)) and ours.std == pytest.approx(np.std(expected, ddof=1))
    assert not beats(ours, again) and verdict(ours, again) == "within the spread of"


def test_all_labels_take_their_spread_from_a_seeded_bootstrap_of_the_test_set(digits):
    train, test = digits
    rows = compare_representations({"pixels": None}, train, test, fractions=(1.0,), probes=("linear",))
    acc = rows["pixels"]["linear"]["1.0"]
    f_train, f_test = pixel_features(train), pixel_features(test)
    assert acc.values == (pytest.approx(linear_probe(f_train, train.labels, f_test, test.labels)),)
    correct = predict_linear_probe(f_train, train.labels, f_test) == test.labels.numpy()
    replicates = bootstrap_accuracies(correct, resamples=1000, seed=0)
    assert np.array_equal(acc.replicates, replicates) and acc.std == pytest.approx(replicates.std(ddof=1))
    assert acc.spread_of == f"1000 bootstrap resamples of the {len(test)} test images"
    again = compare_representations({"pixels": None}, train, test, fractions=(1.0,), probes=("linear",))["pixels"]["linear"]["1.0"]
    assert again.replicates == acc.replicates  # same seed, same numbers
    other_seed = compare_representations({"pixels": None}, train, test, fractions=(1.0,), probes=("linear",), bootstrap_seed=1)
    assert other_seed["pixels"]["linear"]["1.0"].replicates != acc.replicates
    # a test set twice as large gives a smaller spread
    full_test = sslcourse.load_dataset("digits", "test")
    larger = compare_representations({"pixels": None}, train, full_test, fractions=(1.0,), probes=("linear",))
    assert len(full_test) >= 2 * len(test) - 1 and larger["pixels"]["linear"]["1.0"].std < acc.std


def test_compare_representations_refuses_bad_repeats_and_bootstrap(digits):
    train, test = digits
    for kwargs, message in (({"repeats": 0}, "repeats must be a positive int"), ({"repeats": 2.5}, "repeats must be"),
                            ({"bootstrap": 1}, "bootstrap must be an int >= 2")):
        with pytest.raises(ValueError, match=message):
            compare_representations({"pixels": None}, train, test, fractions=(0.1,), probes=("knn",), **kwargs)


# ---------------------------------------------------------------- beats and verdict
@pytest.fixture(scope="module")
def table(digits):
    train, test = digits
    encoders = {"pixels": None, "pixels, one pixel moved": Pixels(nudge=1.0), "noise": Noise(), "pixels again": Pixels()}
    return compare_representations(encoders, train, test, fractions=(0.1, 1.0), probes=("linear", "knn"))


def test_beats_is_false_for_representations_equal_up_to_noise(table):
    moved = [(p, f) for p in ("linear", "knn") for f in ("0.1", "1.0")
             if table["pixels"][p][f].replicates != table["pixels, one pixel moved"][p][f].replicates]
    assert len(moved) >= 3, f"moving one pixel should change most cells a little; it changed only {moved}"
    for probe in ("linear", "knn"):
        for fraction in ("0.1", "1.0"):
            pixels = table["pixels"][probe][fraction]
            for twin in ("pixels again", "pixels, one pixel moved"):
                other = table[twin][probe][fraction]
                assert not beats(pixels, other) and not beats(other, pixels), (probe, fraction, twin, paired_gap(pixels, other))
                assert verdict(pixels, other) == "within the spread of"


def test_beats_is_true_for_a_clearly_better_representation(table):
    for probe in ("linear", "knn"):
        for fraction in ("0.1", "1.0"):
            pixels, noise = table["pixels"][probe][fraction], table["noise"][probe][fraction]
            assert float(noise) < 0.3 < 0.7 < float(pixels)  # noise is near chance (10 classes)
            assert beats(pixels, noise) and not beats(noise, pixels)
            assert verdict(pixels, noise) == "beats" and verdict(noise, pixels) == "is beaten by"
            gap, spread = paired_gap(pixels, noise)
            assert gap == pytest.approx(float(pixels) - float(noise)) and 0 <= spread < gap


def test_beats_refuses_accuracies_that_cannot_be_paired(table):
    ten = table["pixels"]["linear"]["0.1"]
    with pytest.raises(ValueError, match="not measured on the same subsets or resamples"):
        beats(ten, table["noise"]["linear"]["1.0"])  # subsets against bootstrap resamples
    fewer = Accuracy(ten.values[:3], spread_of="3 labelled subsets", paired_on="3 subsets")
    with pytest.raises(ValueError, match="not measured on the same subsets or resamples"):
        beats(ten, fewer)
    with pytest.raises(TypeError, match="a plain number has no spread"):
        beats(ten, 0.5)
    with pytest.raises(TypeError, match="b is a float"):
        verdict(ten, float(ten))
    with pytest.raises(ValueError, match="has no paired_on"):
        beats(ten, Accuracy(ten.values, spread_of=ten.spread_of))


def test_subsets_of_another_fraction_or_test_set_do_not_pair(digits, table):
    train, test = digits
    one_percent = compare_representations({"pixels": None}, train, test, fractions=(0.05,), probes=("linear",))
    with pytest.raises(ValueError, match="not measured on the same"):
        beats(table["pixels"]["linear"]["0.1"], one_percent["pixels"]["linear"]["0.05"])
    other_test = test.subset(torch.arange(len(test) - 1))
    elsewhere = compare_representations({"pixels": None}, train, other_test, fractions=(0.1,), probes=("linear",))
    with pytest.raises(ValueError, match="not measured on the same"):
        beats(table["pixels"]["linear"]["0.1"], elsewhere["pixels"]["linear"]["0.1"])


def test_verdict_table_compares_one_row_with_every_other(table, digits):
    verdicts = verdict_table(table, "pixels")
    assert set(verdicts) == {"pixels, one pixel moved", "noise", "pixels again"}
    assert verdicts["noise"]["linear"]["0.1"]["verdict"] == "beats"
    assert verdicts["pixels again"]["knn"]["1.0"] == {"verdict": "within the spread of", "gap": 0.0, "gap_std": 0.0}
    train, test = digits
    single = compare_representations({"a": None, "b": Pixels()}, train, test, fractions=(0.1,), probes=("knn",), repeats=1)
    assert verdict_table(single, "a")["b"]["knn"]["0.1"] == {"verdict": "no spread", "gap": None, "gap_std": None}
    with pytest.raises(ValueError, match="no row 'c'"):
        verdict_table(single, "c")
