"""Running a method by its recipe: build it, pretrain it, probe it beside its baselines.

The recipes themselves live in :mod:`sslcourse.registry`, one CPU and one GPU
recipe per method: quick on a CPU (the embedded digits, a fixed number of
steps), meaningful on a GPU (CIFAR-10, the papers' settings). The CLI and the
chapters read them through :func:`default_recipe`, so the same command is
fast in CI and useful on Colab.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Sequence

import torch
import torch.nn as nn

from .data import ImageDataset, load_dataset
from .evaluate import compare_representations, random_init_like, verdict_table
from .methods import SSLMethod
from .registry import REGISTRY, RUN_STEPS, Recipe, contrastive_views, method_spec
from .runtime import describe_runtime, get_device, seed_everything
from .train import History, fit

__all__ = [
    "Recipe",
    "default_recipe",
    "build_method",
    "contrastive_views",
    "pretrain_and_probe",
    "probed_encoder",
    "divergence",
    "TrainingDivergedError",
    "RecipeError",
    "BASELINES",
]


class RecipeError(ValueError):
    """A recipe (with the user's overrides) cannot build its method on its data, e.g. images too small for it."""


class TrainingDivergedError(FloatingPointError):
    """Pretraining blew up (the weights or the loss grew by orders of magnitude); the model was not probed."""


def default_recipe(method: str, device: str | torch.device = "cpu", **overrides) -> Recipe:
    """The recipe of ``method`` for ``device`` (CUDA: the GPU recipe; anything else: the CPU recipe).

    Keyword ``overrides`` replace fields, e.g. ``default_recipe("dae", steps=200)``;
    None values are ignored.
    """
    if method not in REGISTRY:
        raise ValueError(f"no recipe for {method!r}; known methods: {sorted(REGISTRY)}")
    recipe = method_spec(method).recipe(torch.device(device).type)
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def build_method(name: str, train: ImageDataset, recipe: Recipe | Sequence[int] | None = None) -> SSLMethod:
    """A fresh method by its registry name (``"dae"``, ``"ae"``, ``"colorization"``, ...), for pretraining on ``train``.

    ``recipe`` gives the encoder and the method's settings: a :class:`Recipe`,
    or the conv encoder's ``widths`` (the method's CPU recipe with those widths,
    as the chapters build them), or None (the CPU recipe). Constructor keywords
    come from the data (channels, image size, augmentation) and then from the
    recipe's ``settings``; :data:`~sslcourse.registry.RUN_STEPS` becomes the
    run's length in steps.
    """
    spec = method_spec(name)
    if recipe is None:
        recipe = spec.cpu
    elif not isinstance(recipe, Recipe):
        recipe = replace(spec.cpu, widths=tuple(recipe))
    if recipe.encoder not in spec.encoders:
        raise RecipeError(f"{name} takes the encoders {list(spec.encoders)}; the recipe names {recipe.encoder!r}")
    run_steps = recipe.run_steps(len(train))
    settings = {key: run_steps if value == RUN_STEPS else value for key, value in recipe.settings.items()}
    return spec.cls(**{**spec.inputs(train, recipe), **settings})


def probed_encoder(encoder: nn.Module, depth: int | None) -> nn.Module:
    """The part of ``encoder`` that is probed: its first ``depth`` layers (``encoder.truncated(depth)``), or all of it."""
    return encoder if depth is None else encoder.truncated(depth)


def weights_rms(module: nn.Module) -> float:
    """Root mean square of all of ``module``'s trainable weights: a scale to see them explode."""
    params = [p.detach().float() for p in module.parameters() if p.requires_grad]
    if not params:
        return 0.0
    total = sum(float(p.square().sum()) for p in params)
    return math.sqrt(total / sum(p.numel() for p in params))


#: How much the trainable weights' RMS, or the loss, may grow over a run before it counts as diverged.
#: Healthy runs of the CPU recipes changed the weights' RMS by well under 10x (measured: the ratios are
#: in the JSON of ``sslcourse pretrain``); a learning rate of 1e6 moves them by millions.
DIVERGENCE_FACTOR = 100.0


def divergence(history: History, rms_before: float, rms_after: float, factor: float = DIVERGENCE_FACTOR) -> str | None:
    """Why a finished run counts as diverged, or None if it does not.

    Diverged: weights that are not finite or whose RMS grew more than
    ``factor`` times, or a loss whose last steps (the mean of the last 10%,
    at most 10 steps) are above ``factor`` times its first ones.
    """
    if not math.isfinite(rms_after):
        return f"the weights became {rms_after}"
    if rms_before > 0 and rms_after > factor * rms_before:
        return f"the weights' root mean square grew from {rms_before:.3g} to {rms_after:.3g}"
    losses = [value for value in history.loss if value is not None]
    if len(losses) >= 2:
        k = max(1, min(10, len(losses) // 10))
        first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
        if not math.isfinite(last):
            return f"the loss became {last}"
        if first > 0 and last > factor * first:
            return f"the loss grew from {first:.3g} (first steps) to {last:.3g} (last steps)"
    return None


BASELINES = ("random_init", "raw_pixels")


def pretrain_and_probe(
    name: str,
    recipe: Recipe | None = None,
    *,
    device: str | torch.device | None = None,
    seed: int = 0,
    compared_with: Sequence[str] = (),
    baselines: Sequence[str] = BASELINES,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    probes: Sequence[str] = ("linear", "knn"),
    repeats: int = 5,
    progress: bool = False,
) -> dict:
    """Pretrain method ``name`` by its ``recipe``, then probe it beside its baselines: what
    ``sslcourse pretrain NAME`` does and prints.

    ``recipe`` defaults to :func:`default_recipe` for ``device``; all of it
    reaches :func:`~sslcourse.fit` (optimizer, learning rate, weight decay,
    schedule, warm-up, batch size, stopping rule). Each row of
    ``compared_with`` (other registry names, e.g. ``("ae",)`` beside
    ``"dae"``) is built with its own settings and pretrained the same way.
    ``baselines`` are some of ``"random_init"`` (the method's encoder at random
    initialisation, probed at the same layer) and ``"raw_pixels"``.

    Returns ``{"method", "data", "recipe", "pretrain_seconds", "pretrain_steps",
    "weights_growth", "runtime", "probe_data", "probe_layer", "rows", "verdicts"}`` where
    ``rows`` is :func:`~sslcourse.evaluate.compare_representations`' result
    (each cell an :class:`~sslcourse.evaluate.Accuracy`: the mean over
    ``repeats`` labelled subsets, with its spread), ``verdicts`` is
    :func:`~sslcourse.evaluate.verdict_table` of the method against every
    other row, ``weights_growth`` the factor by which the trainable weights'
    RMS changed, and also the trained ``"model"`` (not JSON: the CLI drops it).

    Raises:
        RecipeError: the recipe cannot build the method on its data.
        NonFiniteLossError: (from fit) the loss became NaN or infinite.
        TrainingDivergedError: the run blew up (see :func:`divergence`); nothing is probed.
    """
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}; expected some of {list(BASELINES)}")
    device = get_device(device)
    recipe = recipe if recipe is not None else default_recipe(name, device)
    train = load_dataset(recipe.data, "train", size=recipe.size)
    probe_name, probe_size = recipe.probe_dataset
    probe_train = load_dataset(probe_name, "train", size=probe_size)
    probe_test = load_dataset(probe_name, "test", size=probe_size)

    encoders: dict = {}
    seconds: dict[str, float] = {}
    steps: dict[str, int] = {}
    growth: dict[str, float] = {}
    model = None
    for row in [name, *compared_with]:
        # a comparison row keeps its own method settings (the plain autoencoder has no corruption)
        row_recipe = recipe if row == name else replace(recipe, settings=default_recipe(row, device).settings)
        seed_everything(seed)
        try:
            method = build_method(row, train, row_recipe)
        except (ValueError, TypeError) as error:
            raise RecipeError(f"cannot build {row} for {recipe.data} images of {tuple(train.image_shape)}: {error}") from error
        before = weights_rms(method)
        start = time.perf_counter()
        history = fit(method, train, **row_recipe.fit_arguments(), device=device, seed=seed, progress=progress)
        seconds[row] = time.perf_counter() - start
        after = weights_rms(method)
        reason = divergence(history, before, after)
        if reason is not None:
            raise TrainingDivergedError(f"{row} diverged after {len(history)} steps at lr {recipe.lr:g}: {reason}")
        steps[row] = len(history)
        growth[row] = after / before if before > 0 else float("nan")
        encoders[row] = probed_encoder(method.encoder, recipe.probe_depth)
        if row == name:
            model = method
            if "random_init" in baselines:
                encoders["random_init"] = probed_encoder(random_init_like(method.encoder, seed=seed), recipe.probe_depth)
    if "raw_pixels" in baselines:
        encoders["raw_pixels"] = None
    rows = compare_representations(encoders, probe_train, probe_test, fractions=fractions, probes=probes, repeats=repeats, device=device)
    return {
        "method": name,
        "data": recipe.data,
        "recipe": recipe.to_dict(),
        "pretrain_seconds": round(seconds[name], 2),
        "pretrain_steps": steps[name],
        "weights_growth": round(growth[name], 3),
        "runtime": describe_runtime(device),
        "probe_data": probe_name,
        "probe_layer": recipe.probe_depth if recipe.probe_depth is not None else "all",
        "rows": rows,
        "verdicts": verdict_table(rows, name),
        "model": model,
    }

