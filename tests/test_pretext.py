"""sslcourse.methods.pretext: rotation prediction, relative position, jigsaw puzzles."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import sslcourse
from sslcourse.evaluate import extract_features
from sslcourse.methods.base import SSLMethod
from sslcourse.methods.pretext import (
    ROTATIONS,
    Jigsaw,
    RelativePosition,
    RotationPrediction,
    drop_color_channels,
    project_color,
    rotate,
    rotate_batch,
)
from sslcourse.nets import ConvEncoder

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
WIDTHS = (8, 16)  # small encoders: these tests check plumbing, not representations


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # small forward passes: one thread is as fast, and robust on a busy 2-core box
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------- rotations
def test_four_quarter_turns_give_the_image_back():
    x = torch.rand(3, 2, 12, 12, generator=gen())
    y = x
    for _ in range(4):
        y = rotate(y, 90)
    assert torch.equal(y, x)
    assert torch.equal(rotate(rotate(x, 90), 270), x)
    assert torch.equal(rotate(x, 180), x.flip(-1).flip(-2))
    assert torch.equal(rotate(x, 0), x) and torch.equal(rotate(x, 360), x)


def test_rotation_is_counter_clockwise():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 8] = 1.0  # right of the centre
    assert rotate(x, 90)[0, 0, 0, 4] == 1.0, "a quarter turn counter-clockwise moves it to the top"
    y = rotate(x, 45)[0, 0]  # resampled: the mass moves up and to the right
    r, c = divmod(int(y.argmax()), 9)
    assert r < 4 and c > 4, (r, c)


def test_rotation_by_45_resamples_smoothly():
    # a centred disk is (nearly) unchanged by any rotation
    yy, xx = torch.meshgrid(torch.arange(16.0) - 7.5, torch.arange(16.0) - 7.5, indexing="ij")
    disk = ((yy**2 + xx**2) < 25).float().view(1, 1, 16, 16)
    assert (rotate(disk, 45) - disk).abs().mean() < 0.05
    assert torch.allclose(rotate(rotate(disk, 45), 45), rotate(disk, 90), atol=0.6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("num_rotations", [2, 4, 8])
def test_rotate_batch_layout_and_labels(num_rotations, device):
    b = 3
    x = torch.rand(b, 1, 16, 16, generator=gen()).to(device)
    rotated, labels = rotate_batch(x, num_rotations)
    assert rotated.shape == (b * num_rotations, 1, 16, 16) and rotated.device == x.device
    assert labels.dtype == torch.int64 and labels.device == x.device
    assert labels.tolist() == list(range(num_rotations)) * b
    for k in range(b):
        for r, angle in enumerate(ROTATIONS[num_rotations]):
            assert torch.equal(rotated[k * num_rotations + r], rotate(x[k : k + 1], angle)[0])
            if angle % 90 == 0:  # exact quarter turns, undone exactly
                assert torch.equal(torch.rot90(rotated[k * num_rotations + r], -int(angle // 90), dims=(-2, -1)), x[k])


def test_rotate_batch_two_rotations_on_non_square_images():
    x = torch.rand(2, 3, 8, 12, generator=gen())
    rotated, labels = rotate_batch(x, 2)
    assert torch.equal(rotated[1], x[0].flip(-1).flip(-2)) and labels.tolist() == [0, 1, 0, 1]


def test_rotate_errors():
    with pytest.raises(ValueError, match="num_rotations must be one of \\[2, 4, 8\\], got 3"):
        rotate_batch(torch.rand(2, 1, 8, 8), 3)
    with pytest.raises(ValueError, match="needs square images; got H x W = 8 x 12"):
        rotate_batch(torch.rand(2, 1, 8, 12), 4)
    with pytest.raises(ValueError, match=r"rotate expects a float tensor \(B, C, H, W\); got torch.float32 of shape \(8, 8\)"):
        rotate(torch.rand(8, 8), 90)


# ----------------------------------------------------------------- colour defenses
def test_drop_color_channels_keeps_one_channel_per_image():
    x = torch.rand(64, 3, 8, 8, generator=gen())
    y = drop_color_channels(x, noise_ratio=0.01, generator=gen(1))
    same = torch.stack([(y[:, c] == x[:, c]).all(dim=(1, 2)) for c in range(3)], 1)  # (B, 3)
    assert same.sum(1).tolist() == [1] * 64, "exactly one channel kept per image"
    assert len(set(same.float().argmax(1).tolist())) == 3, "which one is random"
    kept = x[same]  # (64, 8, 8), image by image
    replaced = y[~same]  # (128, 8, 8): the two replaced channels of each image, image by image
    ref = kept.repeat_interleave(2, 0)
    torch.testing.assert_close(replaced.mean((1, 2)), ref.mean((1, 2)), atol=0.01, rtol=0)
    assert (replaced.std((1, 2)) < 0.05 * ref.std((1, 2))).all()


def test_drop_color_channels_errors():
    with pytest.raises(ValueError, match="colour images \\(C >= 2\\); got 1 channel"):
        drop_color_channels(torch.rand(2, 1, 4, 4))


def test_project_color_removes_the_green_magenta_axis():
    x = torch.rand(4, 3, 5, 5, generator=gen())
    y = project_color(x)
    a = torch.tensor([-1.0, 2.0, -1.0]).view(1, 3, 1, 1)
    assert (y * a).sum(1).abs().max() < 1e-6
    torch.testing.assert_close(project_color(y), y)  # a projection
    gray = torch.rand(2, 1, 5, 5).expand(2, 3, 5, 5)
    torch.testing.assert_close(project_color(gray), gray)  # gray has no green-magenta component
    with pytest.raises(ValueError, match=r"RGB images \(B, 3, H, W\); got \(2, 1, 5, 5\)"):
        project_color(torch.rand(2, 1, 5, 5))


# ----------------------------------------------------------------- methods
METHODS = {
    "rotation": lambda **kw: RotationPrediction(widths=WIDTHS, image_size=16, **kw),
    "rotation8": lambda **kw: RotationPrediction(widths=WIDTHS, image_size=16, num_rotations=8, **kw),
    "relative": lambda **kw: RelativePosition(widths=WIDTHS, image_size=32, **kw),
    "relative_jitter": lambda **kw: RelativePosition(widths=WIDTHS, image_size=32, gap=0, jitter=1, max_shift=2, **kw),
    "jigsaw": lambda **kw: Jigsaw(widths=WIDTHS, image_size=32, num_permutations=30, **kw),
    "jigsaw_shift": lambda **kw: Jigsaw(widths=WIDTHS, image_size=32, num_permutations=30, gap=0, jitter=1, max_shift=2, **kw),
}
SIZES = {"rotation": 16, "rotation8": 16, "relative": 32, "relative_jitter": 32, "jigsaw": 32, "jigsaw_shift": 32}


class Untouchable:
    """Labels that fail loudly if a method reads them."""

    def __getattr__(self, name):
        raise AssertionError(f"the method read the labels (.{name})")

    def __len__(self):
        raise AssertionError("the method read the labels (len)")

    def __getitem__(self, item):
        raise AssertionError("the method read the labels ([])")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f"the method read the labels ({func.__name__})")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", METHODS)
def test_training_step_loss_gradients_and_no_labels(name, device):
    torch.manual_seed(0)
    method = METHODS[name]().to(device)
    assert isinstance(method, SSLMethod) and isinstance(method.encoder, nn.Module)
    size = SIZES[name]
    x = torch.rand(8, 1, size, size, generator=gen()).to(device)
    for labels in (torch.full((8,), -1, device=device), Untouchable()):
        method.zero_grad(set_to_none=True)
        out = method.training_step((x, labels))
        loss = out["loss"]
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert 0.0 <= float(out["accuracy"]) <= 1.0
        loss.backward()
        grads = [p.grad for p in method.encoder.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), "gradients reach every encoder weight"
        assert any(g.abs().sum() > 0 for g in grads)


def test_initial_loss_is_about_log_classes():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 32, 32, generator=gen())
    for method, classes in ((RelativePosition(widths=WIDTHS), 8), (Jigsaw(widths=WIDTHS, num_permutations=30), 30)):
        with torch.no_grad():
            loss = float(method.training_step((x, None))["loss"])
        assert abs(loss - math.log(classes)) < 0.5 * math.log(classes), (type(method).__name__, loss)


@pytest.mark.parametrize("name", ["rotation", "relative", "jigsaw"])
def test_encoder_encodes_whole_images(name):
    method = METHODS[name]()
    images = torch.randint(0, 256, (5, 1, 32, 32), dtype=torch.uint8)
    feats = extract_features(method.encoder, images, device="cpu")
    assert feats.shape == (5, 10 * 8 * 8)
    assert extract_features(method.encoder.truncated(6), images, device="cpu").shape == (5, 16 * 8 * 8)


def test_forward_shapes():
    rot = RotationPrediction(widths=WIDTHS, image_size=16)
    assert rot(torch.rand(3, 1, 16, 16)).shape == (3, 4)
    rel = RelativePosition(widths=WIDTHS)
    assert rel.tile_size == 8
    assert rel(torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)).shape == (3, 8)
    jig = Jigsaw(widths=WIDTHS, num_permutations=24)
    assert jig.permutations.shape == (24, 9) and jig.num_permutations == 24
    assert jig(torch.rand(3, 9, 1, 8, 8)).shape == (3, 24)


def test_jigsaw_tiles_are_encoded_separately():
    """A context-free network: changing one tile changes only that tile's features."""
    jig = Jigsaw(widths=WIDTHS, num_permutations=10).eval()
    captured = []
    handle = jig.head.register_forward_hook(lambda module, args, out: captured.append(args[0].detach()))
    tiles = torch.rand(2, 9, 1, 8, 8, generator=gen())
    changed = tiles.clone()
    changed[:, 4] = torch.rand(2, 1, 8, 8, generator=gen(1))
    with torch.no_grad():
        jig(tiles), jig(changed)
    handle.remove()
    a, b = (f.view(2, 9, -1) for f in captured)
    differs = (a - b).abs().flatten(2).amax(-1) > 0  # (2, 9)
    assert differs[:, 4].all() and not differs[:, [0, 1, 2, 3, 5, 6, 7, 8]].any()


def test_color_input_uses_the_color_defense():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=gen())
    for defense in ("drop", "project", None):
        method = RelativePosition(in_channels=3, widths=WIDTHS, color_defense=defense)
        assert torch.isfinite(method.training_step((x, None))["loss"])
    with pytest.raises(ValueError, match="color_defense must be one of \\['drop', 'project'\\] or None, got 'gray'"):
        RelativePosition(color_defense="gray")


def test_custom_encoder_is_used():
    encoder = ConvEncoder(1, (4, 8), out_channels=3)
    method = Jigsaw(encoder, num_permutations=10)
    assert method.encoder is encoder
    assert method.head.layers[1].in_features == 9 * 3 * 2 * 2


def test_method_errors():
    with pytest.raises(ValueError, match="built for 16 x 16 images; got 32 x 32"):
        RotationPrediction(widths=WIDTHS, image_size=16).training_step((torch.rand(2, 1, 32, 32), None))
    with pytest.raises(ValueError, match="cannot encode tiles \\(image_size 32, gap 2, jitter 1\\) of 6 x 6 pixels.*divisible by 4"):
        Jigsaw(widths=WIDTHS, gap=2, jitter=1)
    with pytest.raises(ValueError, match="leave tiles of"):
        RelativePosition(widths=WIDTHS, image_size=16, gap=4, jitter=1)
    with pytest.raises(ValueError, match="num_rotations must be one of \\[2, 4, 8\\], got 6"):
        RotationPrediction(num_rotations=6)
    for method in (RotationPrediction, RelativePosition, Jigsaw):
        with pytest.raises(ValueError, match="max_shift must be an int >= 0, got -1"):
            method(widths=WIDTHS, max_shift=-1)



def test_methods_accept_replacement_functions():
    """The hooks a lab plugs its own functions into: rotate_fn, pair_fn, permutations and shuffle_fn."""
    from sslcourse import patches

    calls = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls.append((name, args[1:], kwargs))
            return fn(*args, **kwargs)
        return wrapped

    torch.manual_seed(0)
    rot = RotationPrediction(widths=WIDTHS, image_size=16, num_rotations=2, rotate_fn=spy("rotate", rotate_batch))
    assert torch.isfinite(rot.training_step((torch.rand(4, 1, 16, 16), None))["loss"])
    rel = RelativePosition(widths=WIDTHS, gap=2, jitter=0, pair_fn=spy("pairs", patches.relative_position_pairs))
    assert torch.isfinite(rel.training_step((torch.rand(4, 1, 32, 32), None))["loss"])
    perms = patches.jigsaw_permutations(12, seed=3).int()
    jig = Jigsaw(widths=WIDTHS, permutations=perms, shuffle_fn=spy("shuffle", patches.shuffle_tiles))
    assert jig.num_permutations == 12 and jig.head.layers[-1].out_features == 12
    assert jig.permutations.dtype == torch.int64 and torch.equal(jig.permutations, perms.long())
    assert torch.isfinite(jig.training_step((torch.rand(4, 1, 32, 32), None))["loss"])
    assert [c[0] for c in calls] == ["rotate", "pairs", "shuffle"]
    assert calls[0][1] == (2,) and calls[1][2] == {"gap": 2, "jitter": 0}
    assert torch.equal(calls[2][1][0], jig.permutations)
    # the defaults are the package's functions
    assert RotationPrediction(widths=WIDTHS).rotate_fn is rotate_batch
    assert RelativePosition(widths=WIDTHS).pair_fn is patches.relative_position_pairs
    assert Jigsaw(widths=WIDTHS, num_permutations=5).shuffle_fn is patches.shuffle_tiles


def test_jigsaw_rejects_bad_permutation_sets():
    with pytest.raises(ValueError, match=r"int tensor \(P, 9\) with P >= 2; got \(3, 4\)"):
        Jigsaw(widths=WIDTHS, permutations=torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="got dtype torch.float32"):
        Jigsaw(widths=WIDTHS, permutations=torch.arange(9.0).repeat(2, 1))
    with pytest.raises(ValueError, match=r"row 1 \(\[0, 0, 2, 3, 4, 5, 6, 7, 8\]\) is not a permutation of 0..8"):
        Jigsaw(widths=WIDTHS, permutations=torch.tensor([list(range(9)), [0, 0, 2, 3, 4, 5, 6, 7, 8]]))
    with pytest.raises(ValueError, match="some rows repeat"):
        Jigsaw(widths=WIDTHS, permutations=torch.arange(9).repeat(3, 1))


# ----------------------------------------------------------------- short training
@pytest.fixture(scope="module")
def digits_subsets():
    torch.manual_seed(0)
    index = torch.randperm(1437)[:256]
    return {size: sslcourse.load_dataset("digits", "train", size=size).subset(index) for size in (16, 32)}


@pytest.mark.parametrize(
    "name, steps, lr",
    [("rotation", 30, 3e-3), ("relative", 40, 3e-3), ("jigsaw", 30, 3e-3)],
)
def test_short_fit_reduces_the_loss(name, steps, lr, digits_subsets):
    torch.manual_seed(0)
    method = METHODS[name]()
    history = sslcourse.fit(method, digits_subsets[SIZES[name]], steps=steps, batch_size=64, lr=lr, device="cpu", progress=False)
    first, last = sum(history.loss[:5]) / 5, sum(history.loss[-5:]) / 5
    assert last < 0.8 * first, f"{name}: loss {first:.3f} -> {last:.3f} in {steps} steps"


# ----------------------------------------------------------------- learning (slow)
# Each method pretrains on the 1,437 train digits with its CPU default for a fixed
# number of steps (35-40 s each on the 2-core box, one thread; deterministic on one
# machine), then a linear probe on 10% of the labels (mean of 3 subsets, test split)
# compares the layer where the method helps with the same layer at random init.
# Measured over pretraining seeds 0-2: rotation, truncated(6): +1.8 to +3.3 points;
# relative position, truncated(3): +1.4 to +3.3; jigsaw, truncated(3): +1.4 to +1.9.
# The assertions sit below the smallest gain measured.
LEARNING = {
    # name: (method, image size, fit settings, steps, probed depth, required gain)
    "rotation": (RotationPrediction, 16, dict(batch_size=128, lr=1e-3), 80, 6, 0.012),
    "relative": (RelativePosition, 32, dict(batch_size=128, lr=1e-3), 500, 3, 0.007),
    "jigsaw": (Jigsaw, 32, dict(batch_size=64, lr=3e-3), 250, 3, 0.005),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNING)
def test_pretraining_beats_random_init_at_its_layer(name):
    from sslcourse.evaluate import compare_representations, random_init_like

    method_cls, size, fit_kwargs, steps, depth, gain = LEARNING[name]
    train = sslcourse.load_dataset("digits", "train", size=size)
    test = sslcourse.load_dataset("digits", "test", size=size)
    torch.manual_seed(0)
    method = method_cls(image_size=size)
    history = sslcourse.fit(method, train, steps=steps, seed=0, device="cpu", progress=False, **fit_kwargs)
    encoder = method.encoder.cpu()
    rows = compare_representations(
        {"pretrained": encoder.truncated(depth), "random": random_init_like(encoder).truncated(depth)},
        train,
        test,
        fractions=(0.1,),
        probes=("linear",),
        repeats=3,
        device="cpu",
    )
    pretrained, random = rows["pretrained"]["linear"]["0.1"], rows["random"]["linear"]["0.1"]
    summary = f"{name}, truncated({depth}), linear probe at 10% labels: pretrained {pretrained:.3f}, random init {random:.3f}"
    assert sum(history.loss[-10:]) < 0.5 * sum(history.loss[:10]), f"{name}: the pretext loss did not fall"
    assert pretrained - random > gain, summary
