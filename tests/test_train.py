"""sslcourse.fit and the DeviceLoader: stopping rules, exact resume, the non-finite guard."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch
import torch.nn as nn

import sslcourse
from sslcourse import DeviceLoader, History, ImageDataset, NonFiniteLossError, fit
from sslcourse.checkpoint import CheckpointError
from sslcourse.methods import DenoisingAutoencoder


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The nets here are tiny: one thread is as fast, and on a busy 2-core box two
    # OpenMP threads competing with another process can be 10-100x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return sslcourse.load_dataset("digits", "train").subset(torch.arange(256))


def make_dae(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("corruption", "masking")
    kw.setdefault("noise_level", 0.5)
    return DenoisingAutoencoder(widths=(8, 16), **kw)


def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


FIT = dict(batch_size=64, lr=1e-2, progress=False, device="cpu")


# ---------------------------------------------------------------- History
def test_history_lengths_and_contents(tiny):
    h = fit(make_dae(), tiny, steps=5, **FIT)
    assert isinstance(h, History)
    assert len(h) == 5
    assert len(h.step) == len(h.loss) == len(h.lr) == len(h.time) == len(h.metrics["mse"]) == 5
    assert h.step == [1, 2, 3, 4, 5]
    assert h.lr == [1e-2] * 5
    assert all(b >= a for a, b in zip(h.time, h.time[1:]))
    assert h.images_seen == 5 * 64
    assert h.method == "DenoisingAutoencoder" and h.device == "cpu" and h.precision == "fp32"
    assert all(math.isfinite(v) for v in h.loss)
    assert h.seconds == h.time[-1]
    assert "DenoisingAutoencoder: 5 steps" in repr(h)
    d = h.to_dict()
    assert d["loss"] == h.loss and d["stopped_by"] == "steps"


def test_loss_decreases(tiny):
    h = fit(make_dae(), tiny, steps=30, **FIT)
    first, last = sum(h.loss[:5]) / 5, sum(h.loss[-5:]) / 5
    assert last < 0.5 * first, f"loss {first:.4f} -> {last:.4f}"
    assert h.metrics["mse"][-1] < h.metrics["mse"][0]


def test_plain_autoencoder_trains(tiny):
    h = fit(make_dae(corruption=None), tiny, steps=20, **FIT)
    assert sum(h.loss[-5:]) < 0.6 * sum(h.loss[:5])


def test_accepts_uint8_tensor_and_device_loader(tiny):
    h = fit(make_dae(), tiny.images, steps=2, **FIT)
    assert len(h) == 2
    loader = DeviceLoader(tiny, 32, device="cpu")
    h = fit(make_dae(), loader, steps=3, progress=False, device="cpu")
    assert len(h) == 3 and h.images_seen == 3 * 32


def test_small_dataset_shrinks_the_batch(tiny):
    h = fit(make_dae(), tiny.subset(torch.arange(40)), epochs=2, batch_size=256, progress=False, device="cpu")
    assert len(h) == 2 and h.images_seen == 80


# ---------------------------------------------------------------- stopping rules
def test_stops_by_steps(tiny):
    h = fit(make_dae(), tiny, steps=7, **FIT)
    assert len(h) == 7 and h.stopped_by == "steps"


def test_stops_by_epochs(tiny):
    # 256 images / 64 = 4 batches per epoch (drop_last)
    h = fit(make_dae(), tiny, epochs=2, **FIT)
    assert len(h) == 2 * 4 and h.stopped_by == "epochs"
    assert h.images_seen == 2 * 256


def test_steps_and_epochs_whichever_first(tiny):
    assert len(fit(make_dae(), tiny, epochs=3, steps=5, **FIT)) == 5
    h = fit(make_dae(), tiny, epochs=1, steps=50, **FIT)
    assert len(h) == 4 and h.stopped_by == "epochs"


def test_stops_by_budget(tiny):
    h = fit(make_dae(), tiny, epochs=1000, budget=0.3, **FIT)
    assert h.stopped_by == "budget"
    assert len(h) < 1000 * 4


def test_budget_alone(tiny):
    h = fit(make_dae(), tiny, budget=0.2, **FIT)
    assert h.stopped_by == "budget"


def test_needs_a_stopping_rule(tiny):
    with pytest.raises(ValueError, match="stopping rule"):
        fit(make_dae(), tiny, **FIT)


@pytest.mark.parametrize("kw", [dict(steps=0), dict(steps=2.5), dict(epochs=-1), dict(budget=0), dict(budget=-3.0)])
def test_bad_stopping_values(tiny, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        fit(make_dae(), tiny, **kw, **FIT)


def test_bad_method_and_data(tiny):
    with pytest.raises(TypeError, match="training_step.*Linear"):
        fit(nn.Linear(2, 2), tiny, steps=1, **FIT)
    with pytest.raises(TypeError, match="ImageDataset.*list"):
        fit(make_dae(), [1, 2, 3], steps=1, **FIT)
    with pytest.raises(ValueError, match="optimizer must be"):
        fit(make_dae(), tiny, steps=1, optimizer="lbfgs", **FIT)


def test_warmup_and_cosine_schedule(tiny):
    h = fit(make_dae(), tiny, steps=10, schedule="cosine", warmup_steps=2, **FIT)
    base = FIT["lr"]
    assert h.lr[0] == pytest.approx(base / 2) and h.lr[1] == pytest.approx(base)
    # after warmup: base * (1 + cos(pi * (step - 2) / 8)) / 2
    expected = [base * 0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 10)]
    assert h.lr[2:] == pytest.approx(expected)
    assert all(b <= a for a, b in zip(h.lr[1:], h.lr[2:]))


def test_cosine_needs_an_end(tiny):
    with pytest.raises(ValueError, match="cosine"):
        fit(make_dae(), tiny, budget=5, schedule="cosine", **FIT)


# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(
    "batch_size, first",
    [
        (64, 6),  # 4 batches/epoch: stop mid-epoch 1, finish in epoch 2
        (48, 7),  # 5 batches/epoch: 12 steps span epochs 0, 1, 2; resume mid-epoch
        (64, 4),  # stop exactly at an epoch boundary
    ],
)
def test_resume_is_exact(tiny, tmp_path, batch_size, first):
    kw = dict(FIT, batch_size=batch_size)
    ckpt = tmp_path / "run.pt"

    straight = make_dae(seed=0)
    h_straight = fit(straight, tiny, steps=12, seed=3, **kw)

    interrupted = make_dae(seed=0)
    h1 = fit(interrupted, tiny, steps=first, seed=3, checkpoint=ckpt, **kw)
    assert len(h1) == first and ckpt.exists()
    resumed = make_dae(seed=99)  # a fresh process: different init, everything comes from the checkpoint
    h2 = fit(resumed, tiny, steps=12, seed=3, checkpoint=ckpt, **kw)

    assert same_parameters(resumed, straight)
    assert len(h2) == 12 and h2.step == list(range(1, 13))
    assert h2.loss == h_straight.loss
    assert h2.images_seen == h_straight.images_seen
    assert torch.load(ckpt, weights_only=False)["step"] == 12


def test_resume_after_finishing_does_nothing_more(tiny, tmp_path):
    ckpt = tmp_path / "run.pt"
    m = make_dae()
    fit(m, tiny, steps=3, checkpoint=ckpt, **FIT)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    h = fit(m, tiny, steps=3, checkpoint=ckpt, **FIT)
    assert len(h) == 3 and h.stopped_by == "steps"
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_checkpoint_of_another_method_is_refused(tiny, tmp_path):
    ckpt = tmp_path / "run.pt"
    fit(make_dae(), tiny, steps=1, checkpoint=ckpt, **FIT)

    class OtherMethod(DenoisingAutoencoder):
        pass

    torch.manual_seed(0)
    with pytest.raises(ValueError, match="holds a DenoisingAutoencoder, not a OtherMethod"):
        fit(OtherMethod(widths=(8, 16)), tiny, steps=2, checkpoint=ckpt, **FIT)


class InterruptAt(DenoisingAutoencoder):
    """Presses Ctrl-C (sends SIGINT to this process) ``presses`` times while step ``at`` runs, mid-step."""

    def __init__(self, at, presses=1, **kw):
        super().__init__(widths=(8, 16), corruption="masking", noise_level=0.5, **kw)
        self.at, self.presses, self.calls = at, presses, 0

    def training_step(self, batch):
        out = super().training_step(batch)  # the augmentation has drawn its random numbers, batch norm has updated
        if self.calls == self.at:
            for _ in range(self.presses):
                os.kill(os.getpid(), signal.SIGINT)
        self.calls += 1
        return out


def test_ctrl_c_stops_at_the_step_boundary_and_resuming_equals_an_uninterrupted_run(tiny, tmp_path):
    ckpt = tmp_path / "run.pt"
    torch.manual_seed(0)
    straight = InterruptAt(-1)
    h_straight = fit(straight, tiny, steps=10, seed=3, **FIT)

    torch.manual_seed(0)
    method = InterruptAt(3)
    with pytest.raises(KeyboardInterrupt, match="after step 4"):
        fit(method, tiny, steps=10, seed=3, checkpoint=ckpt, checkpoint_every=100, **FIT)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 4 and len(state["history"]["loss"]) == 4  # the step under way was finished, not cut
    assert all(torch.equal(v, method.state_dict()[k]) for k, v in state["model"].items())

    torch.manual_seed(99)  # a fresh process: everything comes from the checkpoint
    resumed = InterruptAt(3)  # the same settings (the checkpoint checks them); no Ctrl-C this time
    resumed.at = -1
    h = fit(resumed, tiny, steps=10, seed=3, checkpoint=ckpt, **FIT)
    assert h.step == list(range(1, 11))
    assert h.loss == h_straight.loss
    assert same_parameters(resumed, straight)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tiny, tmp_path):
    ckpt = tmp_path / "run.pt"
    torch.manual_seed(0)
    method = InterruptAt(5, presses=2)
    with pytest.raises(KeyboardInterrupt):
        fit(method, tiny, steps=10, checkpoint=ckpt, checkpoint_every=2, **FIT)
    assert torch.load(ckpt, weights_only=True)["step"] == 4  # step 6 was cut short: not saved
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit put Python's handler back


# ---------------------------------------------------------------- checkpoints that know what they hold
def test_checkpoint_of_another_run_is_refused_naming_the_difference(tiny, tmp_path):
    ckpt = tmp_path / "run.pt"
    fit(make_dae(), tiny, steps=1, checkpoint=ckpt, **FIT)
    for change, expected in [
        (dict(lr=1e-3), r"lr: 0\.01 in the checkpoint, 0\.001 now"),
        (dict(optimizer="sgd"), r"optimizer: 'adamw' in the checkpoint, 'sgd' now"),
        (dict(batch_size=32), r"batch_size: 64 in the checkpoint, 32 now"),
        (dict(seed=1), r"seed: 0 in the checkpoint, 1 now"),
    ]:
        with pytest.raises(CheckpointError, match=str(ckpt).replace(".", r"\.") + ".*" + expected):
            fit(make_dae(), tiny, steps=2, checkpoint=ckpt, **{**FIT, **change})


def test_checkpoint_of_other_method_settings_is_refused(tiny, tmp_path):
    if not hasattr(make_dae(), "config"):
        pytest.skip("methods do not record their settings")
    ckpt = tmp_path / "run.pt"
    fit(make_dae(noise_level=0.5), tiny, steps=1, checkpoint=ckpt, **FIT)
    with pytest.raises(CheckpointError, match=r"noise_level: 0\.5 in the checkpoint, 0\.3 now"):
        fit(make_dae(noise_level=0.3), tiny, steps=2, checkpoint=ckpt, **FIT)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_gives_a_clear_error_naming_it(tiny, tmp_path, damage):
    ckpt = tmp_path / "run.pt"
    fit(make_dae(), tiny, steps=1, checkpoint=ckpt, **FIT)
    data = ckpt.read_bytes()
    ckpt.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=rf"{ckpt}.*not a readable sslcourse checkpoint.*delete it"):
        fit(make_dae(), tiny, steps=2, checkpoint=ckpt, **FIT)


def test_an_unusable_checkpoint_path_fails_before_training(tiny, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    method = make_dae()
    before = [p.clone() for p in method.parameters()]
    with pytest.raises(CheckpointError, match="is a folder"):
        fit(method, tiny, steps=2, checkpoint=tmp_path, **FIT)
    with pytest.raises(CheckpointError, match="cannot write the checkpoint"):
        fit(method, tiny, steps=2, checkpoint=a_file / "run.pt", **FIT)
    assert all(torch.equal(a, b) for a, b in zip(before, method.parameters()))  # nothing trained


# ---------------------------------------------------------------- mixed precision: a skipped step is not a step
class OverflowAt(DenoisingAutoencoder):
    """Its gradients overflow at call ``at`` (as fp16's do on a T4 now and then); counts ``after_step`` calls
    in a buffer and keeps a copy of its parameters and buffers as each call starts."""

    def __init__(self, at):
        super().__init__(widths=(8, 16), corruption="masking", noise_level=0.5)
        self.at, self.calls, self.seen = at, 0, {}
        self.register_buffer("after_steps", torch.zeros((), dtype=torch.int64))

    def training_step(self, batch):
        self.seen[self.calls] = {k: v.clone() for k, v in self.state_dict().items() if "running_" not in k and "batches_tracked" not in k}
        out = super().training_step(batch)
        if self.calls == self.at:
            out["loss"].register_hook(lambda grad: grad * float("inf"))  # finite loss, infinite gradients
        self.calls += 1
        return out

    def after_step(self, out):
        self.after_steps += 1


def test_a_step_the_fp16_scaler_skips_changes_nothing(tiny):
    torch.manual_seed(0)
    method = OverflowAt(3)
    h = fit(method, tiny, steps=6, precision="fp16", warmup_steps=6, **FIT)
    assert h.precision == "fp16" and h.skipped == [3]  # skipped after 3 applied steps
    assert method.calls == 7 and len(h) == 6 and h.step == [1, 2, 3, 4, 5, 6]
    assert int(method.after_steps) == 6  # no hook for the skipped step
    assert h.lr == pytest.approx([FIT["lr"] * (i + 1) / 6 for i in range(6)])  # the warm-up did not advance
    before, after = method.seen[3], method.seen[4]
    assert all(torch.equal(before[k], after[k]) for k in before), "the skipped step changed a parameter or buffer"
    assert any(not torch.equal(method.seen[2][k], before[k]) for k in before)  # whereas an applied step does


# ---------------------------------------------------------------- non-finite guard
class NaNAt(DenoisingAutoencoder):
    """Returns a non-finite loss at step ``at`` (0-based)."""

    def __init__(self, at, value=float("nan")):
        super().__init__(widths=(8, 16), corruption="masking", noise_level=0.5)
        self.at, self.value, self.calls = at, value, 0

    def training_step(self, batch):
        out = super().training_step(batch)
        if self.calls == self.at:
            out["loss"] = out["loss"] * self.value
        self.calls += 1
        return out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_with_a_clear_error(tiny, value):
    torch.manual_seed(0)
    bad = NaNAt(3, value)
    with pytest.raises(NonFiniteLossError, match=r"NaNAt: the loss became (nan|inf) at step 3") as info:
        fit(bad, tiny, steps=10, **FIT)
    assert isinstance(info.value, FloatingPointError)
    assert all(torch.isfinite(p).all() for p in bad.parameters())

    # the bad step was not applied: the parameters are those after 3 good steps
    # (batch norm's running statistics did see the bad forward pass; they are buffers)
    torch.manual_seed(0)
    good = NaNAt(-1)
    fit(good, tiny, steps=3, **FIT)
    assert all(torch.equal(a, b) for a, b in zip(bad.parameters(), good.parameters()))


def nan_corruption(x):
    """A (buggy) corruption that lets a NaN into the input at step 2."""
    nan_corruption.calls += 1
    if nan_corruption.calls == 3:
        x = x.clone()
        x[0, 0, 0, 0] = float("nan")
    return x, torch.zeros_like(x, dtype=torch.bool)


def test_nan_input_is_caught(tiny):
    nan_corruption.calls = 0
    method = make_dae(corruption=nan_corruption)
    with pytest.raises(NonFiniteLossError, match=r"DenoisingAutoencoder.*step 2"):
        fit(method, tiny, steps=10, **FIT)
    assert all(torch.isfinite(p).all() for p in method.parameters())


class ReturnsTensor(DenoisingAutoencoder):
    def training_step(self, batch):
        return super().training_step(batch)["loss"]


class ReturnsNoLoss(DenoisingAutoencoder):
    def training_step(self, batch):
        return {"mse": super().training_step(batch)["mse"]}


@pytest.mark.parametrize("cls, got", [(ReturnsTensor, "Tensor"), (ReturnsNoLoss, "dict")])
def test_training_step_must_return_a_dict_with_loss(tiny, cls, got):
    torch.manual_seed(0)
    with pytest.raises(TypeError, match=rf"{cls.__name__}.training_step must return a dict with a 'loss'; got {got}"):
        fit(cls(widths=(8, 16)), tiny, steps=2, **FIT)


# ---------------------------------------------------------------- DeviceLoader
def numbered(n=50):
    """n images whose label is their index (and whose pixels say so too)."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    return ImageDataset(images, torch.arange(n), name="numbered")


def test_loader_batches(tiny):
    loader = DeviceLoader(tiny, 100, device="cpu")
    assert len(loader) == 2 and loader.num_images == 256
    batches = list(loader.batches(0))
    assert len(batches) == 2
    for images, labels in batches:
        assert images.shape == (100, 1, 16, 16) and images.dtype == torch.float32
        assert labels.shape == (100,) and labels.dtype == torch.int64
        assert images.min().item() >= 0.0 and images.max().item() <= 1.0
        assert images.device == torch.device("cpu")
    assert batches[0][0].max().item() == 1.0  # 255 -> 1


def test_loader_images_match_labels():
    for images, labels in DeviceLoader(numbered(), 8, drop_last=False).batches(0):
        torch.testing.assert_close(images[:, 0, 0, 0], labels.float() / 255)


def test_epoch_is_a_permutation_covering_every_image_once():
    loader = DeviceLoader(numbered(50), 8, drop_last=False)
    assert len(loader) == 7
    for epoch in range(3):
        batches = list(loader.batches(epoch))
        assert [len(lab) for _, lab in batches] == [8] * 6 + [2]
        seen = torch.cat([lab for _, lab in batches])
        assert torch.equal(seen.sort().values, torch.arange(50))
        assert not torch.equal(seen, torch.arange(50)), "shuffled"


def test_drop_last():
    loader = DeviceLoader(numbered(50), 8, drop_last=True)
    assert len(loader) == 6
    seen = torch.cat([lab for _, lab in loader.batches(0)])
    assert len(seen) == 48 and len(seen.unique()) == 48


def test_batches_from_start_is_the_tail():
    loader = DeviceLoader(numbered(50), 8, drop_last=False, seed=5)
    full = list(loader.batches(2))
    for start in (0, 3, 6, 7):
        tail = list(loader.batches(2, start=start))
        assert len(tail) == len(full) - start
        assert all(torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]) for a, b in zip(tail, full[start:]))


def test_epochs_and_seeds_differ_and_repeat():
    loader = DeviceLoader(numbered(50), 10, seed=1)
    assert not torch.equal(loader.permutation(0), loader.permutation(1))
    assert torch.equal(loader.permutation(4), DeviceLoader(numbered(50), 10, seed=1).permutation(4))
    assert not torch.equal(loader.permutation(0), DeviceLoader(numbered(50), 10, seed=2).permutation(0))


def test_iteration_advances_the_epoch():
    loader = DeviceLoader(numbered(50), 10, seed=1)
    first = torch.cat([lab for _, lab in loader])
    second = torch.cat([lab for _, lab in loader])
    assert loader.epoch == 2
    assert torch.equal(first, loader.permutation(0))
    assert torch.equal(second, loader.permutation(1))


def test_no_shuffle():
    loader = DeviceLoader(numbered(20), 5, shuffle=False)
    assert torch.equal(torch.cat([lab for _, lab in loader.batches(3)]), torch.arange(20))


def test_uint8_tensor_input_has_no_labels():
    loader = DeviceLoader(torch.zeros(10, 3, 4, 4, dtype=torch.uint8), 5)
    _, labels = next(iter(loader))
    assert torch.equal(labels, torch.full((5,), -1))


def test_loader_errors():
    with pytest.raises(TypeError, match=r"uint8 images.*torch.float32"):
        DeviceLoader(torch.rand(10, 1, 4, 4), 2)
    with pytest.raises(TypeError, match=r"uint8 images.*\(10, 4, 4\)"):
        DeviceLoader(torch.zeros(10, 4, 4, dtype=torch.uint8), 2)
    with pytest.raises(TypeError, match="ImageDataset or a uint8 tensor.*list"):
        DeviceLoader([1, 2], 2)
    for bad in (0, -4, 2.5):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            DeviceLoader(numbered(10), bad)
    with pytest.raises(ValueError, match="batch_size 20 is larger than the dataset \\(10 images\\)"):
        DeviceLoader(numbered(10), 20)
    assert len(DeviceLoader(numbered(10), 20, drop_last=False)) == 1


def test_loader_on_another_device_is_refused(tiny):
    if not torch.cuda.is_available():
        pytest.skip("needs a second device")
    loader = DeviceLoader(tiny, 32, device="cuda")
    with pytest.raises(ValueError, match="DeviceLoader lives on cuda"):
        fit(make_dae(), loader, steps=1, progress=False, device="cpu")


# ---------------------------------------------------------------- on a GPU: no read-back per step
@pytest.fixture
def as_on_a_gpu(monkeypatch):
    """Makes fit treat the CPU as it treats a CUDA device in bf16/fp32: each step's outcome stays a
    tensor, read with the losses every ``log_every`` steps."""
    from sslcourse import train

    original = train.UpdateGuard.__init__

    def lazy(self, device, prec):
        original(self, device, prec)
        self.eager = False

    monkeypatch.setattr(train.UpdateGuard, "__init__", lazy)


def test_lazy_reading_records_every_step(tiny, as_on_a_gpu):
    torch.manual_seed(0)
    lazy = make_dae()
    h = fit(lazy, tiny, steps=7, log_every=3, **FIT)
    assert h.step == list(range(1, 8)) and len(h.loss) == len(h.lr) == len(h.time) == 7
    assert all(len(v) == 7 for v in h.metrics.values())


def test_lazy_reading_still_stops_a_non_finite_loss_naming_its_step(tiny, as_on_a_gpu):
    torch.manual_seed(0)
    bad = NaNAt(3)
    with pytest.raises(NonFiniteLossError, match=r"NaNAt: the loss became nan at step 3"):
        fit(bad, tiny, steps=10, log_every=5, **FIT)
    assert all(torch.isfinite(p).all() for p in bad.parameters())  # the scaler skipped the update on the device
