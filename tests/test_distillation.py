"""BYOL and DINO: the teacher gets no gradient and follows by momentum, DINO's center moves by its
momentum, multi-crop pairs, and the collapse demonstration."""

from __future__ import annotations

import math

import pytest
import torch

import sslcourse
from sslcourse.methods import BYOL, DINO
from sslcourse.methods.distillation import cosine_momentum
from sslcourse.nets import VisionTransformer


def _batch(n=16, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g), torch.zeros(n, dtype=torch.long)


def _step(method, batch, lr=1e-2):
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr)
    out = method.training_step(batch)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    method.after_step(out)
    return out


def test_cosine_momentum_goes_from_base_to_one():
    assert cosine_momentum(0, 0.99, 1.0, 100) == pytest.approx(0.99)
    assert cosine_momentum(50, 0.99, 1.0, 100) == pytest.approx(0.995)
    assert cosine_momentum(100, 0.99, 1.0, 100) == pytest.approx(1.0)
    assert cosine_momentum(500, 0.99, 1.0, 100) == pytest.approx(1.0)
    assert cosine_momentum(37, 0.99, 1.0, None) == 0.99
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        cosine_momentum(0, 1.5)


@pytest.mark.parametrize("cls", [BYOL, DINO])
def test_the_teacher_receives_no_gradient_and_moves_by_momentum(cls):
    torch.manual_seed(0)
    method = cls(momentum=0.9)
    teacher_enc = method.target_encoder if cls is BYOL else method.teacher_encoder
    assert all(not p.requires_grad for p in teacher_enc.parameters())
    out = method.training_step(_batch())
    out["loss"].backward()
    assert all(p.grad is None for p in teacher_enc.parameters()), "a teacher parameter received a gradient"
    pairs = method.momentum_pairs()
    assert len(pairs) == 2 and pairs[0] == (method.encoder, teacher_enc)
    with torch.no_grad():
        for online, _ in pairs:
            for p in online.parameters():
                p.add_(torch.randn_like(p))  # as if the optimizer moved the student, encoder and head
    before = [[p.clone() for p in target.parameters()] for _, target in pairs]
    students = [[p.clone() for p in online.parameters()] for online, _ in pairs]
    method.after_step(out)
    for (_, target), t0s, ss in zip(pairs, before, students, strict=True):
        for t0, s, t1 in zip(t0s, ss, target.parameters(), strict=True):
            torch.testing.assert_close(t1, 0.9 * t0 + 0.1 * s)
    assert int(method.step) == 1


def test_byol_loss_is_symmetric_and_in_range():
    torch.manual_seed(0)
    out = BYOL().training_step(_batch())
    assert 0.0 <= out["loss"].item() <= 8.0 and math.isfinite(out["spread"].item())


def test_byol_momentum_schedule_is_followed_and_resumable():
    method = BYOL(momentum=0.9, momentum_steps=10)
    assert method.current_momentum() == pytest.approx(0.9)
    for _ in range(5):
        method.after_step({})
    assert method.current_momentum() == pytest.approx(0.95)
    assert "step" in method.state_dict()
    state = method.state_dict()
    again = BYOL(momentum=0.9, momentum_steps=10)
    again.load_state_dict(state)
    assert again.current_momentum() == pytest.approx(0.95)


def test_dino_center_moves_by_the_configured_momentum():
    torch.manual_seed(0)
    method = DINO(center_momentum=0.8, local_crops=1)
    method.center.fill_(0.5)
    x = _batch()
    torch.manual_seed(1)
    out = method.training_step(x)
    torch.testing.assert_close(method.center, torch.full((256,), 0.5))  # not before the optimizer step
    batch_mean = out["teacher_mean"]
    torch.manual_seed(1)  # the same crops again: teacher_mean is the teacher's mean output on the two global crops
    torch.testing.assert_close(batch_mean, method.teacher(torch.cat(method.crops(x[0])[:2])).mean(dim=0))
    method.after_step(out)
    torch.testing.assert_close(method.center, 0.8 * torch.full_like(batch_mean, 0.5) + 0.2 * batch_mean)


def test_dino_multicrop_pairs_every_global_teacher_crop_with_every_other_student_crop():
    torch.manual_seed(0)
    method = DINO(local_crops=3)
    calls = []
    import sslcourse.losses as L

    original = L.dino_loss

    def spy(s, t, c, st, tt):
        calls.append((s.data_ptr(), t.data_ptr()))
        return original(s, t, c, st, tt)

    L.dino_loss = spy
    try:
        method.training_step(_batch())
    finally:
        L.dino_loss = original
    assert len(calls) == 2 * (2 + 3) - 2  # each of 2 teacher crops against the 4 other student crops


def test_dino_teacher_temperature_warms_up_linearly():
    method = DINO(teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_steps=10)
    assert method.current_teacher_temp() == pytest.approx(0.04)
    for _ in range(5):
        method.count_step()
    assert method.current_teacher_temp() == pytest.approx(0.055)
    for _ in range(15):
        method.count_step()
    assert method.current_teacher_temp() == pytest.approx(0.07)


def test_dino_works_with_the_vision_transformer():
    torch.manual_seed(0)
    method = DINO(VisionTransformer(image_size=16, patch_size=4, dim=32, depth=2, heads=2), local_crops=2, out_dim=64)
    out = _step(method, _batch())
    assert torch.isfinite(out["loss"])
    assert method.encoder.class_attention(_batch(4)[0]).shape == (4, 2, 4, 4)


@pytest.mark.parametrize("cls", [BYOL, DINO])
def test_schedules_count_applied_steps_only_in_after_step(cls):
    torch.manual_seed(0)
    method = cls(widths=(8, 16), momentum=0.9, momentum_steps=4)
    method.training_step(_batch())
    method.training_step(_batch())
    assert int(method.step) == 0, "a training step that was never applied does not advance the schedule"
    _step(method, _batch())
    assert int(method.step) == 1
    assert method.current_momentum() == pytest.approx(cosine_momentum(1, 0.9, 1.0, 4))


@pytest.mark.slow
def test_dino_without_centering_and_sharpening_collapses_and_with_them_does_not():
    """The collapse demonstration: with centering off and the teacher at the student's temperature,
    the teacher's outputs become the same for every image; with both, they stay spread."""
    data = sslcourse.load_dataset("digits", "train", size=16)

    def spread_after(**kwargs):
        sslcourse.seed_everything(0)
        method = DINO(widths=(16, 32), local_crops=0, out_dim=64, hidden_dim=64, **kwargs)
        history = sslcourse.fit(method, data, steps=200, batch_size=32, lr=3e-3, progress=False, device="cpu")
        spread = [float(v) for v in history.metrics["spread"]]
        return sum(spread[:5]) / 5, sum(spread[-10:]) / 10

    # measured (2-core CPU): spread 0.40 -> 0.026 without centering and sharpening, 0.87 -> 0.45 with them
    collapsed_start, collapsed_end = spread_after(centering=False, teacher_temp=0.1)
    _, healthy_end = spread_after()
    assert collapsed_end < 0.15 * collapsed_start, f"no collapse: teacher spread {collapsed_start:.3f} -> {collapsed_end:.3f}"
    assert healthy_end > 5 * collapsed_end, f"centering + sharpening did not keep the outputs apart ({healthy_end:.4f} vs {collapsed_end:.4f})"
