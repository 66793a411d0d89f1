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
- :class:`Accuracy` is a mean accuracy that carries its spread, and
  :func:`beats` / :func:`verdict` say whether a gap between two of them holds
  beyond that spread.
"""

from __future__ import annotations

import copy
import hashlib
import math
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
    "Accuracy",
    "beats",
    "verdict",
    "paired_gap",
    "verdict_table",
    "bootstrap_accuracies",
    "extract_features",
    "pixel_features",
    "random_init_like",
    "stratified_subset",
    "linear_probe",
    "knn_accuracy",
    "predict_linear_probe",
    "predict_knn",
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


def predict_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    *,
    C: float = 1.0,
    max_iter: int = 2000,
) -> np.ndarray:
    """The classes that a logistic regression fitted on frozen, standardised features predicts for the test features.

    Features (N, D) and (M, D) float, labels (N,) int. Returns (M,) predicted labels.
    """
    scaler = StandardScaler().fit(_numpy(train_features))
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(scaler.transform(_numpy(train_features)), _numpy(train_labels))
    return clf.predict(scaler.transform(_numpy(test_features)))


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
    predicted = predict_linear_probe(train_features, train_labels, test_features, C=C, max_iter=max_iter)
    return float(np.mean(predicted == _numpy(test_labels)))


def predict_knn(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, *, k: int = 20) -> np.ndarray:
    """The classes that a distance-weighted k-nearest-neighbour vote under cosine similarity predicts: (M,) labels."""
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_labels)), metric="cosine", weights="distance")
    knn.fit(_numpy(train_features), _numpy(train_labels))
    return knn.predict(_numpy(test_features))


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 20,
) -> float:
    """Test accuracy of a distance-weighted k-nearest-neighbour vote under cosine similarity."""
    return float(np.mean(predict_knn(train_features, train_labels, test_features, k=k) == _numpy(test_labels)))


PROBES = {"linear": linear_probe, "knn": knn_accuracy}
PREDICTORS = {"linear": predict_linear_probe, "knn": predict_knn}


# ---------------------------------------------------------------- accuracies with their spread
class Accuracy(float):
    """A test accuracy in [0, 1] that knows how much it varies.

    It is a ``float`` whose value is the mean accuracy, so ``f"{acc:.1%}"``,
    ``100 * acc`` and ``acc > other`` work as with a plain number. It also holds:

    - ``values``: the accuracies it is the mean of, e.g. one per labelled
      subset; at 100% of the labels, the one accuracy on the whole test set.
    - ``replicates``: the paired measurements its spread is computed over: the
      same as ``values`` for labelled subsets; the accuracy on each bootstrap
      resample of the test set when there is a single fit.
    - ``std``: the sample standard deviation of ``replicates`` (NaN if there is
      only one: then there is no spread).
    - ``spread_of``: what the spread is over, in words ("5 labelled subsets").
    - ``paired_on``: a label naming those subsets or resamples. Two accuracies
      with the same label were measured on the same ones, in the same order,
      so :func:`beats` can compare them pair by pair.

    ``acc.pm()`` gives "92.0 ± 0.4" (percent); ``acc.to_dict()`` and
    :meth:`Accuracy.from_dict` go to and from JSON.
    """

    __slots__ = ("values", "replicates", "std", "spread_of", "paired_on")

    def __new__(
        cls,
        values: Sequence[float],
        *,
        spread_of: str,
        replicates: Sequence[float] | None = None,
        paired_on: str | None = None,
    ) -> "Accuracy":
        values = _accuracies("values", values)
        replicates = values if replicates is None else _accuracies("replicates", replicates)
        if not isinstance(spread_of, str) or not spread_of.strip():
            raise ValueError(f"Accuracy: spread_of must say in words what the spread is over, got {spread_of!r}")
        if paired_on is not None and not isinstance(paired_on, str):
            raise TypeError(f"Accuracy: paired_on must be a string naming the subsets or resamples, got {type(paired_on).__name__}")
        self = super().__new__(cls, float(np.mean(values)))
        self.values = values
        self.replicates = replicates
        self.std = float(np.std(replicates, ddof=1)) if len(replicates) > 1 else math.nan
        self.spread_of = spread_of
        self.paired_on = paired_on
        return self

    def pm(self, digits: int = 1) -> str:
        """The mean and its spread in percent: ``"92.0 ± 0.4"`` (or ``"92.0 (no spread: 1 labelled subset)"``)."""
        mean = f"{100 * float(self):.{digits}f}"
        return f"{mean} (no spread: {self.spread_of})" if math.isnan(self.std) else f"{mean} ± {100 * self.std:.{digits}f}"

    def to_dict(self, *, replicates: bool = True) -> dict:
        """``{"mean", "std", "values", "spread_of", "paired_on"}``, plus ``"replicates"`` where they are not the values.

        Plain JSON types; ``std`` is None when there is no spread. ``replicates=False``
        leaves out a bootstrap's 1000 resampled accuracies (a short record; :meth:`from_dict`
        then cannot rebuild that cell).
        """
        out = {
            "mean": float(self),
            "std": None if math.isnan(self.std) else self.std,
            "values": list(self.values),
            "spread_of": self.spread_of,
            "paired_on": self.paired_on,
        }
        if replicates and self.replicates != self.values:
            out["replicates"] = list(self.replicates)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "Accuracy":
        """The :class:`Accuracy` that :meth:`to_dict` wrote. Raises ValueError if its mean or std do not follow from its values."""
        missing = {"values", "spread_of"} - set(data)
        if missing:
            raise ValueError(f"Accuracy.from_dict: expected the keys of Accuracy.to_dict(); missing {sorted(missing)}")
        acc = cls(data["values"], spread_of=data["spread_of"], replicates=data.get("replicates"), paired_on=data.get("paired_on"))
        std = data.get("std")
        if "mean" in data and not math.isclose(data["mean"], float(acc), rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"Accuracy.from_dict: mean {data['mean']!r} is not the mean of the values ({float(acc)!r})")
        if "std" in data and not (
            (std is None and math.isnan(acc.std)) or (std is not None and math.isclose(std, acc.std, rel_tol=1e-9, abs_tol=1e-12))
        ):
            raise ValueError(
                f"Accuracy.from_dict: std {std!r} is not the sample std of the "
                f"{'replicates' if 'replicates' in data else 'values'} ({acc.std!r}); were the replicates left out?"
            )
        return acc

    def __reduce__(self):
        return (_accuracy_from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        return f"Accuracy({float(self):.4f} ± {self.std:.4f} over {self.spread_of})"

    __str__ = float.__repr__  # str() and f"{acc}" stay the plain number


def _accuracy_from_dict(data: dict) -> Accuracy:  # for pickle
    return Accuracy.from_dict(data)


def _accuracies(what: str, numbers: Sequence[float]) -> tuple[float, ...]:
    if isinstance(numbers, (str, bytes)) or not hasattr(numbers, "__len__"):
        raise TypeError(f"Accuracy: {what} must be a sequence of accuracies in [0, 1], got {type(numbers).__name__}")
    out = tuple(float(x) for x in numbers)
    if not out:
        raise ValueError(f"Accuracy: {what} is empty; expected at least one accuracy in [0, 1]")
    bad = [x for x in out if not 0.0 <= x <= 1.0]  # also catches NaN
    if bad:
        raise ValueError(f"Accuracy: {what} must be accuracies in [0, 1]; got {bad[:3]}")
    return out


def paired_gap(a: Accuracy, b: Accuracy) -> tuple[float, float]:
    """``(gap, spread)``: how far ``a``'s mean is above ``b``'s, and the sample standard deviation of the
    paired gaps (``a.replicates[i] - b.replicates[i]``, subset by subset or resample by resample).

    Raises TypeError unless both are :class:`Accuracy`, and ValueError if they were not measured on the same
    subsets or resamples, or have no spread (a single subset).
    """
    for name, acc in (("a", a), ("b", b)):
        if not isinstance(acc, Accuracy):
            raise TypeError(
                f"expected two Accuracy values (from compare_representations), but {name} is a {type(acc).__name__}: "
                "a plain number has no spread to compare against"
            )
        if acc.paired_on is None:
            raise ValueError(f"{name} = {acc!r} has no paired_on: without it nothing says which subsets or resamples it was measured on")
        if len(acc.replicates) < 2:
            raise ValueError(f"{name} = {acc!r} has no spread ({acc.spread_of}); measure it on 2 or more labelled subsets (repeats >= 2)")
    if a.paired_on != b.paired_on or len(a.replicates) != len(b.replicates):
        raise ValueError(
            "the two accuracies were not measured on the same subsets or resamples, so their gaps cannot be paired: "
            f"a on {a.paired_on!r} ({a.spread_of}), b on {b.paired_on!r} ({b.spread_of})"
        )
    gaps = np.subtract(a.replicates, b.replicates)
    return float(a) - float(b), float(np.std(gaps, ddof=1))


def beats(a: Accuracy, b: Accuracy) -> bool:
    """Whether ``a`` is better than ``b`` beyond the noise: its mean gap exceeds the spread of the paired gaps.

    The rule: take the gap between ``a`` and ``b`` on each labelled subset (the same subsets for both), and
    say "beats" only if the mean gap is larger than the standard deviation of those gaps. With 5 subsets that
    is a one-sided t-test at t > sqrt(5) = 2.2 (a gap this large arises by chance about 4% of the time). At
    100% of the labels there is one fit, and the gaps are taken on each bootstrap resample of the test set:
    their standard deviation is the standard error of the gap, so the rule there is the weaker z > 1 (about
    16% by chance).

    Raises TypeError for plain numbers, ValueError for accuracies measured on different subsets or
    resamples, or with no spread. See :func:`paired_gap` for the numbers and :func:`verdict` for words.
    """
    gap, spread = paired_gap(a, b)
    return gap > spread


def verdict(a: Accuracy, b: Accuracy) -> str:
    """``"beats"``, ``"is beaten by"`` or ``"within the spread of"``: ``a`` against ``b`` by :func:`beats`, for prose."""
    if beats(a, b):
        return "beats"
    if beats(b, a):
        return "is beaten by"
    return "within the spread of"


def verdict_table(
    rows: Mapping[str, Mapping[str, Mapping[str, Accuracy]]], ours: str
) -> dict[str, dict[str, dict[str, dict]]]:
    """Row ``ours`` of a :func:`compare_representations` result against each other row, cell by cell.

    Returns ``{other: {probe: {fraction: {"verdict", "gap", "gap_std"}}}}``: the :func:`verdict`, the
    gap of the means and the spread of the paired gaps (accuracy units). A cell without spread (one
    labelled subset) gets the verdict ``"no spread"`` and None for its numbers.
    """
    if ours not in rows:
        raise ValueError(f"verdict_table: no row {ours!r}; the rows are {list(rows)}")
    table: dict[str, dict[str, dict[str, dict]]] = {}
    for other in (name for name in rows if name != ours):
        table[other] = {}
        for probe, cells in rows[ours].items():
            table[other][probe] = {}
            for fraction, acc in cells.items():
                theirs = rows[other][probe][fraction]
                if len(acc.replicates) < 2 or len(theirs.replicates) < 2:
                    table[other][probe][fraction] = {"verdict": "no spread", "gap": None, "gap_std": None}
                    continue
                gap, spread = paired_gap(acc, theirs)
                table[other][probe][fraction] = {"verdict": verdict(acc, theirs), "gap": gap, "gap_std": spread}
    return table


def bootstrap_accuracies(correct: np.ndarray | torch.Tensor, *, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """The accuracy on each of ``resamples`` bootstrap resamples of a test set: (resamples,) float64.

    ``correct`` (N,) bool says which test images were classified right. Each resample draws N test images
    with replacement, by a generator seeded with ``seed``: the same seed and N give the same resamples,
    so the accuracies of two classifiers on one test set are paired resample by resample.
    """
    correct = correct.cpu() if isinstance(correct, torch.Tensor) else torch.from_numpy(np.asarray(correct))
    if correct.dim() != 1 or len(correct) == 0 or correct.dtype != torch.bool:
        raise ValueError(f"bootstrap_accuracies: expected a non-empty (N,) bool array, got shape {tuple(correct.shape)} {correct.dtype}")
    if not isinstance(resamples, int) or resamples < 2:
        raise ValueError(f"bootstrap_accuracies: resamples must be an int >= 2, got {resamples!r}")
    gen = torch.Generator().manual_seed(seed)
    hits = correct.to(torch.float64)
    n, chunk = len(correct), 100  # draw 100 resamples at a time: (100, N) indices at most in memory
    out = [hits[torch.randint(0, n, (min(chunk, resamples - i), n), generator=gen)].mean(1) for i in range(0, resamples, chunk)]
    return torch.cat(out).numpy()


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(np.ascontiguousarray(_numpy(torch.as_tensor(t)).astype(np.int64)).tobytes())
        h.update(b"|")
    return h.hexdigest()[:10]


def compare_representations(
    encoders: Mapping[str, nn.Module | None],
    train: ImageDataset,
    test: ImageDataset,
    *,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    probes: Sequence[str] = ("linear", "knn"),
    repeats: int = 5,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, dict[str, dict[str, Accuracy]]]:
    """Probe each representation at each label fraction; each accuracy comes with its spread.

    ``encoders`` maps a row name to an encoder, or to None for raw pixels.
    Returns ``{row: {probe: {str(fraction): Accuracy}}}``, e.g.
    ``rows["dae"]["linear"]["0.1"]``: an :class:`Accuracy`, a float (the mean)
    that also holds its spread.

    - Fractions below 1: the mean over ``repeats`` stratified labelled subsets
      (subset seeds 0 to repeats - 1, the same subsets for every row, so rows
      are paired), and the sample standard deviation over them.
    - Fraction 1: one fit on all the labels (both probes are deterministic);
      the spread is the standard deviation over ``bootstrap`` resamples of the
      test images (seeded by ``bootstrap_seed``, the same for every row), of
      the accuracy of the test predictions: nothing is refitted.

    Use :func:`beats` or :func:`verdict` to say whether one row is better than another.
    """
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probes {sorted(unknown)}; expected some of {sorted(PROBES)}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int (labelled subsets per fraction), got {repeats!r}")
    if not isinstance(bootstrap, int) or bootstrap < 2:
        raise ValueError(f"bootstrap must be an int >= 2 (resamples of the test set), got {bootstrap!r}")
    test_labels = _numpy(test.labels)
    labels_digest = _digest(train.labels, test.labels)
    # the labelled subsets of each fraction, drawn once and shared by every row
    subsets = {
        fraction: [stratified_subset(train.labels, fraction, seed=seed) for seed in (range(repeats) if fraction < 1 else range(1))]
        for fraction in fractions
    }
    rows: dict[str, dict[str, dict[str, Accuracy]]] = {}
    for name, encoder in encoders.items():
        if encoder is None:
            f_train, f_test = pixel_features(train), pixel_features(test)
        else:
            f_train, f_test = extract_features(encoder, train, device=device), extract_features(encoder, test, device=device)
        rows[name] = {}
        for probe in probes:
            rows[name][probe] = {}
            for fraction in fractions:
                correct = [PREDICTORS[probe](f_train[idx], train.labels[idx], f_test) == test_labels for idx in subsets[fraction]]
                if fraction < 1:
                    count = len(correct)
                    acc = Accuracy(
                        [float(np.mean(c)) for c in correct],
                        spread_of=f"{count} labelled subset{'s' if count > 1 else ''}",
                        paired_on=f"{count} stratified subsets of {float(fraction):g} of the labels (seeds 0-{count - 1}), labels #{labels_digest}",
                    )
                else:
                    acc = Accuracy(
                        [float(np.mean(correct[0]))],
                        replicates=bootstrap_accuracies(correct[0], resamples=bootstrap, seed=bootstrap_seed).tolist(),
                        spread_of=f"{bootstrap} bootstrap resamples of the {len(test_labels)} test images",
                        paired_on=f"{bootstrap} bootstrap resamples (seed {bootstrap_seed}) of the test images, labels #{labels_digest}",
                    )
                rows[name][probe][str(float(fraction))] = acc
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
