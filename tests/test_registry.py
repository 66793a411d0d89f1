"""The registry of methods and their recipes: one table, the whole optimisation reaching fit,
divergence detection, and every GPU recipe run for two steps on CPU (bf16) on CIFAR-10 files
written here in the real format."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torchvision

import sslcourse
from sslcourse import recipes
from sslcourse.nets import ConvEncoder, VisionTransformer
from sslcourse.recipes import build_method, default_recipe, divergence, pretrain_and_probe
from sslcourse.registry import PRETRAINABLE, REGISTRY, RUN_STEPS, Recipe, method_spec
from sslcourse.train import History

# the writer of CIFAR-10's pickled batches, and the torchvision subclass carrying their md5 sums
from test_data_sources import cifar10_with_our_md5s, register, write_cifar10

COURSE = ["dae", "context", "colorization", "splitbrain", "superres", "rotation", "relpos", "jigsaw", "deepcluster",
          "cpc", "simclr", "moco", "byol", "dino", "mae"]


# --------------------------------------------------------------------------- the table
def test_the_registry_lists_the_course_and_the_comparison_row():
    assert list(PRETRAINABLE) == COURSE
    assert set(REGISTRY) == {*COURSE, "ae"}
    assert REGISTRY["ae"].listed is False and REGISTRY["dae"].compared_with == ("ae",)
    for spec in REGISTRY.values():
        assert all(row in REGISTRY for row in spec.compared_with)
        assert issubclass(spec.cls, sslcourse.methods.SSLMethod), spec.name
        assert spec.summary


def test_the_cli_reads_its_choices_from_the_registry(capsys):
    from sslcourse import cli

    assert cli.main(["pretrain", "nosuchmethod"]) == 2
    err = capsys.readouterr().err
    assert "choose from " + ", ".join(repr(name) for name in PRETRAINABLE) in err
    assert not hasattr(cli, "COMPARED_WITH") and not hasattr(recipes, "METHODS") and not hasattr(recipes, "_RECIPES")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_cpu_recipes_stop_by_steps_on_small_data_and_gpu_recipes_by_epochs_on_cifar10(name):
    spec = method_spec(name)
    cpu, gpu = spec.cpu, spec.gpu
    assert cpu.steps is not None and cpu.budget is None and cpu.epochs is None, "CPU runs must not depend on the machine's speed"
    assert cpu.data in ("digits", "photos")
    assert gpu.data == "cifar10" and gpu.epochs is not None and gpu.budget is None
    assert cpu.encoder in spec.encoders and gpu.encoder in spec.encoders
    assert default_recipe(name, "cpu") == cpu and default_recipe(name, "cuda") == gpu
    assert default_recipe(name, "mps") == cpu
    assert gpu.warmup_steps < (gpu.epochs * (50_000 // gpu.batch_size)), "the warm-up must end before the run does"


def test_the_gpu_recipes_follow_the_papers_settings():
    gpu = {name: spec.gpu for name, spec in REGISTRY.items()}
    assert gpu["simclr"].settings["temperature"] == 0.5 and gpu["simclr"].encoder == "resnet18"
    assert gpu["moco"].settings["queue_size"] == 4096 and gpu["moco"].settings["temperature"] == 0.1
    assert gpu["byol"].settings["momentum"] == 0.996 and gpu["byol"].settings["momentum_steps"] == RUN_STEPS
    dino = gpu["dino"].settings
    assert (dino["warmup_teacher_temp"], dino["teacher_temp"], dino["student_temp"], dino["center_momentum"]) == (0.04, 0.07, 0.1, 0.9)
    assert gpu["dino"].optimizer == "adamw" and gpu["dino"].weight_decay == 0.04
    mae = gpu["mae"]
    assert mae.settings["mask_ratio"] == 0.75 and mae.weight_decay == 0.05 and mae.optimizer == "adamw"
    assert mae.lr == pytest.approx(1.5e-4 * mae.batch_size / 256)
    assert mae.settings["depth"] > REGISTRY["mae"].cpu.settings["depth"] and mae.settings["dim"] > REGISTRY["mae"].cpu.settings["dim"]
    rotation = gpu["rotation"]
    assert (rotation.optimizer, rotation.lr, rotation.weight_decay, rotation.batch_size, rotation.epochs) == ("sgd", 0.1, 5e-4, 128, 100)


def test_the_cpu_recipes_keep_the_settings_the_chapters_measured():
    """The chapters' live numbers depend on these: only the stopping rule changed."""
    cpu = {name: spec.cpu.settings for name, spec in REGISTRY.items()}
    assert cpu["dae"] == {"corruption": "masking", "noise_level": 0.5} and cpu["ae"] == {"corruption": None}
    assert cpu["byol"] == {"momentum": 0.8}
    assert cpu["dino"] == {"local_crops": 2, "teacher_temp": 0.02}
    assert cpu["mae"] == {"patch_size": 4, "dim": 64, "depth": 2, "decoder_dim": 32}
    assert cpu["colorization"] == {"loss": "classification"}
    simclr = default_recipe("simclr", "cpu")
    assert (simclr.data, simclr.size, simclr.widths, simclr.batch_size, simclr.lr) == ("digits", 16, (32, 64), 128, 3e-3)
    assert (simclr.optimizer, simclr.weight_decay, simclr.schedule, simclr.warmup_steps) == ("adamw", 0.0, "constant", 0)
    colour = default_recipe("colorization", "cpu")
    assert colour.probe_dataset == ("digits", 32) and colour.probe_depth == 3


def test_recipes_refuse_bad_values_naming_the_field():
    base = dict(data="digits", size=16, widths=(32, 64), batch_size=64, lr=1e-3, steps=10)
    Recipe(**base)
    for field, value in [("batch_size", 0), ("lr", float("nan")), ("lr", -1.0), ("steps", 0), ("optimizer", "lars"),
                         ("schedule", "step"), ("encoder", "vgg"), ("weight_decay", -1.0), ("warmup_steps", -1)]:
        with pytest.raises(ValueError, match=f"Recipe.{field}"):
            Recipe(**{**base, field: value})
    with pytest.raises(ValueError, match="stopping rule"):
        Recipe(**{**base, "steps": None})
    with pytest.raises(ValueError, match="cosine"):
        Recipe(**{**base, "steps": None, "budget": 5.0, "schedule": "cosine"})


def test_a_recipe_from_default_recipe_does_not_share_its_settings_with_the_registry():
    recipe = default_recipe("byol", "cpu")
    recipe.settings["momentum"] = 0.5
    assert REGISTRY["byol"].cpu.settings["momentum"] == 0.8


def test_overrides_and_the_printed_recipe():
    recipe = default_recipe("dae", "cpu", steps=7, lr=None)
    assert recipe.steps == 7 and recipe.lr == REGISTRY["dae"].cpu.lr
    text = repr(recipe)
    assert text.startswith("Recipe(data='digits', size=16,") and "steps=7" in text and "schedule" not in text
    assert recipe.to_dict()["widths"] == [32, 64]
    with pytest.raises(ValueError, match="known methods"):
        default_recipe("nosuchmethod")


@pytest.fixture(scope="module")
def digits16():
    return sslcourse.load_dataset("digits", "train", size=16).subset(torch.arange(256))


def test_build_method_applies_the_settings_and_the_chapters_widths_form(digits16):
    byol = build_method("byol", digits16, default_recipe("byol", "cpu"))
    assert byol.momentum == 0.8 and byol.momentum_steps is None
    from_widths = build_method("byol", digits16, (32, 64))  # what the chapters call
    assert from_widths.momentum == 0.8
    dino = build_method("dino", digits16, (32, 64))
    assert dino.teacher_temp == 0.02 and dino.local_crops == 2 and tuple(dino.local_views.crop_scale) == (0.1, 0.4)
    ae = build_method("ae", digits16, (32, 64))
    dae = build_method("dae", digits16, (32, 64))
    assert isinstance(ae.encoder, ConvEncoder) and ae.encoder.widths == dae.encoder.widths == (32, 64)
    with pytest.raises(ValueError, match="unknown method"):
        build_method("nosuch", digits16)


def test_run_steps_stands_for_the_length_of_the_run(digits16):
    recipe = dataclasses.replace(default_recipe("byol", "cpu"), settings={"momentum": 0.99, "momentum_steps": RUN_STEPS})
    assert build_method("byol", digits16, dataclasses.replace(recipe, steps=123)).momentum_steps == 123
    by_epochs = dataclasses.replace(recipe, steps=None, epochs=3, batch_size=64)
    assert build_method("byol", digits16, by_epochs).momentum_steps == 3 * (256 // 64)
    by_time = dataclasses.replace(recipe, steps=None, budget=5.0)
    assert build_method("byol", digits16, by_time).momentum_steps is None


def test_an_encoder_the_method_cannot_take_is_refused(digits16):
    with pytest.raises(recipes.RecipeError, match="encoders"):
        build_method("dae", digits16, dataclasses.replace(default_recipe("dae"), encoder="resnet18"))


def test_pretrain_and_probe_passes_the_whole_optimisation_to_fit(monkeypatch):
    calls = []
    real_fit = recipes.fit

    def spy(method, data, **kwargs):
        calls.append(kwargs)
        return real_fit(method, data, **kwargs)

    monkeypatch.setattr(recipes, "fit", spy)
    recipe = dataclasses.replace(default_recipe("dae", "cpu"), steps=3, optimizer="sgd", lr=1e-3, weight_decay=1e-4,
                                 schedule="cosine", warmup_steps=1, batch_size=32)
    result = pretrain_and_probe("dae", recipe, device="cpu", compared_with=("ae",), baselines=(), fractions=(0.1,),
                                probes=("linear",), repeats=1)
    assert len(calls) == 2  # the DAE and its comparison row, trained alike
    for kwargs in calls:
        for key, value in recipe.fit_arguments().items():
            assert kwargs[key] == value, key
    assert result["pretrain_steps"] == 3 and result["recipe"]["optimizer"] == "sgd"
    assert result["model"].config["corruption"] == "masking"
    assert set(result["rows"]) == {"dae", "ae"}


# --------------------------------------------------------------------------- divergence
def history_of(losses):
    return History(method="X", step=list(range(1, len(losses) + 1)), loss=list(losses), lr=[1e-3] * len(losses),
                   time=[0.1 * i for i in range(len(losses))])


def test_divergence_by_weights_or_loss_and_not_for_a_healthy_run():
    healthy = history_of([1.0 - 0.01 * i for i in range(50)])
    assert divergence(healthy, 0.05, 0.08) is None
    assert "root mean square grew from 0.05 to 6e+06" in divergence(healthy, 0.05, 6e6)
    assert "became nan" in divergence(healthy, 0.05, math.nan)
    exploding = history_of([0.5] * 20 + [1e3] * 20)
    assert "loss grew from 0.5" in divergence(exploding, 0.05, 0.06)
    assert divergence(history_of([]), 0.05, 0.06) is None


def test_a_huge_learning_rate_is_reported_as_diverged_and_not_probed(monkeypatch):
    probed = []
    monkeypatch.setattr(recipes, "compare_representations", lambda *a, **k: probed.append(1) or {})
    recipe = default_recipe("dae", "cpu", steps=3, lr=1e6)
    with pytest.raises((recipes.TrainingDivergedError, sslcourse.NonFiniteLossError), match="DenoisingAutoencoder|dae"):
        pretrain_and_probe("dae", recipe, device="cpu")
    assert probed == []


# --------------------------------------------------------------------------- GPU recipes, run on CPU
@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    """CIFAR-10 as torchvision reads it (pickled batches, md5 sums checked): 320 training images of 32 x 32."""
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root / "cifar10", per_batch=64)
    with pytest.MonkeyPatch.context() as patch:
        register(patch, "cifar10", cifar10_with_our_md5s(root / "cifar10"))
        patch.setenv("SSLCOURSE_DATA", str(root))
        yield sslcourse.load_dataset("cifar10", "train")


def full_size(encoder: torch.nn.Module, recipe) -> bool:
    if recipe.encoder == "resnet18":
        return isinstance(encoder, torchvision.models.ResNet)
    if recipe.encoder == "vit":
        return isinstance(encoder, VisionTransformer) and encoder.dim == recipe.settings["dim"] >= 192
    if isinstance(encoder, ConvEncoder):
        return encoder.widths == (96, 192)
    return True  # CPC's patch encoder: its width is checked below


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_gpu_recipe_trains_two_bf16_steps_on_cpu(name, cifar10):
    recipe = default_recipe(name, "cuda")
    assert recipe.data == "cifar10" and len(cifar10) == 320 and cifar10.image_shape == (3, 32, 32)
    torch.manual_seed(0)
    method = build_method(name, cifar10, recipe)
    assert full_size(method.encoder, recipe), f"{name}: {type(method.encoder).__name__} is not the recipe's full-size encoder"
    if name == "cpc":
        assert method.config["width"] == recipe.widths[0] == 64
    before = {k: p.detach().clone() for k, p in method.named_parameters() if p.requires_grad}
    arguments = {**recipe.fit_arguments(), "steps": 2, "epochs": None, "budget": None, "batch_size": 8}
    history = sslcourse.fit(method, cifar10, **arguments, device="cpu", precision="bf16", progress=False)
    assert history.precision == "bf16" and len(history) == 2
    assert all(math.isfinite(loss) for loss in history.loss), history.loss
    moved = [k for k, p in method.named_parameters() if p.requires_grad and not torch.equal(p.detach(), before[k])]
    assert moved, f"{name}: no weight moved in two steps"
    assert any(k.startswith("encoder.") for k in moved), f"{name}: the encoder did not move"
