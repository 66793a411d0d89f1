"""The CUDA paths: mixed precision, channels_last, device-resident data, exact resume.

Every test here needs a CUDA GPU and is skipped without one (run them with
``pytest -m cuda`` on a GPU machine).
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

import sslcourse
from sslcourse import DeviceLoader, fit
from sslcourse.augment import (
    gaussian_noise,
    masking_noise,
    random_horizontal_flip,
    random_resized_crop,
    random_translate,
    salt_and_pepper,
)
from sslcourse.evaluate import extract_features, random_init_like
from sslcourse.methods import DenoisingAutoencoder
from sslcourse.runtime import choose_precision, describe_runtime, get_device

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def tiny():
    return sslcourse.load_dataset("digits", "train").subset(torch.arange(256))


def make_dae(seed=0):
    torch.manual_seed(seed)
    return DenoisingAutoencoder(widths=(8, 16), corruption="masking", noise_level=0.5)


FIT = dict(batch_size=64, lr=1e-2, progress=False, device="cuda")


@contextlib.contextmanager
def deterministic_cudnn():
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


# ---------------------------------------------------------------- runtime
def test_default_device_is_cuda(monkeypatch):
    monkeypatch.delenv("SSLCOURSE_DEVICE", raising=False)
    assert get_device().type == "cuda"
    monkeypatch.setenv("SSLCOURSE_DEVICE", "cpu")
    assert get_device().type == "cpu"


def test_auto_precision_on_gpu():
    p = choose_precision("cuda")
    if torch.cuda.is_bf16_supported(including_emulation=False):
        assert p.dtype is torch.bfloat16 and p.name == "bf16" and not p.use_grad_scaler
    else:
        assert p.dtype is torch.float16 and p.name == "fp16" and p.use_grad_scaler
    fp16 = choose_precision("cuda", "fp16")
    assert fp16.dtype is torch.float16 and fp16.use_grad_scaler
    assert choose_precision("cuda", "fp32").name == "fp32"


def test_describe_runtime_names_the_gpu():
    line = describe_runtime("cuda")
    assert "\n" not in line
    assert f"cuda ({torch.cuda.get_device_name()}" in line
    assert choose_precision("cuda").name in line


# ---------------------------------------------------------------- fit
def test_fit_on_cuda_uses_channels_last_and_mixed_precision(tiny):
    method = make_dae()
    h = fit(method, tiny, steps=30, **FIT)
    assert h.device.startswith("cuda")
    assert h.precision != "fp32" and h.precision == choose_precision("cuda").name
    assert all(math.isfinite(v) for v in h.loss)
    assert sum(h.loss[-5:]) < 0.5 * sum(h.loss[:5]), f"loss {h.loss[:5]} -> {h.loss[-5:]}"
    weights = [p for p in method.parameters() if p.dim() == 4]
    assert weights and all(p.is_cuda for p in method.parameters())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert any(not p.is_contiguous() for p in weights), "3x3 convs with several input channels differ in layout"


def test_fit_channels_last_can_be_turned_off(tiny):
    method = make_dae()
    fit(method, tiny, steps=2, channels_last=False, **FIT)
    assert all(p.is_contiguous() for p in method.parameters())


def test_fp16_with_grad_scaler_trains(tiny):
    method = make_dae()
    before = [p.detach().clone() for p in method.parameters()]
    h = fit(method, tiny, steps=10, precision="fp16", **FIT)
    assert h.precision == "fp16"
    assert len(h) == 10 and all(math.isfinite(v) for v in h.loss)
    assert all(torch.isfinite(p).all() for p in method.parameters())
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, method.parameters())), "the scaler let steps through"
    assert h.loss[-1] < h.loss[0]


def test_fp32_on_cuda(tiny):
    h = fit(make_dae(), tiny, steps=3, precision="fp32", **FIT)
    assert h.precision == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_resume_is_exact_on_cuda(tiny, tmp_path, precision):
    kw = dict(FIT, batch_size=48, precision=precision)  # 5 batches/epoch: 12 steps span 3 epochs
    ckpt = tmp_path / "run.pt"
    with deterministic_cudnn():
        straight = make_dae()
        h_straight = fit(straight, tiny, steps=12, seed=1, **kw)
        fit(make_dae(), tiny, steps=7, seed=1, checkpoint=ckpt, **kw)
        resumed = make_dae(seed=99)
        h = fit(resumed, tiny, steps=12, seed=1, checkpoint=ckpt, **kw)
    assert h.loss == h_straight.loss
    sa, sb = resumed.state_dict(), straight.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_non_finite_guard_on_cuda(tiny):
    def nan_corruption(x):
        return x * float("nan"), torch.zeros_like(x, dtype=torch.bool)

    torch.manual_seed(0)
    method = DenoisingAutoencoder(widths=(8, 16), corruption=nan_corruption)
    with pytest.raises(sslcourse.NonFiniteLossError, match="DenoisingAutoencoder.*step 0"):
        fit(method, tiny, steps=3, **FIT)


# ---------------------------------------------------------------- data
def test_device_loader_keeps_data_on_cuda(tiny):
    loader = DeviceLoader(tiny, 64, device="cuda", seed=3)
    assert loader.images.is_cuda and loader.labels.is_cuda and loader.images.dtype == torch.uint8
    cpu = DeviceLoader(tiny, 64, device="cpu", seed=3)
    for (x, y), (xc, yc) in zip(loader.batches(1), cpu.batches(1)):
        assert x.is_cuda and y.is_cuda and x.dtype == torch.float32
        assert torch.equal(y.cpu(), yc), "the same order on every device"
        assert torch.equal(x.cpu(), xc)


def test_extract_features_on_cuda_restores_device(tiny):
    torch.manual_seed(0)
    enc = sslcourse.nets.ConvEncoder(1, (8, 16))
    feats = extract_features(enc, tiny, device="cuda")
    assert feats.device.type == "cpu" and feats.shape == (256, 160)
    assert next(enc.parameters()).device.type == "cpu"


def test_random_init_like_on_cuda_is_deterministic():
    torch.manual_seed(0)
    enc = sslcourse.nets.ConvEncoder(1, (8, 16)).cuda()
    a, b = random_init_like(enc, seed=4), random_init_like(enc, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert next(a.parameters()).is_cuda


# ---------------------------------------------------------------- augment on the GPU
AUGMENTS = {
    "gaussian_noise": lambda x, g: gaussian_noise(x, 0.2, generator=g)[0],
    "masking_noise": lambda x, g: masking_noise(x, 0.3, generator=g)[0],
    "salt_and_pepper": lambda x, g: salt_and_pepper(x, 0.3, generator=g)[0],
    "random_horizontal_flip": lambda x, g: random_horizontal_flip(x, generator=g),
    "random_resized_crop": lambda x, g: random_resized_crop(x, generator=g),
    "random_translate": lambda x, g: random_translate(x, generator=g),
}


@pytest.mark.parametrize("generator_device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", AUGMENTS)
def test_augment_on_cuda_batch(name, generator_device):
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)).cuda()
    fn = AUGMENTS[name]
    a = fn(x, torch.Generator(device=generator_device).manual_seed(1))
    b = fn(x, torch.Generator(device=generator_device).manual_seed(1))
    c = fn(x, torch.Generator(device=generator_device).manual_seed(2))
    assert a.is_cuda and a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    if generator_device == "cpu":
        # a CPU generator draws the same numbers whatever the batch's device
        ref = fn(x.cpu(), torch.Generator().manual_seed(1))
        torch.testing.assert_close(a.cpu(), ref, atol=1e-5, rtol=0)


def test_masking_noise_counts_on_cuda():
    x = torch.rand(4, 3, 8, 8, device="cuda").clamp_min(0.01)
    y, mask = masking_noise(x, 0.25, generator=torch.Generator(device="cuda").manual_seed(0))
    assert mask.is_cuda and mask.flatten(1).sum(1).tolist() == [48] * 4
    assert torch.equal(mask, y == 0)
