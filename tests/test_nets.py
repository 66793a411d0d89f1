"""sslcourse.nets: the encoders, decoders, heads and the momentum update."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from sslcourse.nets import ConvDecoder, ConvEncoder, MLPHead, conv_bn_relu, momentum_update, resnet18_cifar


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # small forward passes: one thread is as fast, and robust on a busy 2-core box
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


# ----------------------------------------------------------------- ConvEncoder
@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_conv_encoder_output_shape(size, in_channels):
    enc = ConvEncoder(in_channels, widths=(8, 16))
    out = enc(torch.rand(2, in_channels, size, size))
    assert out.shape == (2, 10, size // 4, size // 4)


def test_conv_encoder_non_square():
    enc = ConvEncoder(1, widths=(8, 16), out_channels=5)
    assert enc(torch.rand(3, 1, 16, 24)).shape == (3, 5, 4, 6)


def test_conv_encoder_architecture():
    enc = ConvEncoder()
    assert len(enc.layers) == 9
    kernels, strides, widths = [], [], []
    for i, block in enumerate(enc.layers):
        conv, bn, relu = block
        assert isinstance(conv, nn.Conv2d) and conv.bias is None, f"layer {i + 1}"
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels
        assert isinstance(relu, nn.ReLU)
        kernels.append(conv.kernel_size[0])
        strides.append(conv.stride[0])
        widths.append(conv.out_channels)
    # stride 2 at layers 3 and 6 (1-based), 1 elsewhere
    assert strides == [1, 1, 2, 1, 1, 2, 1, 1, 1]
    assert kernels == [3, 3, 3, 3, 3, 3, 3, 1, 1]
    # the report's widths: 96, then 192, then the 10-channel bottleneck
    assert widths == [96, 96, 96, 192, 192, 192, 192, 192, 10]
    assert enc.widths == (96, 192) and enc.in_channels == 3 and enc.out_channels == 10
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in enc.modules()), "no pooling"


def test_conv_encoder_parameter_count_by_hand():
    # conv k x k, no bias: k*k*c_in*c_out; batch norm: 2 * c_out (weight, bias)
    expected = (
        (3 * 3 * 3 * 96 + 2 * 96)  # 3x3 3->96
        + (3 * 3 * 96 * 96 + 2 * 96)  # 3x3 96->96
        + (3 * 3 * 96 * 96 + 2 * 96)  # 3x3 96->96 stride 2
        + (3 * 3 * 96 * 192 + 2 * 192)  # 3x3 96->192
        + (3 * 3 * 192 * 192 + 2 * 192)  # 3x3 192->192
        + (3 * 3 * 192 * 192 + 2 * 192)  # 3x3 192->192 stride 2
        + (3 * 3 * 192 * 192 + 2 * 192)  # 3x3 192->192
        + (1 * 1 * 192 * 192 + 2 * 192)  # 1x1 192->192
        + (1 * 1 * 192 * 10 + 2 * 10)  # 1x1 192->10
    )
    assert expected == 1_370_996  # 2,784 + 2 * 83,136 + 166,272 + 3 * 332,160 + 37,248 + 1,940
    assert n_params(ConvEncoder()) == expected


def test_conv_encoder_small_widths_parameter_count():
    # the CPU default (32, 64) on 1-channel digits
    expected = (
        (9 * 1 * 32 + 64)
        + 2 * (9 * 32 * 32 + 64)
        + (9 * 32 * 64 + 128)
        + 3 * (9 * 64 * 64 + 128)
        + (64 * 64 + 128)
        + (64 * 10 + 20)
    )
    assert n_params(ConvEncoder(1, (32, 64))) == expected


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 1, 16, 16), r"expects images \(B, 3, H, W\); got \(2, 1, 16, 16\)"),
        ((3, 16, 16), r"expects images \(B, 3, H, W\); got \(3, 16, 16\)"),
        ((2, 3, 18, 16), r"divisible by 4.*\(18, 16\)"),
        ((2, 3, 16, 10), r"divisible by 4.*\(16, 10\)"),
    ],
)
def test_conv_encoder_bad_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        ConvEncoder(3, (8, 16))(torch.rand(*shape))


def test_truncated():
    enc = ConvEncoder(1, (8, 16))
    x = torch.rand(2, 1, 16, 16)
    assert enc.truncated(3)(x).shape == (2, 8, 8, 8)
    assert enc.truncated(6)(x).shape == (2, 16, 4, 4)
    assert enc.truncated(9)(x).shape == (2, 10, 4, 4)
    enc.eval()
    torch.testing.assert_close(enc.truncated(9)(x), enc(x))
    # shares the weights
    assert enc.truncated(2)[0][0].weight is enc.layers[0][0].weight
    assert len(enc.truncated(4)) == 4
    for bad in (0, 10, -1):
        with pytest.raises(ValueError, match=rf"depth must be in 1..9, got {bad}"):
            enc.truncated(bad)


def test_conv_bn_relu_same_padding():
    block = conv_bn_relu(2, 4, kernel=5)
    assert block(torch.rand(1, 2, 7, 9)).shape == (1, 4, 7, 9)
    assert conv_bn_relu(2, 4, stride=2)(torch.rand(1, 2, 8, 8)).shape == (1, 4, 4, 4)


# ----------------------------------------------------------------- ConvDecoder
@pytest.mark.parametrize("size", [16, 32])
def test_decoder_mirrors_encoder(size):
    enc = ConvEncoder(3, (8, 16))
    dec = ConvDecoder(3, (8, 16))
    x = torch.rand(2, 3, size, size)
    out = dec(enc(x))
    assert out.shape == x.shape
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0


def test_decoder_latent_channels_and_range():
    dec = ConvDecoder(out_channels=1, widths=(8, 16), latent_channels=4)
    z = 50 * torch.randn(2, 4, 3, 5)
    out = dec(z)
    assert out.shape == (2, 1, 12, 20)
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in dec.modules()) == 2


def test_encoder_decoder_gradient_flows():
    enc, dec = ConvEncoder(1, (4, 8)), ConvDecoder(1, (4, 8))
    x = torch.rand(2, 1, 16, 16)
    ((dec(enc(x)) - x) ** 2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in [*enc.parameters(), *dec.parameters()])


# ----------------------------------------------------------------- ResNet-18
def test_resnet18_cifar():
    net = resnet18_cifar()
    assert isinstance(net.conv1, nn.Conv2d)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.in_channels == 3
    assert isinstance(net.maxpool, nn.Identity)
    assert isinstance(net.fc, nn.Identity)
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 512)


def test_resnet18_cifar_in_channels():
    net = resnet18_cifar(in_channels=1).eval()
    assert net.conv1.in_channels == 1
    with torch.no_grad():
        assert net(torch.rand(1, 1, 16, 16)).shape == (1, 512)


# ----------------------------------------------------------------- MLPHead
def test_mlp_head_one_layer_is_linear():
    head = MLPHead(12, 5, num_layers=1)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 12 and linears[0].out_features == 5
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.ReLU)) for m in head.modules())
    assert head(torch.rand(4, 12)).shape == (4, 5)


@pytest.mark.parametrize("num_layers", [2, 3])
def test_mlp_head_layers(num_layers):
    head = MLPHead(20, 7, hidden_dim=32, num_layers=num_layers)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(20, 32)] + [(32, 32)] * (num_layers - 2) + [(32, 7)]
    assert [lin.bias is None for lin in linears] == [True] * (num_layers - 1) + [False]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == num_layers - 1
    assert sum(isinstance(m, nn.ReLU) for m in head.modules()) == num_layers - 1
    assert head(torch.rand(4, 20)).shape == (4, 7)


def test_mlp_head_without_batch_norm():
    head = MLPHead(6, 3, hidden_dim=8, num_layers=2, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in head.modules())
    assert all(lin.bias is not None for lin in head.modules() if isinstance(lin, nn.Linear))
    assert n_params(head) == (6 * 8 + 8) + (8 * 3 + 3)


def test_mlp_head_flattens_maps():
    head = MLPHead(10 * 4 * 4, 3, num_layers=1)
    assert head(torch.rand(2, 10, 4, 4)).shape == (2, 3)


def test_mlp_head_bad_layers():
    with pytest.raises(ValueError, match="num_layers must be >= 1, got 0"):
        MLPHead(4, 2, num_layers=0)


# ----------------------------------------------------------------- momentum_update
def pair():
    target = nn.Linear(3, 2)
    online = nn.Linear(3, 2)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        target.bias.copy_(torch.tensor([1.0, -1.0]))
        online.weight.copy_(torch.tensor([[0.0, 0.0, 1.0], [2.0, 2.0, 2.0]]))
        online.bias.copy_(torch.tensor([3.0, 1.0]))
    return target, online


def test_momentum_update_formula():
    target, online = pair()
    momentum_update(target, online, 0.75)
    # 0.75 * target + 0.25 * online, by hand
    torch.testing.assert_close(target.weight, torch.tensor([[0.75, 1.5, 2.5], [3.5, 4.25, 5.0]]))
    torch.testing.assert_close(target.bias, torch.tensor([1.5, -0.5]))
    # online untouched
    torch.testing.assert_close(online.weight, torch.tensor([[0.0, 0.0, 1.0], [2.0, 2.0, 2.0]]))


def test_momentum_update_matches_definition_on_random_tensors():
    g = torch.Generator().manual_seed(0)
    t = [torch.randn(5, 4, generator=g), torch.randn(7, generator=g)]
    o = [torch.randn(5, 4, generator=g), torch.randn(7, generator=g)]
    expected = [0.99 * a + 0.01 * b for a, b in zip(t, o)]
    momentum_update(t, o, 0.99)
    for a, e in zip(t, expected):
        torch.testing.assert_close(a, e)


def test_momentum_one_keeps_target_zero_copies():
    target, online = pair()
    before = [p.clone() for p in target.parameters()]
    momentum_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), before))
    momentum_update(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters()))


def test_momentum_update_does_not_track_gradients():
    target, online = pair()
    momentum_update(target, online, 0.5)
    assert target.weight.grad_fn is None and target.weight.requires_grad


def test_momentum_update_errors():
    target, online = pair()
    for m in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"momentum m must be in \[0, 1\], got {m}"):
            momentum_update(target, online, m)
    with pytest.raises(ValueError, match="target has 2 tensors, online has 1"):
        momentum_update(target, [online.weight], 0.9)
