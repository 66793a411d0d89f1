"""sslcourse.runtime: device choice, seeding, precision, the one-line description."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import sslcourse
from sslcourse.runtime import Precision, choose_precision, describe_runtime, get_device, is_cuda, seed_everything

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when no CUDA GPU is present")


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("SSLCOURSE_DEVICE", raising=False)


# ------------------------------------------------------------------ get_device
def test_get_device_default_matches_hardware(no_env):
    device = get_device()
    assert isinstance(device, torch.device)
    if torch.cuda.is_available():
        assert device.type == "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        assert device.type == "mps"
    else:
        assert device == torch.device("cpu")


def test_get_device_is_exported_at_top_level():
    assert sslcourse.get_device is get_device
    assert sslcourse.seed_everything is seed_everything
    assert sslcourse.describe_runtime is describe_runtime


def test_get_device_prefer(no_env):
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_env_override(monkeypatch):
    monkeypatch.setenv("SSLCOURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_explicit_prefer_beats_env(monkeypatch):
    monkeypatch.setenv("SSLCOURSE_DEVICE", "cuda:7")
    assert get_device("cpu") == torch.device("cpu")


@no_cuda
def test_asking_for_cuda_without_one_is_a_clear_error(no_env):
    with pytest.raises(RuntimeError, match=r"'cuda'.*no CUDA GPU"):
        get_device("cuda")
    with pytest.raises(RuntimeError, match=r"'cuda:1'"):
        get_device("cuda:1")


@no_cuda
def test_env_asking_for_cuda_without_one_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SSLCOURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        get_device()


def test_is_cuda():
    assert is_cuda("cuda:0") and is_cuda(torch.device("cuda"))
    assert not is_cuda("cpu")


# ------------------------------------------------------------- seed_everything
def _draw():
    return random.random(), float(np.random.rand()), torch.rand(5)


def test_seed_everything_reproducible():
    seed_everything(123)
    a = _draw()
    seed_everything(123)
    b = _draw()
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    seed_everything(124)
    c = _draw()
    assert a[0] != c[0] and a[1] != c[1] and not torch.equal(a[2], c[2])


def test_seed_everything_returns_seeded_cpu_generator():
    gen = seed_everything(7)
    assert isinstance(gen, torch.Generator)
    assert gen.device == torch.device("cpu")
    expected = torch.rand(4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.rand(4, generator=gen), expected)


def test_seed_everything_large_seed_ok():
    seed_everything(2**40 + 3)  # numpy only takes 32 bits; must not raise


@pytest.mark.parametrize("bad", [1.5, "3", True, None])
def test_seed_everything_type_check(bad):
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything(bad)


# ------------------------------------------------------------ choose_precision
def test_auto_is_fp32_on_cpu():
    p = choose_precision("cpu")
    assert p == Precision(None, False)
    assert p.name == "fp32" and not p.use_grad_scaler


def test_explicit_precisions_on_cpu():
    assert choose_precision("cpu", "fp32").name == "fp32"
    bf16 = choose_precision("cpu", "bf16")
    assert bf16.dtype is torch.bfloat16 and bf16.name == "bf16" and not bf16.use_grad_scaler


@pytest.mark.parametrize("bad", ["fp64", "float16", "", "AUTO"])
def test_invalid_precision(bad):
    with pytest.raises(ValueError, match="precision must be"):
        choose_precision("cpu", bad)


def test_fp16_on_cpu_only_when_asked_for():
    # "auto" never picks fp16 on a CPU; asked for by name it runs the T4's path (autocast + gradient scaler)
    assert choose_precision("cpu", "auto").dtype is None
    fp16 = choose_precision("cpu", "fp16")
    assert fp16.dtype is torch.float16 and fp16.use_grad_scaler


def test_precision_names():
    assert Precision(torch.float16, True).name == "fp16"
    assert Precision(torch.bfloat16, False).name == "bf16"


# ------------------------------------------------------------ describe_runtime
def test_describe_runtime_cpu():
    line = describe_runtime("cpu")
    assert isinstance(line, str)
    assert "\n" not in line
    assert "on cpu" in line and "fp32" in line
    assert torch.__version__ in line


def test_describe_runtime_default_names_the_device(no_env):
    line = describe_runtime()
    assert "\n" not in line
    assert f"on {get_device().type}" in line
