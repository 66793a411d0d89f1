"""The skeleton every method shares (sslcourse.methods.base): hooks, momentum pairs, the recorded
configuration, argument checks, and every method's state round-tripping through its state_dict."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

import sslcourse
from sslcourse.augment import ContrastiveViews
from sslcourse.methods import (
    BYOL,
    CPC,
    DINO,
    MAE,
    Colorization,
    ContextEncoder,
    DeepCluster,
    DenoisingAutoencoder,
    Jigsaw,
    MoCo,
    RelativePosition,
    RotationPrediction,
    SimCLR,
    SplitBrain,
    SSLMethod,
    SuperResolution,
)
from sslcourse.methods.base import accuracy, check_number, encoder_channels, feature_dim, frozen_copy
from sslcourse.methods.clustering import deepcluster_augment
from sslcourse.nets import ConvEncoder

W = (8, 16)  # small encoders: these tests check plumbing, not representations


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data():
    subset = lambda ds: ds.subset(torch.arange(128))  # noqa: E731
    return {
        16: subset(sslcourse.load_dataset("digits", "train", size=16)),
        24: subset(sslcourse.load_dataset("digits", "train", size=24)),
        32: subset(sslcourse.load_dataset("digits", "train", size=32)),
        "photos": sslcourse.load_dataset("photos", "train", size=32).subset(torch.arange(0, 512, 4)),
    }


# name -> (build(data) -> method, the data it trains on); all fifteen methods, with their schedules and
# state switched on (BYOL's and DINO's cosine momentum, DINO's temperature warm-up, Colorization's counted prior)
METHODS = {
    "dae": (lambda d: DenoisingAutoencoder(widths=W, corruption="masking", noise_level=0.5), 16),
    "context": (lambda d: ContextEncoder(widths=W, adversarial=True), 16),
    "superres": (lambda d: SuperResolution(widths=W), 16),
    "colorization": (lambda d: Colorization(widths=W, loss="classification"), "photos"),
    "splitbrain": (lambda d: SplitBrain(widths=W), "photos"),
    "rotation": (lambda d: RotationPrediction(widths=W), 16),
    "relpos": (lambda d: RelativePosition(widths=W), 32),
    "jigsaw": (lambda d: Jigsaw(widths=W, num_permutations=10), 32),
    "deepcluster": (lambda d: DeepCluster(d[16], widths=W, num_clusters=8, min_recluster_steps=1), 16),
    "cpc": (lambda d: CPC(width=8, dim=16, context_dim=16), 24),
    "simclr": (lambda d: SimCLR(widths=W), 16),
    "moco": (lambda d: MoCo(widths=W, queue_size=96), 16),  # the pointer ends at 64, not back at 0
    "byol": (lambda d: BYOL(widths=W, momentum_steps=10), 16),
    "dino": (lambda d: DINO(widths=W, local_crops=1, warmup_teacher_temp=0.02, warmup_steps=5, momentum_steps=10), 16),
    "mae": (lambda d: MAE(dim=32, depth=1, heads=2, decoder_dim=16, decoder_depth=1, decoder_heads=2), 16),
}


def train_by_hand(method: SSLMethod, epochs) -> None:
    """What fit does, written out: for each epoch (a list of batches) the epoch hook, then for each
    batch training_step, backward, an optimizer step and after_step."""
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-2)
    for epoch, batches in enumerate(epochs):
        method.on_epoch_start(epoch)
        for x in batches:
            out = method.training_step((x, None))
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            method.after_step(out)


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and values, NaN equal to NaN (DeepCluster's NMI is NaN before a second clustering)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    same = a == b
    if a.is_floating_point():
        same |= a.isnan() & b.isnan()
    return bool(same.all())


@pytest.mark.parametrize("name", list(METHODS))
def test_every_tensor_a_method_needs_to_resume_round_trips_through_its_state_dict(name, data):
    build, source = METHODS[name]
    images = data[source].floats()
    torch.manual_seed(0)
    method = build(data)
    train_by_hand(method, [[images[:32]], [images[32:64]]])  # two epochs of one step: DeepCluster clusters twice
    state = method.state_dict()

    torch.manual_seed(1)  # another initialisation: everything must come from the state dict
    fresh = build(data)
    fresh.load_state_dict(state)  # strict: the same keys
    a, b = method.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if not identical(a[k], b[k])]
    assert not differ, f"{name}: {differ} differ after load_state_dict"
    assert all(identical(x, y) for x, y in zip(method.parameters(), fresh.parameters(), strict=True))
    assert all(identical(x, y) for x, y in zip(method.buffers(), fresh.buffers(), strict=True)), (
        f"{name}: a buffer is not in the state dict (non-persistent buffers must be rebuilt identically)"
    )

    # the next step of both gives the same loss, bit for bit
    losses = []
    for m in (method, fresh):
        torch.manual_seed(2)
        losses.append(m.training_step((images[64:96], None))["loss"].item())
    assert losses[0] == losses[1], f"{name}: next loss {losses[0]} before saving, {losses[1]} after loading"


@pytest.mark.parametrize("name", list(METHODS))
def test_no_hidden_state_between_a_step_and_after_step(name, data):
    build, source = METHODS[name]
    torch.manual_seed(0)
    method = build(data)
    train_by_hand(method, [[data[source].floats()[:16]]])
    hidden = [k for k in vars(method) if k.startswith("_pending")]
    assert not hidden, f"{name} keeps {hidden}; after_step(out) receives what it needs in out"


def test_schedule_counters_are_buffers_in_the_state_dict(data):
    for name in ("byol", "dino", "deepcluster"):
        method = METHODS[name][0](data)
        assert "step" in method.state_dict(), name
    assert {"queue", "queue_pointer"} <= set(METHODS["moco"][0](data).state_dict())
    assert "center" in METHODS["dino"][0](data).state_dict()
    assert {"bin_counts", "prior_fixed"} <= set(METHODS["colorization"][0](data).state_dict())
    assert {"assignments", "clusterings", "last_clustered", "nmi_prev"} <= set(METHODS["deepcluster"][0](data).state_dict())


# ------------------------------------------------------------------ hooks and momentum
def test_default_hooks_do_nothing():
    method = SimCLR(widths=W)
    assert method.after_step({"loss": torch.tensor(1.0)}) is None
    assert method.on_epoch_start(3) == []
    assert method.momentum_pairs() == []
    with pytest.raises(ValueError, match=r"SimCLR.update_momentum: momentum_pairs\(\) returns no \(online, target\) pair"):
        method.update_momentum(0.5)


class TwoTargets(SSLMethod):
    """A method with two momentum pairs, one with batch norm."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.head = nn.Linear(4, 2)
        self.target_encoder = frozen_copy(self.encoder)
        self.target_head = frozen_copy(self.head)

    def momentum_pairs(self):
        return [(self.encoder, self.target_encoder), (self.head, self.target_head)]


def test_update_momentum_moves_every_target_parameter_and_no_buffer():
    torch.manual_seed(0)
    method = TwoTargets()
    with torch.no_grad():
        for p in [*method.encoder.parameters(), *method.head.parameters()]:
            p.add_(torch.randn_like(p))
        method.target_encoder[1].running_mean.fill_(3.0)  # the target's own statistics
    targets = [*method.target_encoder.parameters(), *method.target_head.parameters()]
    onlines = [*method.encoder.parameters(), *method.head.parameters()]
    before = [t.clone() for t in targets]
    method.update_momentum(0.75)
    for old, new, online in zip(before, targets, onlines, strict=True):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)
        assert not new.requires_grad and new.grad_fn is None
    assert bool((method.target_encoder[1].running_mean == 3.0).all()), "buffers are not averaged"
    with pytest.raises(ValueError, match=r"momentum m must be in \[0, 1\], got 1.5"):
        method.update_momentum(1.5)


def test_update_momentum_refuses_pairs_that_do_not_match():
    method = TwoTargets()
    method.target_head = frozen_copy(nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="momentum pair 1: the online module has 2 parameters, its target 4"):
        method.update_momentum(0.9)


def test_frozen_copy_is_an_independent_copy_without_gradients():
    online = ConvEncoder(1, W)
    target = frozen_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    assert all(a.data_ptr() != b.data_ptr() and torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters()))


# ------------------------------------------------------------------ config
def test_every_method_records_its_constructor_arguments_as_json(data):
    for name, (build, _) in METHODS.items():
        config = build(data).config
        assert json.loads(json.dumps(config)) == config, name


def test_config_has_the_defaults_and_the_values_given():
    config = MoCo(widths=W, queue_size=64, temperature=0.1).config
    assert config["queue_size"] == 64 and config["temperature"] == 0.1
    assert config["momentum"] == 0.99 and config["widths"] == [8, 16] and config["views"] is None
    assert config["encoder"] is None
    assert MoCo(widths=W, queue_size=64).config != MoCo(widths=W, queue_size=128).config


def test_config_describes_objects_briefly(data):
    method = Jigsaw(ConvEncoder(1, W), permutations=torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1, 0]]))
    assert method.config["encoder"] == "<ConvEncoder>"
    assert method.config["permutations"] == "<Tensor int64 (2, 9)>"
    assert SimCLR(widths=W, views=ContrastiveViews(16)).config["views"] == "<ContrastiveViews>"
    deepcluster = DeepCluster(data[16], widths=W, num_clusters=8).config
    assert deepcluster["images"] == "<ImageDataset digits/train (128, 1, 16, 16)>"
    assert deepcluster["augment"] == f"<function {deepcluster_augment.__module__}.{deepcluster_augment.__qualname__}>"


def test_config_of_a_subclass_is_its_own_outermost_call():
    class Interrupting(DenoisingAutoencoder):
        def __init__(self, at, **kwargs):
            super().__init__(widths=W, corruption="masking", noise_level=0.5, **kwargs)
            self.at = at

    class Renamed(DenoisingAutoencoder):  # no constructor of its own: the parent's is recorded
        pass

    assert Interrupting(3, alpha=2.0).config == {"at": 3, "alpha": 2.0}
    assert Renamed(widths=W).config["widths"] == [8, 16]


def test_config_is_a_copy():
    method = SimCLR(widths=W)
    method.config["widths"].append(99)
    assert method.config["widths"] == [8, 16]


# ------------------------------------------------------------------ settings that would fail only in training
BAD_SETTINGS = [
    (DenoisingAutoencoder, dict(corruption="gaussian", noise_level=-0.1), r"noise_level \(the gaussian sigma\) must be a number >= 0, got -0.1"),
    (DenoisingAutoencoder, dict(corruption="masking", noise_level=1.5), r"noise_level \(the fraction of masking\) must be a number in \[0, 1\], got 1.5"),
    (DenoisingAutoencoder, dict(alpha=-1.0), r"alpha must be a number >= 0, got -1.0"),
    (DenoisingAutoencoder, dict(beta=float("nan")), r"beta must be a number >= 0, got nan"),
    (DenoisingAutoencoder, dict(in_channels=0), r"in_channels must be an int >= 1, got 0"),
    (ContextEncoder, dict(num_blocks=0), r"num_blocks must be an int >= 1, got 0"),
    (ContextEncoder, dict(adversarial=True, lambda_adv=-1), r"lambda_adv must be a number >= 0, got -1"),
    (Colorization, dict(loss="classification", grid_size=0), r"grid_size must be a number > 0, got 0"),
    (Colorization, dict(mix=1.5), r"mix must be a number in \[0, 1\], got 1.5"),
    (Colorization, dict(temperature=0.0), r"temperature must be a number > 0, got 0.0"),
    (RotationPrediction, dict(image_size=0), r"image_size must be an int >= 1, got 0"),
    (CPC, dict(image_size=6), r"patch_size must be an int in \[1, 6\], got 8"),
    (CPC, dict(stride=0), r"stride must be an int >= 1, got 0"),
    (SimCLR, dict(temperature=0.0), r"temperature must be a number > 0, got 0.0"),
    (SimCLR, dict(temperature=float("nan")), r"temperature must be a number > 0, got nan"),
    (SimCLR, dict(projection_layers=-1), r"projection_layers must be an int >= 0, got -1"),
    (MoCo, dict(momentum=1.5), r"momentum must be a number in \[0, 1\], got 1.5"),
    (MoCo, dict(momentum=-0.1), r"momentum must be a number in \[0, 1\], got -0.1"),
    (MoCo, dict(temperature=-0.2), r"temperature must be a number > 0, got -0.2"),
    (MoCo, dict(queue_size=0), r"queue_size must be an int >= 1, got 0"),
    (MoCo, dict(key_bn_splits=0), r"key_bn_splits must be an int >= 1, got 0"),
    (BYOL, dict(momentum=1.01), r"momentum must be a number in \[0, 1\], got 1.01"),
    (BYOL, dict(momentum_steps=0), r"momentum_steps must be an int >= 1 or None, got 0"),
    (BYOL, dict(momentum_steps=2.5), r"momentum_steps must be an int >= 1 or None, got 2.5"),
    (DINO, dict(teacher_temp=0), r"teacher_temp must be a number > 0, got 0"),
    (DINO, dict(student_temp=-0.1), r"student_temp must be a number > 0, got -0.1"),
    (DINO, dict(warmup_teacher_temp=0.0, warmup_steps=10), r"warmup_teacher_temp must be a number > 0 or None, got 0.0"),
    (DINO, dict(warmup_steps=-1), r"warmup_steps must be an int >= 0, got -1"),
    (DINO, dict(center_momentum=1.5), r"center_momentum must be a number in \[0, 1\], got 1.5"),
    (DINO, dict(momentum=-0.5), r"momentum must be a number in \[0, 1\], got -0.5"),
    (DINO, dict(local_crops=-1), r"local_crops must be an int >= 0, got -1"),
    (DINO, dict(local_scale=(0.5, 0.2)), r"local_scale must be \(low, high\) with 0 < low <= high <= 1, got \(0.5, 0.2\)"),
    (DINO, dict(global_scale=(0.0, 1.0)), r"global_scale must be \(low, high\) with 0 < low <= high <= 1"),
]


@pytest.mark.parametrize("cls, kwargs, message", BAD_SETTINGS, ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_settings_that_would_fail_only_in_training_are_refused_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


# ------------------------------------------------------------------ helpers and checks
@pytest.mark.parametrize(
    "kwargs, value, message",
    [
        (dict(low=0, low_open=True), 0, "x must be a number > 0, got 0"),
        (dict(low=0, high=1), 1.5, r"x must be a number in \[0, 1\], got 1.5"),
        (dict(low=0, high=1, low_open=True, high_open=True), 1.0, r"x must be a number in \(0, 1\), got 1.0"),
        (dict(low=1, integer=True), 2.0, "x must be an int >= 1, got 2.0"),
        (dict(low=1, integer=True, allow_none=True), 0, "x must be an int >= 1 or None, got 0"),
        (dict(high=3), 4, "x must be a number <= 3, got 4"),
        (dict(), float("inf"), "x must be a number, got inf"),
        (dict(), True, "x must be a number, got True"),
        (dict(), "0.5", "x must be a number, got '0.5'"),
    ],
)
def test_check_number_says_what_is_accepted_and_what_came(kwargs, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_number("x", value, **kwargs)


def test_check_number_returns_good_values():
    assert check_number("x", 0.5, low=0, high=1) == 0.5
    assert check_number("x", None, low=1, allow_none=True) is None
    assert check_number("x", 3, low=1, integer=True) == 3


def test_shared_helpers():
    encoder = ConvEncoder(3, W)
    assert encoder_channels(encoder, 1) == 3 and encoder_channels(None, 1) == 1
    assert feature_dim(encoder, 3, 16) == encoder(torch.zeros(1, 3, 16, 16)).flatten(1).shape[1]
    with pytest.raises(ValueError, match="cannot encode tiles of 6 x 6 pixels"):
        feature_dim(encoder, 3, 6, "tiles")
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])).item() == pytest.approx(2 / 3)


def test_public_names_stay_importable_where_they_were():
    from sslcourse.methods.contrastive import positive_accuracy  # noqa: F401
    from sslcourse.methods.distillation import DINOHead, cosine_momentum  # noqa: F401
    from sslcourse.methods.pretext import ROTATIONS, drop_color_channels, project_color, rotate, rotate_batch  # noqa: F401

    assert callable(rotate) and math.isclose(cosine_momentum(0, 0.9, 1.0, 10), 0.9)


def test_applied_steps_are_counted_on_the_host_and_reloaded_from_the_buffer():
    from sslcourse.methods import BYOL

    torch.manual_seed(0)
    byol = BYOL(widths=(8, 16), image_size=16, momentum=0.9, momentum_steps=10)
    for _ in range(3):
        byol.after_step({})
    assert byol.applied_steps == 3 and int(byol.step) == 3
    fresh = BYOL(widths=(8, 16), image_size=16, momentum=0.9, momentum_steps=10)
    assert fresh.applied_steps == 0
    fresh.load_state_dict(byol.state_dict())
    assert fresh.applied_steps == 3 and fresh.current_momentum() == byol.current_momentum()
    fresh.count_step()
    assert fresh.applied_steps == 4 and int(fresh.step) == 4
