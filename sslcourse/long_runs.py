"""The long runs: encoders pretrained for minutes instead of seconds, shipped with the package.

A chapter's live run pretrains for about a minute, enough to see a method
learn but not to see what it can do. ``benchmarks/long_runs.py`` pretrains
every method of the course with its CPU recipe for about five minutes (one
thread of a 2-core CPU), with seeds 0, 1 and 2, and ships each encoder's weights in
``sslcourse/pretrained/`` beside a manifest that says how it was made (recipe,
steps, seconds, machine, versions), its sha256, and how it probes beside its
two baselines (the same encoder at random init, and the raw pixels)::

    encoder = sslcourse.pretrained("simclr", seed=0)   # the encoder in eval mode, its checksum checked
    sslcourse.long_runs.pretrained_info("simclr", seed=0)   # its manifest entry
    sslcourse.long_runs.summarize("simclr")                # mean and spread over the seeds of every probe cell

The weights are the encoder's ``state_dict`` (floating tensors in fp16: the
files are small) saved with ``torch.save``. The accuracies in the manifest were
measured on exactly these fp16 weights, on the CPU, so re-probing a shipped
encoder (:func:`reprobe`) gives the same numbers.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import statistics
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from .data import load_dataset
from .evaluate import compare_representations, random_init_like
from .recipes import build_method, pretrain_and_probe, probed_encoder
from .registry import PRETRAINABLE, Recipe

__all__ = [
    "PACKAGE_FOLDER",
    "PretrainedError",
    "pretrained",
    "pretrained_info",
    "manifest",
    "available",
    "summarize",
    "reprobe",
    "probe_rows",
    "default_repeats",
    "fresh_encoder",
    "save_encoder_weights",
    "load_encoder_weights",
    "write_manifest",
    "sha256_of",
    "run_name",
    "accuracy_record",
]

#: Where the shipped weights and their manifest live (package data).
PACKAGE_FOLDER = Path(__file__).with_name("pretrained")
MANIFEST_FILE = "manifest.json"
#: The manifest's layout; a reader refuses another.
FORMAT = 1


class PretrainedError(ValueError):
    """A long-run checkpoint cannot be given: unknown name or seed, a missing or changed file, an unreadable manifest."""


# --------------------------------------------------------------------------- names and files
def run_name(method: str, seed: int) -> str:
    """The name of one long run, also its file's stem: ``run_name("simclr", 0) == "simclr-seed0"``."""
    return f"{method}-seed{seed}"


def _folder(folder: str | os.PathLike | None) -> Path:
    return PACKAGE_FOLDER if folder is None else Path(folder)


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the manifest
def manifest(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest of the long runs in ``folder`` (default: the package's).

    ``{"format": 1, "checkpoints": {run_name: entry}}``; with no manifest file
    yet, no checkpoints. Each entry holds:

    - ``method``, ``seed``, ``file``, ``sha256``, ``bytes``: what ships;
    - ``recipe`` (the :class:`~sslcourse.registry.Recipe`'s fields), ``steps``,
      ``seconds`` (of training, summed over resumed calls), ``final_loss``,
      ``resumed_from_step`` (0 unless the last call continued a killed run);
    - ``machine`` (platform, CPU count, torch threads, load averages over 1, 5
      and 15 minutes at the start and end), ``package_version``,
      ``torch_version``, ``finished`` (UTC);
    - ``probe`` (fractions, probes, repeats, data, size, layer),
      ``probe_seconds``, and ``rows``: ``{row: {probe: {fraction: cell}}}``
      for the method and its baselines ``random_init`` and ``raw_pixels``,
      each cell :func:`accuracy_record`'s ``{"mean", "std", "values", "spread_of"}``.
    """
    path = _folder(folder) / MANIFEST_FILE
    if not path.exists():
        return {"format": FORMAT, "checkpoints": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PretrainedError(f"cannot read the long-run manifest {path}: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("checkpoints"), dict):
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise PretrainedError(f"{path} is not a long-run manifest of format {FORMAT} (found format {found!r})")
    return data


def write_manifest(data: Mapping[str, Any], folder: str | os.PathLike | None = None) -> Path:
    """Write the manifest atomically (a temporary file, then ``os.replace``): a kill never leaves half a file.

    Entries are written in the course's order of methods, then by seed, so that diffs stay small.
    """
    folder = _folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    order = {name: i for i, name in enumerate(PRETRAINABLE)}
    entries = sorted(data["checkpoints"].items(), key=lambda kv: (order.get(kv[1]["method"], len(order)), kv[1]["method"], kv[1]["seed"]))
    text = json.dumps({**data, "format": FORMAT, "checkpoints": dict(entries)}, indent=1, allow_nan=False) + "\n"
    path = folder / MANIFEST_FILE
    tmp = folder / (MANIFEST_FILE + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def available(folder: str | os.PathLike | None = None) -> list[tuple[str, int]]:
    """The (method, seed) pairs the manifest lists, in the course's order."""
    order = {name: i for i, name in enumerate(PRETRAINABLE)}
    pairs = [(e["method"], e["seed"]) for e in manifest(folder)["checkpoints"].values()]
    return sorted(pairs, key=lambda p: (order.get(p[0], len(order)), p[0], p[1]))


def _what_exists(pairs: list[tuple[str, int]]) -> str:
    if not pairs:
        return "none has been made yet (run benchmarks/long_runs.py)"
    seeds: dict[str, list[int]] = {}
    for method, seed in pairs:
        seeds.setdefault(method, []).append(seed)
    return ", ".join(f"{m} (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})" for m, s in seeds.items())


def pretrained_info(name: str, seed: int = 0, *, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest entry of the long run of method ``name`` with ``seed`` (a copy).

    Raises:
        PretrainedError: no such run; the message lists those that exist.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a method's name (a str such as 'simclr'), got {type(name).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    entries = manifest(folder)["checkpoints"]
    entry = entries.get(run_name(name, seed))
    if entry is None:
        pairs = available(folder)
        if name not in PRETRAINABLE:
            why = f"{name!r} is not a method of the course (methods: {', '.join(PRETRAINABLE)})"
        elif not any(method == name for method, _ in pairs):
            why = f"no long run of {name!r} ships"
        else:
            why = f"no long run of {name!r} with seed {seed}"
        raise PretrainedError(f"{why}; long runs in {_folder(folder)}: {_what_exists(pairs)}")
    return json.loads(json.dumps(entry))


# --------------------------------------------------------------------------- the weights
def fresh_encoder(name: str, recipe: Recipe) -> nn.Module:
    """The encoder that method ``name`` builds with ``recipe`` (on its training data), at random init.

    The global random state is left as it was.
    """
    train = load_dataset(recipe.data, "train", size=recipe.size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_method(name, train, recipe).encoder


def save_encoder_weights(encoder: nn.Module, path: str | os.PathLike) -> Path:
    """Save ``encoder``'s state_dict to ``path`` (atomically), floating tensors in fp16.

    A tensor whose values do not fit in fp16 (beyond its range of +-65504) is
    kept in fp32. Loading (:func:`load_encoder_weights`) casts back to the
    module's own dtypes.
    """
    state = {}
    for key, value in encoder.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point():
            half = value.half()
            value = half if bool(torch.isfinite(half).all()) else value.float()
        state[key] = value.clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights saved by :func:`save_encoder_weights` into ``encoder`` (strictly: every key must match)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise PretrainedError(f"{path} is not a readable weights file ({type(err).__name__}: {err})") from None
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise PretrainedError(f"{path} does not fit a {type(encoder).__name__}: {str(err).splitlines()[0]}") from None
    return encoder


def _recipe_of(entry: Mapping[str, Any]) -> Recipe:
    known = {f.name for f in fields(Recipe)}
    extra = set(entry["recipe"]) - known
    if extra:
        raise PretrainedError(f"{run_name(entry['method'], entry['seed'])} was made with recipe fields this sslcourse lacks: {sorted(extra)}")
    return Recipe(**entry["recipe"])


def pretrained(name: str, seed: int = 0, *, probed: bool = False, folder: str | os.PathLike | None = None) -> nn.Module:
    """The encoder of the long run of method ``name`` with ``seed``, in eval mode, on the CPU.

    Built as the method builds it with the run's recipe (the CPU recipe, with
    more steps), its weights loaded from the shipped file after checking the
    file's sha256 against the manifest. ``probed=True`` gives the part the
    manifest's accuracies were measured on (the first ``recipe.probe_depth``
    layers where the recipe names a depth; otherwise the whole encoder).

    Raises:
        PretrainedError: unknown name or seed (the message lists what exists), a
            missing weights file, or one whose sha256 differs from the manifest's.
    """
    folder = _folder(folder)
    entry = pretrained_info(name, seed, folder=folder)
    path = folder / entry["file"]
    if not path.is_file():
        raise PretrainedError(f"{path} is listed in {folder / MANIFEST_FILE} but missing; reinstall sslcourse, or rerun "
                              f"benchmarks/long_runs.py --methods {name} --seeds {seed}")
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        raise PretrainedError(f"{path} has sha256 {digest}, but the manifest says {entry['sha256']}: the file was changed "
                              f"or damaged. Reinstall sslcourse, or rerun benchmarks/long_runs.py --methods {name} --seeds {seed}")
    recipe = _recipe_of(entry)
    encoder = load_encoder_weights(fresh_encoder(name, recipe), path).eval()
    return probed_encoder(encoder, recipe.probe_depth).eval() if probed else encoder


# --------------------------------------------------------------------------- probing
def accuracy_record(accuracy: float) -> dict[str, Any]:
    """One probe cell as JSON: ``{"mean": float(accuracy)}``, and where the accuracy carries them
    (:func:`~sslcourse.evaluate.compare_representations` returns an ``Accuracy``, a float that knows
    its spread) its ``std`` (None when there is no spread), ``values`` and ``spread_of``. The bootstrap
    replicates behind the spread at 100% of the labels are left out: a thousand numbers a cell."""
    record: dict[str, Any] = {"mean": float(accuracy)}
    std = getattr(accuracy, "std", None)
    if std is not None:
        record["std"] = float(std) if math.isfinite(std) else None
    values = getattr(accuracy, "values", None)
    if values is not None and not callable(values):
        record["values"] = [float(v) for v in values]
    spread_of = getattr(accuracy, "spread_of", None)
    if isinstance(spread_of, str):
        record["spread_of"] = spread_of
    return record


def default_repeats() -> int:
    """The labelled subsets per fraction that ``sslcourse pretrain`` probes with (its ``repeats`` default)."""
    return inspect.signature(pretrain_and_probe).parameters["repeats"].default


def probe_rows(
    name: str,
    encoder: nn.Module,
    recipe: Recipe,
    *,
    seed: int = 0,
    baselines: bool = True,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    probes: Sequence[str] = ("linear", "knn"),
    repeats: int | None = None,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Probe ``encoder`` (method ``name``'s, made by ``recipe``) as ``sslcourse pretrain`` does, on the CPU.

    At the recipe's probe layer, on its probe data's test split, with
    :func:`~sslcourse.evaluate.compare_representations`; with ``baselines``,
    beside the same encoder at random init (seeded with ``seed``) and the raw
    pixels; ``repeats`` labelled subsets per fraction below 1 (default: as
    many as ``sslcourse pretrain`` takes, :func:`default_repeats`). Returns
    ``{row: {probe: {str(fraction): accuracy_record}}}``.
    """
    repeats = default_repeats() if repeats is None else repeats
    probe_name, probe_size = recipe.probe_dataset
    train = load_dataset(probe_name, "train", size=probe_size)
    test = load_dataset(probe_name, "test", size=probe_size)
    encoders: dict[str, nn.Module | None] = {name: probed_encoder(encoder, recipe.probe_depth)}
    if baselines:
        encoders["random_init"] = probed_encoder(random_init_like(encoder, seed=seed), recipe.probe_depth)
        encoders["raw_pixels"] = None
    rows = compare_representations(encoders, train, test, fractions=fractions, probes=probes, repeats=repeats, device="cpu")
    return {row: {probe: {fraction: accuracy_record(acc) for fraction, acc in cells.items()} for probe, cells in probed.items()}
            for row, probed in rows.items()}


def reprobe(
    name: str,
    seed: int = 0,
    *,
    fractions: Sequence[float] = (0.1,),
    probes: Sequence[str] = ("linear",),
    folder: str | os.PathLike | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Probe the shipped encoder again, as the manifest's entry was probed (same layer, data, repeats),
    without its baselines: ``{probe: {str(fraction): accuracy_record}}``, to compare with the entry's
    ``rows[name]``. Defaults to the one cell a quick check needs: linear at 10% of the labels."""
    entry = pretrained_info(name, seed, folder=folder)
    encoder = pretrained(name, seed, folder=folder)
    rows = probe_rows(name, encoder, _recipe_of(entry), seed=seed, baselines=False, fractions=fractions, probes=probes,
                      repeats=entry["probe"]["repeats"])
    return rows[name]


# --------------------------------------------------------------------------- over seeds
def summarize(name: str, *, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """Mean and spread over the seeds of every probe cell of method ``name``'s long runs.

    Returns ``{"method", "seeds", "steps", "seconds", "rows"}`` where ``rows``
    is ``{row: {probe: {fraction: {"mean", "std", "values"}}}}`` for the method
    and its baselines: ``values`` the seeds' accuracies (each the mean over its
    labelled subsets), ``mean`` their mean, ``std`` their sample standard
    deviation (n - 1), or None with a single seed. ``seconds`` is the mean
    pretraining time.

    Raises:
        PretrainedError: no long run of ``name``, or its runs differ in recipe or probing (they are not seeds of one experiment).
    """
    entries = [e for e in manifest(folder)["checkpoints"].values() if e["method"] == name]
    if not entries:
        raise PretrainedError(f"no long run of {name!r}; long runs in {_folder(folder)}: {_what_exists(available(folder))}")
    entries.sort(key=lambda e: e["seed"])
    first = entries[0]
    for e in entries[1:]:
        for key, what in (("recipe", lambda x: x["recipe"]), ("probing", lambda x: x["probe"]),
                          ("torch threads", lambda x: x.get("machine", {}).get("torch_threads"))):
            if what(e) != what(first):
                raise PretrainedError(f"the long runs of {name} differ in {key} between seeds {first['seed']} and {e['seed']}: "
                                      "rerun them alike before summarising")
    rows: dict[str, Any] = {}
    for row, probed in first["rows"].items():
        rows[row] = {}
        for probe, cells in probed.items():
            rows[row][probe] = {}
            for fraction in cells:
                values = [e["rows"][row][probe][fraction]["mean"] for e in entries]
                rows[row][probe][fraction] = {
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else None,
                    "values": values,
                }
    return {
        "method": name,
        "seeds": [e["seed"] for e in entries],
        "steps": first["steps"],
        "seconds": statistics.fmean(e["seconds"] for e in entries),
        "rows": rows,
    }
