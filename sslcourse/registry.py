"""Every method of the course in one table: its name, class, how it is built, its CPU and GPU recipes,
and the rows it is compared with.

The command line's choices (``sslcourse pretrain NAME``), the chapters' defaults
(through :mod:`sslcourse.recipes`) and the tests all read :data:`REGISTRY`;
nothing else lists the methods.

A :class:`Recipe` is everything a run needs besides the seed and the device:
the data, the encoder, the method's constructor settings and the whole
optimisation that :func:`sslcourse.fit` takes (optimizer, learning rate,
weight decay, schedule, warm-up, batch size, and the stopping rule).

- **CPU recipes** train on the embedded digits (or photo patches, for the colour
  methods) for a fixed number of steps, chosen so that a quiet 2-core CPU
  pretrains each method in about a minute (``benchmarks/cpu_steps.py`` measures
  the speeds; the figures are in the comments). A number of steps, not of
  seconds, so that the same command and seed give the same numbers on any
  machine, however busy.
- **GPU recipes** train on CIFAR-10 with the package's full-size encoders and
  follow each paper's CIFAR-10 settings where the paper gives them, cited in
  the comments; where it does not, the comment says so and what was chosen.
  ``fit`` has AdamW, Adam and SGD (with Nesterov momentum 0.9), a constant or
  cosine learning rate with linear warm-up, and a constant weight decay: a
  paper's LARS, AdamW betas or weight-decay schedule are replaced by the
  nearest of these, and the comment says which.

Importing this module is cheap (no torch): the command line checks its
arguments against it before loading anything heavy. The classes and networks
are looked up when a method is built.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # only for annotations: importing them would import torch
    from .augment import ContrastiveViews
    from .data import ImageDataset

__all__ = [
    "Recipe",
    "MethodSpec",
    "REGISTRY",
    "PRETRAINABLE",
    "RUN_STEPS",
    "ENCODERS",
    "method_spec",
    "contrastive_views",
]

#: A value of a recipe's ``settings`` that stands for the run's total number of optimizer steps
#: (from its steps, or its epochs and the data); used by the schedules that end with the run, such
#: as BYOL's and DINO's target momentum rising to 1. None when the run stops by a time budget only.
RUN_STEPS = "run_steps"

#: The encoders a recipe can name: the seed report's convolutional encoder with the recipe's
#: ``widths`` (``nets.ConvEncoder``), the CIFAR-stem ResNet-18 (``nets.resnet18_cifar``), or the
#: Vision Transformer that MAE builds from its settings.
ENCODERS = ("conv", "resnet18", "vit")

_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULES = ("constant", "cosine")
#: CIFAR-10's training images: the GPU recipes turn the papers' epochs of warm-up into steps with it.
_CIFAR10_TRAIN = 50_000


# --------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """How to pretrain one method (data, encoder, settings, the whole optimisation) and how to probe it.

    Data: ``data`` and ``size`` (the side images are resized to; None keeps
    the dataset's own). ``probe_data`` and ``probe_size`` name the labelled
    dataset the encoder is probed on (default: the pretraining data and size):
    the colour methods pretrain on colour photos and are probed on digits.
    ``probe_depth`` probes the first ``probe_depth`` layers of the encoder
    (its ``truncated``), the layer its chapter recommends; None probes the
    whole encoder.

    Model: ``encoder`` is one of :data:`ENCODERS`; ``widths`` are the
    convolutional encoder's (CPC's patch encoder takes ``widths[0]``);
    ``settings`` are the method's constructor keywords (e.g. BYOL's
    ``momentum``), where the value :data:`RUN_STEPS` stands for the run's
    length in steps.

    Optimisation, as :func:`sslcourse.fit` takes it: ``optimizer``, ``lr``,
    ``weight_decay``, ``schedule``, ``warmup_steps``, ``batch_size``, and the
    stopping rule: ``steps``, ``epochs`` and ``budget`` (seconds), whichever
    comes first; at least one of them.
    """

    data: str
    size: int | None
    widths: tuple[int, int]
    batch_size: int
    lr: float
    steps: int | None = None
    epochs: int | None = None
    budget: float | None = None
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    encoder: str = "conv"
    settings: Mapping[str, Any] = field(default_factory=dict)
    probe_data: str | None = None
    probe_size: int | None = None
    probe_depth: int | None = None

    def __post_init__(self) -> None:
        # a copy: a recipe returned by default_recipe must not share its settings with the registry's
        object.__setattr__(self, "settings", dict(self.settings))
        object.__setattr__(self, "widths", tuple(self.widths))
        for name in ("batch_size", "steps", "epochs", "size", "probe_size", "probe_depth"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"Recipe.{name} must be a positive int{' or None' if name != 'batch_size' else ''}, got {value!r}")
        for name in ("lr", "budget"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Recipe.{name} must be a positive, finite number, got {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"Recipe.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
            raise ValueError(f"Recipe.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        for name, allowed in (("optimizer", _OPTIMIZERS), ("schedule", _SCHEDULES), ("encoder", ENCODERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Recipe.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if len(self.widths) != 2:
            raise ValueError(f"Recipe.widths must be two ints (w1, w2), got {self.widths!r}")
        if self.steps is None and self.epochs is None and self.budget is None:
            raise ValueError("a Recipe needs a stopping rule: steps, epochs or budget (seconds)")
        if self.schedule == "cosine" and self.steps is None and self.epochs is None:
            raise ValueError("Recipe.schedule='cosine' needs steps or epochs, to know where the schedule ends")

    @property
    def probe_dataset(self) -> tuple[str, int | None]:
        """(name, size) of the dataset the encoder is probed on."""
        return (self.probe_data or self.data, self.probe_size if self.probe_data else self.size)

    def fit_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`sslcourse.fit` that this recipe sets: the whole optimisation and the stopping rule."""
        return {
            "steps": self.steps, "epochs": self.epochs, "budget": self.budget, "batch_size": self.batch_size,
            "lr": self.lr, "weight_decay": self.weight_decay, "optimizer": self.optimizer,
            "schedule": self.schedule, "warmup_steps": self.warmup_steps,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field, as JSON-able values (tuples become lists)."""

        def plain(value: Any) -> Any:
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            if isinstance(value, Mapping):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}

    def run_steps(self, num_images: int) -> int | None:
        """The optimizer steps of the whole run on ``num_images`` training images, or None when only a budget stops it.

        Each epoch is ``num_images // batch_size`` steps (at least 1), as fit's loader drops the last incomplete batch.
        """
        per_epoch = max(1, num_images // self.batch_size)
        lengths = [n for n in (self.steps, self.epochs * per_epoch if self.epochs is not None else None) if n is not None]
        return min(lengths) if lengths else None

    def __repr__(self) -> str:
        """The data, and the other fields where they differ from their defaults: a chapter's ``print(recipe)`` stays short."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.default is not MISSING:
                default = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = MISSING  # a required field: always shown
            if default is MISSING or value != default:
                shown.append(f"{f.name}={value!r}")
        return f"Recipe({', '.join(shown)})"


def _steps(epochs: float, batch_size: int, num_images: int = _CIFAR10_TRAIN) -> int:
    """``epochs`` passes over CIFAR-10's training images in steps of ``batch_size``: turns a paper's warm-up into steps."""
    return max(1, round(epochs * (num_images // batch_size)))


# --------------------------------------------------------------------------- building methods
def contrastive_views(train: "ImageDataset") -> "ContrastiveViews":
    """The two-view augmentation for ``train``: SimCLR's, without flips on digits and with
    crops of at least 30% of the image on images of 16 pixels or fewer (smaller crops miss the digit)."""
    from .augment import ContrastiveViews

    size = train.image_shape[-1]
    return ContrastiveViews(
        size,
        flip_p=0.0 if train.name in _NO_FLIP else 0.5,
        crop_scale=(0.3, 1.0) if size <= 16 else (0.2, 1.0),
    )


#: Sources whose images change meaning when mirrored (a flipped 2 is no digit).
_NO_FLIP = {"digits", "mnist", "svhn"}

# Each function below gives the constructor keywords that come from the data and the recipe (channels,
# image size, encoder, augmentation); the recipe's ``settings`` are added on top and win.
Inputs = Callable[["ImageDataset", Recipe], dict]


def _encoder(train: "ImageDataset", recipe: Recipe) -> dict:
    """``in_channels``, and ``encoder=`` a CIFAR-stem ResNet-18 when the recipe names it, else the conv encoder's ``widths``."""
    channels = train.image_shape[0]
    if recipe.encoder == "resnet18":
        from .nets import resnet18_cifar

        return {"in_channels": channels, "encoder": resnet18_cifar(channels)}
    return {"in_channels": channels, "widths": recipe.widths}


def _sized(train: "ImageDataset", recipe: Recipe) -> dict:
    return {**_encoder(train, recipe), "image_size": train.image_shape[-1]}


def _two_views(train: "ImageDataset", recipe: Recipe) -> dict:
    return {**_sized(train, recipe), "views": contrastive_views(train)}


def _multi_crop(train: "ImageDataset", recipe: Recipe) -> dict:
    # local crops of 5% of a 16-pixel digit are a few pixels of stroke: at least 10% there
    local = (0.1, 0.4) if train.image_shape[-1] <= 16 else (0.05, 0.4)
    return {**_two_views(train, recipe), "local_scale": local}


def _colour(train: "ImageDataset", recipe: Recipe) -> dict:
    return {"widths": recipe.widths}  # RGB in, through the Lab colour space


def _clusters(train: "ImageDataset", recipe: Recipe) -> dict:
    encoder = _encoder(train, recipe)
    encoder.pop("in_channels", None)  # DeepCluster reads the channels from the images it keeps
    return {"images": train, **encoder}


def _patch_grid(train: "ImageDataset", recipe: Recipe) -> dict:
    return {"in_channels": train.image_shape[0], "image_size": train.image_shape[-1], "width": recipe.widths[0]}


def _vit(train: "ImageDataset", recipe: Recipe) -> dict:
    return {"in_channels": train.image_shape[0], "image_size": train.image_shape[-1]}


# --------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class MethodSpec:
    """One method of the course: what ``sslcourse pretrain NAME`` trains and probes.

    ``class_name`` is the class in :mod:`sslcourse.methods` (:attr:`cls`);
    ``inputs`` gives the constructor keywords read from the training data and
    the recipe, to which the recipe's ``settings`` are added; ``cpu`` and
    ``gpu`` are the recipes; ``compared_with`` names the other rows trained
    beside it (the DAE beside the plain autoencoder); ``listed`` is False for
    a row that exists only to be compared with (the plain autoencoder).
    ``encoders`` are the recipe encoders the method can take.
    """

    name: str
    class_name: str
    summary: str
    inputs: Inputs
    cpu: Recipe
    gpu: Recipe
    compared_with: tuple[str, ...] = ()
    listed: bool = True
    encoders: tuple[str, ...] = ("conv",)

    @property
    def cls(self) -> type:
        """The method's class (imported on first use)."""
        from . import methods

        return getattr(methods, self.class_name)

    def recipe(self, device_type: str = "cpu") -> Recipe:
        """The GPU recipe for ``"cuda"``, the CPU recipe for anything else (a CPU, Apple's MPS)."""
        return self.gpu if device_type == "cuda" else self.cpu


def _chosen_gpu(**overrides) -> Recipe:
    """The GPU recipe of the methods whose papers give no CIFAR-10 settings: chosen here, not measured (no GPU
    was available while writing them). The seed report's encoder at full width (96, 192) on CIFAR-10; AdamW at
    1e-3 for batches of 256, a small decoupled weight decay, 2 epochs of warm-up, a cosine decay over 100 epochs."""
    base = dict(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=1e-3, epochs=100, optimizer="adamw",
                weight_decay=1e-4, schedule="cosine", warmup_steps=_steps(2, 256))
    return Recipe(**{**base, **overrides})


# The CPU recipes' steps: measured by benchmarks/cpu_steps.py (30-step runs, two torch threads, the fastest
# of several on a 2-core machine shared with other work) as steps per second, times 60 s, rounded.
_CPU = dict(data="digits", size=16, widths=(32, 64))

_SPECS = [
    # ----------------------------------------------------------------- reconstruction
    MethodSpec(
        "dae", "DenoisingAutoencoder", "denoising autoencoder (Vincent et al. 2008): restore masked pixels",
        inputs=_encoder,
        # The DAE masks half of each image's pixels: on digits it beat gaussian noise here.
        cpu=Recipe(**_CPU, batch_size=128, lr=2e-3, steps=490, settings={"corruption": "masking", "noise_level": 0.5}),
        # Vincent et al. give no CIFAR-10 settings. The seed report 000 trained this encoder at full width on
        # CIFAR-10 with Adam at 2e-4 in batches of 64 (its number of epochs is ours: 30).
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=64, lr=2e-4, epochs=30, optimizer="adam",
                   settings={"corruption": "masking", "noise_level": 0.5}),
        compared_with=("ae",),
    ),
    MethodSpec(
        "ae", "DenoisingAutoencoder", "plain autoencoder, no corruption: the row the DAE is compared with",
        inputs=_encoder,
        cpu=Recipe(**_CPU, batch_size=128, lr=2e-3, steps=490, settings={"corruption": None}),
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=64, lr=2e-4, epochs=30, optimizer="adam",
                   settings={"corruption": None}),
        listed=False,
    ),
    MethodSpec(
        "context", "ContextEncoder", "context encoder (Pathak et al. 2016): inpaint hidden blocks",
        inputs=_encoder,
        # measured (50 s, one thread): random blocks inpainted best, probed at the whole encoder (layer 9)
        cpu=Recipe(**_CPU, batch_size=128, lr=2e-3, steps=540, settings={"mask": "random_block"}),
        # Pathak et al. train on Paris StreetView and ImageNet, not CIFAR-10 (chosen: see _chosen_gpu)
        gpu=_chosen_gpu(settings={"mask": "random_block"}),
    ),
    MethodSpec(
        "colorization", "Colorization", "colorization (Zhang et al. 2016): predict ab colour from lightness",
        inputs=_colour,
        # The colour methods pretrain on colour photo patches; on the CPU their encoders are probed on digits
        # through the lightness channel, at layer 3 (measured: the later layers transfer from photos to digits
        # no better than random init). The paper's loss: classification over ab bins with class rebalancing.
        cpu=Recipe(data="photos", size=32, widths=(32, 64), batch_size=64, lr=2e-3, steps=500,
                   settings={"loss": "classification"}, probe_data="digits", probe_size=32, probe_depth=3),
        # Zhang et al. train on ImageNet, not CIFAR-10 (chosen: see _chosen_gpu); probed on CIFAR-10 itself
        gpu=_chosen_gpu(settings={"loss": "classification"}),
    ),
    MethodSpec(
        "splitbrain", "SplitBrain", "split-brain autoencoder (Zhang et al. 2017): L from ab and ab from L",
        inputs=_colour,
        cpu=Recipe(data="photos", size=32, widths=(32, 64), batch_size=64, lr=2e-3, steps=380,
                   probe_data="digits", probe_size=32, probe_depth=3),
        # Zhang et al. 2017 train on ImageNet and Places, not CIFAR-10 (chosen: see _chosen_gpu)
        gpu=_chosen_gpu(),
    ),
    MethodSpec(
        "superres", "SuperResolution", "super-resolution: restore the image from its half-resolution copy",
        inputs=_encoder,
        cpu=Recipe(**_CPU, batch_size=128, lr=2e-3, steps=620, settings={"factor": 2}),
        # no self-supervised paper to follow here (chosen: see _chosen_gpu)
        gpu=_chosen_gpu(settings={"factor": 2}),
    ),
    # ----------------------------------------------------------------- pretext tasks
    # The spatial pretext tasks, probed at the layer where pretraining beat random init in our runs
    # (50 s on one thread): rotation at layer 6 (its last layers specialise in angles), relative
    # position and jigsaw at layer 3 (on centred digits a tile's position shows in its content, so
    # the deeper layers learn that shortcut; jigsaw's are worse than random init).
    MethodSpec(
        "rotation", "RotationPrediction", "RotNet (Gidaris et al. 2018): which of 4 rotations was applied",
        inputs=_sized, encoders=("conv", "resnet18"),
        cpu=Recipe(**_CPU, batch_size=128, lr=1e-3, steps=290, probe_depth=6),
        # Gidaris et al. 2018, section 3.1 (CIFAR-10): a network-in-network, SGD with momentum 0.9, batches of
        # 128 images (each under all 4 rotations), lr 0.1, weight decay 5e-4, 100 epochs, the lr divided by 5
        # after epochs 30, 60 and 80. Here: the seed report's all-convolutional encoder at full width (3x3 and
        # 1x1 convolutions of 192 channels, close to their NIN; the package has no NIN), fit's SGD (Nesterov
        # momentum 0.9), and a cosine decay in place of the steps. Their best features were in the second of
        # four blocks; layer 6 of our 9 is the end of the second stage.
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=128, lr=0.1, epochs=100, optimizer="sgd",
                   weight_decay=5e-4, schedule="cosine", probe_depth=6),
    ),
    MethodSpec(
        "relpos", "RelativePosition", "relative position (Doersch et al. 2015): where is the second patch",
        inputs=_sized, encoders=("conv", "resnet18"),
        cpu=Recipe(data="digits", size=32, widths=(32, 64), batch_size=128, lr=1e-3, steps=1780, probe_depth=3),
        # Doersch et al. train on ImageNet, not CIFAR-10 (chosen: see _chosen_gpu), with the ResNet-18
        gpu=_chosen_gpu(encoder="resnet18"),
    ),
    MethodSpec(
        "jigsaw", "Jigsaw", "jigsaw puzzles (Noroozi and Favaro 2016): which permutation shuffled the tiles",
        inputs=_sized, encoders=("conv", "resnet18"),
        cpu=Recipe(data="digits", size=32, widths=(32, 64), batch_size=64, lr=3e-3, steps=900, probe_depth=3),
        # Noroozi and Favaro train on ImageNet, not CIFAR-10 (chosen: see _chosen_gpu), with the ResNet-18;
        # their 1,000 permutations of 9 tiles, reduced to the package's default 100 (as their ablation's smallest
        # set that still helped)
        gpu=_chosen_gpu(encoder="resnet18"),
    ),
    MethodSpec(
        "deepcluster", "DeepCluster", "DeepCluster (Caron et al. 2018): classify your own k-means clusters",
        inputs=_clusters, encoders=("conv", "resnet18"),
        cpu=Recipe(**_CPU, batch_size=128, lr=2e-3, steps=980),
        # Caron et al. 2018, implementation details (ImageNet; the paper has no CIFAR-10 pretraining): SGD with momentum 0.9,
        # lr 0.05, weight decay 1e-5, batches of 256; k-means every epoch on PCA-256 whitened features; k = 10,000
        # for ImageNet's 1,000 classes, so 10 clusters a class: 100 for CIFAR-10. AlexNet and VGG-16 there; the
        # ResNet-18 here. 200 epochs (theirs: 500 on ImageNet), a cosine decay (theirs: constant).
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=0.05, epochs=200, optimizer="sgd",
                   weight_decay=1e-5, schedule="cosine", encoder="resnet18",
                   settings={"num_clusters": 100, "pca_dim": 256}),
    ),
    # ----------------------------------------------------------------- contrastive
    MethodSpec(
        "cpc", "CPC", "contrastive predictive coding (van den Oord et al. 2018): predict patches below",
        inputs=_patch_grid,
        # CPC cuts 8-pixel patches every 4 pixels: 24-pixel digits give a 5 x 5 grid (measured, 40 s,
        # one thread, under load: 93.1% linear at 10% against 91.4% at random init, 91.0% raw pixels)
        cpu=Recipe(data="digits", size=24, widths=(32, 64), batch_size=64, lr=2e-3, steps=610),
        # van den Oord et al. 2018 and Henaff et al. 2020 pretrain on ImageNet, not CIFAR-10 (chosen: see
        # _chosen_gpu): 32-pixel images give a 7 x 7 grid; a patch encoder twice the CPU's width
        gpu=_chosen_gpu(widths=(64, 128)),
    ),
    # Contrastive: measured on digits (45 s, one thread, 2-core CPU under load): batches of 128 at
    # lr 3e-3 took SimCLR from 86.2% (random init) to 94.1% linear at 10% labels, MoCo to 93.1%.
    MethodSpec(
        "simclr", "SimCLR", "SimCLR (Chen et al. 2020): two views of an image against the rest of the batch",
        inputs=_two_views, encoders=("conv", "resnet18"),
        cpu=Recipe(**_CPU, batch_size=128, lr=3e-3, steps=550),
        # Chen et al. 2020, appendix B.9 (CIFAR-10): ResNet with a 3x3 stride-1 stem and no max pool (our
        # resnet18_cifar), crops and colour distortion without blur, temperature 0.5 (the best of 0.1, 0.5, 1),
        # batches of 256 to 4096, 100 to 1000 epochs, LARS at a learning rate of 0.5, 1.0 or 1.5, and otherwise
        # the ImageNet settings: weight decay 1e-6, 10 epochs of warm-up, cosine decay.
        # fit has no LARS, whose rates do not carry over to SGD: SGD at lightly's CIFAR-10 benchmark settings
        # (a common reproduction: 0.06 x batch/128, momentum 0.9, weight decay 5e-4, cosine, 200 epochs, batch
        # 512), with the paper's warm-up. Head 512 -> 128 (the paper's is as wide as the encoder, then 128).
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=512, lr=0.24, epochs=200, optimizer="sgd",
                   weight_decay=5e-4, schedule="cosine", warmup_steps=_steps(10, 512), encoder="resnet18",
                   settings={"temperature": 0.5, "projection_dim": 128, "hidden_dim": 512}),
    ),
    MethodSpec(
        "moco", "MoCo", "MoCo (He et al. 2020): a momentum key encoder and a queue of negatives",
        inputs=_two_views, encoders=("conv", "resnet18"),
        cpu=Recipe(**_CPU, batch_size=128, lr=3e-3, steps=830),
        # He et al. 2020 pretrain on ImageNet (K = 65,536, m = 0.999, T = 0.07, SGD lr 0.03 for batches of 256,
        # weight decay 1e-4); the paper has no CIFAR-10 settings. These are those of the MoCo authors' CIFAR-10
        # Colab demo (facebookresearch/moco, colab/moco_cifar10_demo.ipynb, a kNN-monitored reproduction, not
        # the paper): ResNet-18, SGD lr 0.06 for batches of 512, momentum 0.9, weight decay 5e-4, cosine over
        # 200 epochs, no warm-up, a linear 128-d head, K = 4096, m = 0.99, T = 0.1, batch norm in 8 splits.
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=512, lr=0.06, epochs=200, optimizer="sgd",
                   weight_decay=5e-4, schedule="cosine", encoder="resnet18",
                   settings={"projection_dim": 128, "mlp_head": False, "queue_size": 4096, "momentum": 0.99,
                             "temperature": 0.1, "key_bn_splits": 8}),
    ),
    # ----------------------------------------------------------------- self-distillation
    MethodSpec(
        "byol", "BYOL", "BYOL (Grill et al. 2020): predict a momentum target's projection of another view",
        inputs=_two_views, encoders=("conv", "resnet18"),
        # BYOL in batches of 64: no negatives, so a small batch loses nothing, and twice the steps fit in the
        # time. Its target momentum for short CPU runs, measured on digits (batches of 64, one thread, linear
        # probe at 10% labels, random init 86.9%): after 250 steps 0.8 gave 90.3% and 0.9 86.9% (0.9 needs 400
        # steps for 92.0%); in batches of 128 the paper-like 0.99 gave 84.4% after 400 steps: too slow a
        # target for a short run.
        cpu=Recipe(**_CPU, batch_size=64, lr=3e-3, steps=790, settings={"momentum": 0.8}),
        # Grill et al. 2020, section 3.3 (ImageNet; CIFAR-10 appears there only for transfer): target
        # momentum 0.996 rising to 1 on a cosine over the run, projector and predictor 4096 -> 256, LARS at
        # 0.2 x batch/256 with weight decay 1.5e-6, 10 epochs of warm-up, cosine decay, 1000 epochs.
        # fit has no LARS: SGD at lightly's CIFAR-10 benchmark settings (see simclr), the paper's warm-up.
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=512, lr=0.24, epochs=200, optimizer="sgd",
                   weight_decay=5e-4, schedule="cosine", warmup_steps=_steps(10, 512), encoder="resnet18",
                   settings={"momentum": 0.996, "momentum_steps": RUN_STEPS, "projection_dim": 256,
                             "hidden_dim": 4096}),
    ),
    MethodSpec(
        "dino", "DINO", "DINO (Caron et al. 2021): a student matches a centered, sharpened momentum teacher",
        inputs=_multi_crop, encoders=("conv", "resnet18"),
        # DINO's teacher temperature for short CPU runs was tuned on digits (0.02 against the paper's 0.04 to
        # 0.07); two local crops keep a step cheap.
        cpu=Recipe(**_CPU, batch_size=64, lr=1e-3, steps=500, settings={"local_crops": 2, "teacher_temp": 0.02}),
        # Caron et al. 2021, section 3.2 (ImageNet; no CIFAR-10 pretraining in the paper): AdamW at
        # 0.0005 x batch/256 after 10 epochs of linear warm-up, cosine decay; weight decay 0.04 rising to 0.4
        # on a cosine (fit's is constant: 0.04 here); teacher temperature warmed up from 0.04 to 0.07 over the
        # first 30 epochs, student 0.1, center momentum 0.9, teacher momentum 0.996 to 1 on a cosine; crops of
        # (0.4, 1) and (0.05, 0.4) of the area; head 2048 -> 256 -> K prototypes. K = 65,536 there for
        # ImageNet; 4096 here for CIFAR-10 (chosen). 6 local crops (the paper's 2 x 224 + 6 x 96 setting; ours
        # are resized to the global size). The ResNet-18, 200 epochs (chosen).
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=256, lr=5e-4, epochs=200, optimizer="adamw",
                   weight_decay=0.04, schedule="cosine", warmup_steps=_steps(10, 256), encoder="resnet18",
                   settings={"out_dim": 4096, "hidden_dim": 2048, "bottleneck_dim": 256, "local_crops": 6,
                             "global_scale": (0.4, 1.0), "local_scale": (0.05, 0.4), "student_temp": 0.1,
                             "warmup_teacher_temp": 0.04, "teacher_temp": 0.07, "warmup_steps": _steps(30, 256),
                             "center_momentum": 0.9, "momentum": 0.996, "momentum_steps": RUN_STEPS}),
    ),
    # ----------------------------------------------------------------- masked modeling
    MethodSpec(
        "mae", "MAE", "masked autoencoder (He et al. 2022): restore 75% hidden patches from the rest",
        inputs=_vit, encoders=("vit",),
        # MAE's encoder is a Vision Transformer (widths unused): 16-pixel digits in 4 x 4 patches. MAE on
        # digits first learns only the average digit (a plateau of some 500 steps, measured in the masked
        # autoencoders chapter); a smaller ViT than the package's default gets past it within a minute
        # (measured, 60 s on one thread: about 2,000 steps, linear probe at 10% labels 87.5% against 76.6% for
        # the same ViT at random init; the default ViT got 422 steps under load and stayed at random-init level).
        cpu=Recipe(**_CPU, batch_size=128, lr=1e-3, steps=1770, encoder="vit",
                   settings={"patch_size": 4, "dim": 64, "depth": 2, "decoder_dim": 32}),
        # He et al. 2022, appendix A.1 (ImageNet; no CIFAR-10 in the paper): mask ratio 0.75, AdamW at
        # 1.5e-4 x batch/256 with betas (0.9, 0.95) (fit's AdamW keeps torch's (0.9, 0.999)), weight decay 0.05,
        # 40 epochs of warm-up, cosine decay, 800 epochs; loss on normalised pixels. The encoder: ViT-Tiny's
        # width (192, 12 blocks, 3 heads; Touvron et al. 2021) on 4-pixel patches (an 8 x 8 grid), a 4-block
        # decoder of width 128 (the paper's is 8 x 512 for ViT-L; chosen), 200 epochs (chosen).
        gpu=Recipe(data="cifar10", size=None, widths=(96, 192), batch_size=512, lr=1.5e-4 * 512 / 256, epochs=200,
                   optimizer="adamw", weight_decay=0.05, schedule="cosine", warmup_steps=_steps(40, 512), encoder="vit",
                   settings={"patch_size": 4, "dim": 192, "depth": 12, "heads": 3, "decoder_dim": 128,
                             "decoder_depth": 4, "decoder_heads": 4, "mask_ratio": 0.75, "norm_pix_loss": True}),
    ),
]

#: name -> :class:`MethodSpec`, in the order of the course.
REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}

#: The names ``sslcourse pretrain`` takes, in the order of the course.
PRETRAINABLE: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.listed)


def method_spec(name: str) -> MethodSpec:
    """The registry's entry for ``name``, or a ValueError that lists the names."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; expected one of {list(REGISTRY)}")
    return REGISTRY[name]
