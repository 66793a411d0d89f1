"""Ctrl-C, then resume: for every method of the registry, the same as one uninterrupted run, bit for bit on a CPU."""

from __future__ import annotations

import os
import signal

import pytest
import torch

import sslcourse
from sslcourse.recipes import build_method, default_recipe
from sslcourse.registry import PRETRAINABLE

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SETTINGS = dict(batch_size=32, lr=1e-3, seed=5, device="cpu", progress=False)


def fresh(name: str, train):
    torch.manual_seed(0)
    return build_method(name, train, default_recipe(name, "cpu").widths)


def press_ctrl_c_during_call(method, call: int) -> None:
    """Ctrl-C (SIGINT to this process) in the middle of the ``call``-th training step, after its forward pass."""
    step, calls = method.training_step, [0]

    def interrupted_step(batch):
        out = step(batch)
        if calls[0] == call:
            os.kill(os.getpid(), signal.SIGINT)
        calls[0] += 1
        return out

    method.training_step = interrupted_step


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and values, NaN equal to NaN (DeepCluster's NMI is NaN before a second clustering)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


@pytest.mark.parametrize("name", PRETRAINABLE)
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(name, tmp_path):
    recipe = default_recipe(name, "cpu")
    train = sslcourse.load_dataset(recipe.data, "train", size=recipe.size).subset(torch.arange(128))
    straight = fresh(name, train)
    expected = sslcourse.fit(straight, train, steps=6, **SETTINGS)

    ckpt = tmp_path / "run.pt"
    interrupted = fresh(name, train)
    press_ctrl_c_during_call(interrupted, 2)
    with pytest.raises(KeyboardInterrupt):
        sslcourse.fit(interrupted, train, steps=6, checkpoint=ckpt, checkpoint_every=100, **SETTINGS)
    assert torch.load(ckpt, weights_only=True)["step"] == 3  # the step under way was finished

    torch.manual_seed(123)  # a new session: nothing carries over but the checkpoint
    resumed = fresh(name, train)
    history = sslcourse.fit(resumed, train, steps=6, checkpoint=ckpt, **SETTINGS)
    assert history.loss == expected.loss
    a, b = resumed.state_dict(), straight.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if torch.is_tensor(a[k]) and not identical(a[k], b[k])]
    assert not differ, f"{name}: differs after resuming: {differ[:5]}"
