"""sslcourse.methods.SimCLR and MoCo: the training step, the queue, the momentum encoder, and a learning test."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import sslcourse
from sslcourse.augment import ContrastiveViews
from sslcourse.evaluate import compare_representations, random_init_like
from sslcourse.methods import MoCo, SimCLR, SSLMethod
from sslcourse.methods.contrastive import positive_accuracy

WIDTHS = (8, 16)  # small encoders: these tests check plumbing, not representations


def images(b=8, size=16, seed=0):
    return torch.rand(b, 1, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "build",
    [
        lambda: SimCLR(widths=WIDTHS),
        lambda: SimCLR(widths=WIDTHS, projection_layers=0),
        lambda: MoCo(widths=WIDTHS, queue_size=32),
        lambda: MoCo(widths=WIDTHS, queue_size=32, mlp_head=False, key_bn_splits=1),
    ],
    ids=["simclr", "simclr_no_head", "moco_v2", "moco_v1"],
)
def test_training_step_gives_a_finite_loss_and_gradients_to_the_encoder_without_labels(build):
    torch.manual_seed(0)
    method = build()
    assert isinstance(method, SSLMethod)
    out = method.training_step((images(), None))
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert 0.0 <= float(out["accuracy"]) <= 1.0
    out["loss"].backward()
    grads = [p.grad for p in method.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_simclr_projects_after_the_encoder_and_refuses_other_image_sizes():
    method = SimCLR(widths=WIDTHS, projection_dim=24)
    assert method(images(4)).shape == (4, 24)
    assert method.encoder(images(4)).shape == (4, 10, 4, 4)  # the representation kept: before the head
    with pytest.raises(ValueError, match="built for 16 x 16 images; got 32 x 32"):
        method.training_step((images(4, 32), None))


def test_positive_accuracy_is_one_for_identical_views_of_distinct_images_and_low_for_noise():
    z = torch.eye(6)
    assert positive_accuracy(z, z.clone()) == 1.0
    g = torch.Generator().manual_seed(0)
    assert positive_accuracy(torch.randn(64, 32, generator=g), torch.randn(64, 32, generator=g)) < 0.2


# ----------------------------------------------------------------- MoCo
def test_key_encoder_receives_no_gradient():
    torch.manual_seed(0)
    method = MoCo(widths=WIDTHS, queue_size=32)
    out = method.training_step((images(), None))
    out["loss"].backward()
    keys = [*method.key_encoder.parameters(), *method.key_projector.parameters()]
    assert keys and all(not p.requires_grad and p.grad is None for p in keys)
    assert all(p.grad is not None for p in method.projector.parameters())
    # fit's optimizer only sees trainable parameters: the key encoder is not among them
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert not trainable & {id(p) for p in keys}


def test_after_step_moves_the_key_encoder_and_head_by_the_configured_momentum():
    torch.manual_seed(0)
    method = MoCo(widths=WIDTHS, queue_size=32, momentum=0.9)
    assert method.momentum_pairs() == [(method.encoder, method.key_encoder), (method.projector, method.key_projector)]
    out = method.training_step((images(), None))
    with torch.no_grad():
        for p in [*method.encoder.parameters(), *method.projector.parameters()]:
            p.add_(1.0)  # the query encoder and head moved (as after an optimizer step)
    before = [p.clone() for p in [*method.key_encoder.parameters(), *method.key_projector.parameters()]]
    method.after_step(out)
    after = [*method.key_encoder.parameters(), *method.key_projector.parameters()]
    online = [*method.encoder.parameters(), *method.projector.parameters()]
    for old, key, query in zip(before, after, online, strict=True):
        torch.testing.assert_close(key, 0.9 * old + 0.1 * query)


def test_queue_is_fifo_with_the_configured_size():
    method = MoCo(widths=WIDTHS, queue_size=10, projection_dim=4)
    assert method.queue.shape == (10, 4) and method.queue_size == 10
    batches = [torch.full((4, 4), float(i)) for i in range(1, 5)]  # 16 keys through a queue of 10
    for keys in batches:
        method.enqueue(keys)
    # the last 10 keys survive: batch 4 (4 keys), batch 3 (4), and the last 2 of batch 2;
    # the slots hold them in write order, the pointer at the oldest survivor
    values = method.queue[:, 0].tolist()
    assert sorted(values) == [2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0]
    assert int(method.queue_pointer) == 16 % 10
    oldest_first = values[6:] + values[:6]
    assert oldest_first == [2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="a batch of 11 keys does not fit a queue of 10"):
        method.enqueue(torch.zeros(11, 4))
    with pytest.raises(ValueError, match=r"keys must be \(B, 4\)"):
        method.enqueue(torch.zeros(2, 5))


def test_a_training_step_returns_its_keys_and_after_step_enqueues_them():
    torch.manual_seed(0)
    method = MoCo(widths=WIDTHS, queue_size=32, projection_dim=8)
    before = method.queue.clone()
    out = method.training_step((images(6), None))
    torch.testing.assert_close(method.queue, before)  # nothing enters before the optimizer step
    keys = out["keys"]
    assert keys.shape == (6, 8) and not keys.requires_grad
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(6))
    method.after_step(out)
    torch.testing.assert_close(method.queue[:6], keys)
    torch.testing.assert_close(method.queue[6:], before[6:])
    assert int(method.queue_pointer) == 6
    assert not any(name.startswith("_pending") for name in vars(method)), "no hidden state between the step and after_step"


def test_a_batch_larger_than_the_queue_is_refused_before_training_on_it():
    method = MoCo(widths=WIDTHS, queue_size=4)
    with pytest.raises(ValueError, match="MoCo: a batch of 6 images does not fit a queue of 4 keys; use queue_size >= batch size"):
        method.training_step((images(6), None))


# ----------------------------------------------------------------- learning
@pytest.mark.slow
def test_simclr_pretraining_beats_random_init_on_digits():
    """25 s of SimCLR on the digits (one thread) must lift the 10%-label linear probe
    clearly above random init. Measured under load on the 2-core box, 45 s: 94.1% vs 86.2%."""
    train, test = sslcourse.load_dataset("digits", "train"), sslcourse.load_dataset("digits", "test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        method = SimCLR(widths=(32, 64), views=ContrastiveViews(16, flip_p=0.0, crop_scale=(0.3, 1.0)))
        history = sslcourse.fit(method, train, budget=25, batch_size=128, lr=3e-3, seed=0, progress=False)
        encoder = method.encoder.cpu()
        rows = compare_representations(
            {"simclr": encoder, "random": random_init_like(encoder)}, train, test, fractions=(0.1,), probes=("linear",), repeats=3, device="cpu"
        )
    finally:
        torch.set_num_threads(threads)
    simclr, random = rows["simclr"]["linear"]["0.1"], rows["random"]["linear"]["0.1"]
    assert simclr - random > 0.02, f"SimCLR {simclr:.3f} vs random init {random:.3f} after {len(history)} steps"
    assert history.loss[-1] < history.loss[0]
