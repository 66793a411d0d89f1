"""Default settings per method and device: quick on a CPU, meaningful on a GPU.

A recipe says which data, network size and optimisation a method uses when
nobody says otherwise. The CPU recipe trains on the embedded digits for a
time budget; the GPU recipe trains on a real dataset for epochs. The CLI and
the chapters read them, so the same command is fast in CI and useful on Colab.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from .augment import ContrastiveViews
from .data import ImageDataset, load_dataset
from .evaluate import compare_representations, random_init_like
from .runtime import describe_runtime, get_device, seed_everything
from .train import fit
from .methods import (
    BYOL,
    DINO,
    MAE,
    Colorization,
    ContextEncoder,
    DeepCluster,
    DenoisingAutoencoder,
    CPC,
    Jigsaw,
    MoCo,
    RelativePosition,
    RotationPrediction,
    SimCLR,
    SplitBrain,
    SSLMethod,
    SuperResolution,
)

__all__ = ["Recipe", "default_recipe", "build_method", "contrastive_views", "pretrain_and_probe", "probed_encoder", "METHODS"]


@dataclass(frozen=True)
class Recipe:
    """How to pretrain one method (data, encoder widths, ``fit`` settings) and how to probe it.

    ``probe_data`` and ``probe_size`` name the labelled dataset the encoder is
    probed on (default: the pretraining data and size): the colour methods
    pretrain on colour photos and are probed on digits. ``probe_depth`` probes
    the first ``probe_depth`` layers of the encoder (its ``truncated``), the
    layer its chapter recommends; None probes the whole encoder.
    """

    data: str
    size: int | None
    widths: tuple[int, int]
    batch_size: int
    lr: float
    budget: float | None = None
    epochs: int | None = None
    probe_data: str | None = None
    probe_size: int | None = None
    probe_depth: int | None = None

    @property
    def probe_dataset(self) -> tuple[str, int | None]:
        """(name, size) of the dataset the encoder is probed on."""
        return (self.probe_data or self.data, self.probe_size if self.probe_data else self.size)


# method name -> (CPU recipe, GPU recipe)
_RECIPES: dict[str, tuple[Recipe, Recipe]] = {
    "dae": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=128, lr=2e-3, budget=60),
        # the seed report 000's encoder at full width, on CIFAR-10 (the report used Adam at 2e-4 with batches of 64)
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    # measured (50 s, one thread): random blocks inpainted best, probed at the whole encoder (layer 9)
    "context": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=128, lr=2e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    "superres": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=128, lr=2e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    "deepcluster": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=128, lr=2e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    # The spatial pretext tasks, probed at the layer where pretraining beat random init in our runs
    # (50 s on one thread): rotation at layer 6 (its last layers specialise in angles), relative
    # position and jigsaw at layer 3 (on centred digits a tile's position shows in its content, so
    # the deeper layers learn that shortcut; jigsaw's are worse than random init).
    "rotation": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=128, lr=1e-3, budget=60, probe_depth=6),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    "relpos": (
        Recipe(data="digits", size=32, widths=(32, 64), batch_size=128, lr=1e-3, budget=60, probe_depth=3),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    "jigsaw": (
        Recipe(data="digits", size=32, widths=(32, 64), batch_size=64, lr=3e-3, budget=60, probe_depth=3),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    # The colour methods pretrain on colour photo patches (CPU) or CIFAR-10 (GPU); on the CPU their
    # encoders are probed on digits through the lightness channel, at layer 3 (measured: the later
    # layers transfer from photos to digits no better than random init).
    "colorization": (
        Recipe(data="photos", size=32, widths=(32, 64), batch_size=64, lr=2e-3, budget=60,
               probe_data="digits", probe_size=32, probe_depth=3),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    "splitbrain": (
        Recipe(data="photos", size=32, widths=(32, 64), batch_size=64, lr=2e-3, budget=60,
               probe_data="digits", probe_size=32, probe_depth=3),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    # Contrastive: measured on digits (45 s, one thread, 2-core CPU under load): batches of 128 at
    # lr 3e-3 took SimCLR from 86.2% (random init) to 94.1% linear at 10% labels, MoCo to 93.1%.
    "simclr": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=128, lr=3e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=512, lr=1e-3, epochs=30),
    ),
    "moco": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=128, lr=3e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    # CPC cuts 8-pixel patches every 4 pixels: 24-pixel digits give a 5 x 5 grid (measured, 40 s,
    # one thread, under load: 93.1% linear at 10% against 91.4% at random init, 91.0% raw pixels)
    "cpc": (
        Recipe(data="digits", size=24, widths=(32, 64), batch_size=64, lr=2e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(32, 64), batch_size=128, lr=1e-3, epochs=30),
    ),
    # Self-distillation and masked modeling: BYOL's target momentum and DINO's teacher temperature are tuned on digits (see METHODS).
    # BYOL in batches of 64: no negatives, so a small batch loses nothing, and twice the steps fit in the budget
    # (measured at target momentum 0.9: 92.0% linear at 10% labels after 400 steps of 64, in 95 s on one loaded thread)
    "byol": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=64, lr=3e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    "dino": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=64, lr=1e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=30),
    ),
    # MAE's encoder is a Vision Transformer (widths unused): 16-pixel digits in 4 x 4 patches
    "mae": (
        Recipe(data="digits", size=16, widths=(32, 64), batch_size=128, lr=1e-3, budget=60),
        Recipe(data="cifar10", size=None, widths=(32, 64), batch_size=256, lr=1.5e-4, epochs=30)  # the paper's base rate at batch 256,
    ),
}

#: Sources whose images change meaning when mirrored (a flipped 2 is no digit).
_NO_FLIP = {"digits", "mnist", "svhn"}


def contrastive_views(train: ImageDataset) -> ContrastiveViews:
    """The two-view augmentation for ``train``: SimCLR's, without flips on digits and with
    crops of at least 30% of the image on images of 16 pixels or fewer (smaller crops miss the digit)."""
    size = train.image_shape[-1]
    return ContrastiveViews(
        size,
        flip_p=0.0 if train.name in _NO_FLIP else 0.5,
        crop_scale=(0.3, 1.0) if size <= 16 else (0.2, 1.0),
    )


#: What each CLI name builds: name -> function(train, widths) -> method, where ``train`` is the
#: pretraining ImageDataset (its channels set the encoder's; DeepCluster keeps its images).
#: The DAE masks half of each image's pixels: on digits it beat gaussian noise here.
METHODS: dict[str, Callable[[ImageDataset, tuple[int, int]], SSLMethod]] = {
    "dae": lambda train, widths: DenoisingAutoencoder(
        in_channels=train.image_shape[0], widths=widths, corruption="masking", noise_level=0.5
    ),
    "ae": lambda train, widths: DenoisingAutoencoder(in_channels=train.image_shape[0], widths=widths, corruption=None),
    "context": lambda train, widths: ContextEncoder(in_channels=train.image_shape[0], widths=widths, mask="random_block"),
    "superres": lambda train, widths: SuperResolution(in_channels=train.image_shape[0], widths=widths, factor=2),
    # the paper's loss: classification over ab bins with class rebalancing
    "colorization": lambda train, widths: Colorization(widths=widths, loss="classification"),
    "splitbrain": lambda train, widths: SplitBrain(widths=widths),
    "deepcluster": lambda train, widths: DeepCluster(train, widths=widths),
    "rotation": lambda train, widths: RotationPrediction(
        in_channels=train.image_shape[0], widths=widths, image_size=train.image_shape[-1]
    ),
    "relpos": lambda train, widths: RelativePosition(
        in_channels=train.image_shape[0], widths=widths, image_size=train.image_shape[-1]
    ),
    "jigsaw": lambda train, widths: Jigsaw(in_channels=train.image_shape[0], widths=widths, image_size=train.image_shape[-1]),
    # widths[0] is the patch encoder's width; CPC's encoder is its own (a grid of patch vectors)
    "cpc": lambda train, widths: CPC(in_channels=train.image_shape[0], image_size=train.image_shape[-1], width=widths[0]),
    "simclr": lambda train, widths: SimCLR(
        in_channels=train.image_shape[0], widths=widths, image_size=train.image_shape[-1], views=contrastive_views(train)
    ),
    "moco": lambda train, widths: MoCo(
        in_channels=train.image_shape[0], widths=widths, image_size=train.image_shape[-1], views=contrastive_views(train)
    ),
    # BYOL's target momentum for short CPU runs, measured on digits (batches of 64, one thread, linear probe at 10%
    # labels, random init 86.9%): after 250 steps 0.8 gave 90.3% and 0.9 86.9% (0.9 needs 400 steps for 92.0%);
    # in batches of 128 the paper-like 0.99 gave 84.4% after 400 steps: too slow a target for a short run
    "byol": lambda train, widths: BYOL(
        in_channels=train.image_shape[0], widths=widths, image_size=train.image_shape[-1], views=contrastive_views(train),
        momentum=0.8,
    ),
    "dino": lambda train, widths: DINO(
        in_channels=train.image_shape[0], widths=widths, image_size=train.image_shape[-1], views=contrastive_views(train),
        local_crops=2, local_scale=(0.1, 0.4) if train.image_shape[-1] <= 16 else (0.05, 0.4), teacher_temp=0.02,
    ),
    # MAE on digits first learns only the average digit (a plateau of some 500 steps, measured in the masked
    # autoencoders chapter); a smaller ViT than the package's default gets past it within the CPU budget (measured,
    # 60 s on one thread: about 2,000 steps, linear probe at 10% labels 87.5% against 76.6% for the same ViT at
    # random init; the default ViT got 422 steps under load and stayed at random-init level, 78.6% against 79.4%)
    "mae": lambda train, widths: MAE(
        in_channels=train.image_shape[0], image_size=train.image_shape[-1], patch_size=4, dim=64, depth=2, decoder_dim=32
    ),
}


def default_recipe(method: str, device: str | torch.device = "cpu", **overrides) -> Recipe:
    """The recipe of ``method`` for ``device`` (CPU: digits and a time budget; CUDA: a real dataset, epochs).

    Keyword ``overrides`` replace fields, e.g. ``default_recipe("dae", budget=30)``.
    """
    if method not in _RECIPES:
        raise ValueError(f"no recipe for {method!r}; known methods: {sorted(_RECIPES)}")
    cpu, gpu = _RECIPES[method]
    recipe = gpu if torch.device(device).type == "cuda" else cpu
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def build_method(name: str, train: ImageDataset, widths: tuple[int, int]) -> SSLMethod:
    """A fresh method by its CLI name (``"dae"``, ``"ae"``, ``"colorization"``, ...), for pretraining on ``train``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name](train, widths)


def probed_encoder(encoder: torch.nn.Module, depth: int | None) -> torch.nn.Module:
    """The part of ``encoder`` that is probed: its first ``depth`` layers (``encoder.truncated(depth)``), or all of it."""
    return encoder if depth is None else encoder.truncated(depth)


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
    repeats: int = 3,
    progress: bool = False,
) -> dict:
    """Pretrain method ``name`` by its ``recipe``, then probe it beside its baselines: what
    ``sslcourse pretrain NAME`` does and prints.

    ``recipe`` defaults to :func:`default_recipe` for ``device``. Each row of
    ``compared_with`` (other method names, e.g. ``("ae",)`` beside ``"dae"``) is
    pretrained the same way. ``baselines`` are some of ``"random_init"`` (the
    method's encoder at random initialisation, probed at the same layer) and
    ``"raw_pixels"``. Returns ``{"method", "data", "pretrain_seconds", "pretrain_steps",
    "runtime", "probe_data", "probe_layer", "rows"}`` where ``rows`` is
    :func:`~sslcourse.evaluate.compare_representations`' result, and also the
    trained ``"model"`` (not JSON: the CLI drops it).
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
    model = None
    for row in [name, *compared_with]:
        seed_everything(seed)
        method = build_method(row, train, recipe.widths)
        start = time.perf_counter()
        history = fit(method, train, budget=recipe.budget, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                      device=device, seed=seed, progress=progress)
        seconds[row] = time.perf_counter() - start
        steps[row] = len(history)
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
        "pretrain_seconds": round(seconds[name], 2),
        "pretrain_steps": steps[name],
        "runtime": describe_runtime(device),
        "probe_data": probe_name,
        "probe_layer": recipe.probe_depth if recipe.probe_depth is not None else "all",
        "rows": rows,
        "model": model,
    }
