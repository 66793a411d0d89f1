"""Networks: encoders, decoders, heads, and the momentum (EMA) update.

Encoders map images (B, C, H, W) to a representation; :func:`sslcourse.evaluate.extract_features`
flattens whatever they return into (B, D) for probing.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torchvision

__all__ = [
    "conv_bn_relu",
    "ConvEncoder",
    "ConvDecoder",
    "resnet18_cifar",
    "MLPHead",
    "momentum_update",
]


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias), batch norm, ReLU; 'same' padding, so only ``stride`` changes the size."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def _deconv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """Transposed 3x3 conv that doubles H and W exactly, then batch norm and ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ConvEncoder(nn.Module):
    """The convolutional encoder of the seed report 000 (after its Fig. 5).

    Nine conv layers, each followed by batch norm and ReLU; the two stride-2
    convolutions halve the resolution (no pooling, which the report found
    harmful for restoration)::

        3x3 w1, 3x3 w1, 3x3 w1 stride 2,
        3x3 w2, 3x3 w2, 3x3 w2 stride 2,
        3x3 w2, 1x1 w2, 1x1 out_channels

    with ``widths = (w1, w2) = (96, 192)`` and ``out_channels = 10`` in the
    report. Smaller widths give the same shape at a fraction of the cost; the
    CPU default of the course uses (32, 64).

    Input (B, in_channels, H, W) with H, W divisible by 4; output the latent
    map (B, out_channels, H/4, W/4).
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (96, 192), out_channels: int = 10) -> None:
        super().__init__()
        w1, w2 = widths
        self.in_channels, self.widths, self.out_channels = in_channels, (w1, w2), out_channels
        self.layers = nn.Sequential(
            conv_bn_relu(in_channels, w1),
            conv_bn_relu(w1, w1),
            conv_bn_relu(w1, w1, stride=2),
            conv_bn_relu(w1, w2),
            conv_bn_relu(w2, w2),
            conv_bn_relu(w2, w2, stride=2),
            conv_bn_relu(w2, w2),
            conv_bn_relu(w2, w2, kernel=1),
            conv_bn_relu(w2, out_channels, kernel=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvEncoder expects images (B, {self.in_channels}, H, W); got {tuple(x.shape)}"
            )
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"ConvEncoder needs H and W divisible by 4 (two stride-2 layers); got {tuple(x.shape[-2:])}")
        return self.layers(x)

    def truncated(self, depth: int) -> nn.Sequential:
        """The first ``depth`` layers (sharing weights), as an encoder of its own:
        probing ``truncated(6)`` reads the representation before the 1x1 bottleneck."""
        if not 1 <= depth <= len(self.layers):
            raise ValueError(f"depth must be in 1..{len(self.layers)}, got {depth}")
        return self.layers[:depth]


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: transposed convolutions back to the image.

    Input the latent map (B, latent_channels, h, w); output (B, out_channels,
    4h, 4w). ``final_activation="sigmoid"`` (the default) puts the output in
    [0, 1], where pixels live; ``None`` leaves it unbounded (colour channels,
    per-pixel logits).
    """

    def __init__(
        self,
        out_channels: int = 3,
        widths: Sequence[int] = (96, 192),
        latent_channels: int = 10,
        final_activation: str | None = "sigmoid",
    ) -> None:
        super().__init__()
        if final_activation not in ("sigmoid", None):
            raise ValueError(f"final_activation must be 'sigmoid' or None, got {final_activation!r}")
        self.final_activation = final_activation
        w1, w2 = widths
        self.layers = nn.Sequential(
            conv_bn_relu(latent_channels, w2, kernel=1),
            conv_bn_relu(w2, w2, kernel=1),
            conv_bn_relu(w2, w2),
            _deconv_bn_relu(w2, w2),
            conv_bn_relu(w2, w2),
            conv_bn_relu(w2, w1),
            _deconv_bn_relu(w1, w1),
            conv_bn_relu(w1, w1),
            nn.Conv2d(w1, out_channels, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.layers(z)
        return torch.sigmoid(out) if self.final_activation == "sigmoid" else out


def resnet18_cifar(in_channels: int = 3) -> nn.Module:
    """ResNet-18 with the CIFAR stem: a 3x3 stride-1 first conv and no max pool,
    so 32x32 images keep their detail. The classifier is removed.

    (B, in_channels, H, W) -> (B, 512).
    """
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


class MLPHead(nn.Module):
    """Linear layers with batch norm and ReLU between them: (B, in_dim) -> (B, out_dim).

    ``num_layers=1`` is a plain linear layer (a probe); 2 or 3 is the projection
    head of SimCLR, MoCo v2 and BYOL.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 512, num_layers: int = 2, batch_norm: bool = True) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = [nn.Flatten()]
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=not batch_norm)]
            if batch_norm:
                layers += [nn.BatchNorm1d(hidden_dim)]
            layers += [nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers += [nn.Linear(dim, out_dim)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@torch.no_grad()
def momentum_update(target: nn.Module | Iterable[torch.Tensor], online: nn.Module | Iterable[torch.Tensor], m: float) -> None:
    """Exponential moving average, in place: target <- m * target + (1 - m) * online.

    The momentum encoder of MoCo (He et al. 2020) and the target network of
    BYOL (Grill et al. 2020). One fused ``_foreach`` call over all parameters.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum m must be in [0, 1], got {m}")
    t = list(target.parameters()) if isinstance(target, nn.Module) else list(target)
    o = list(online.parameters()) if isinstance(online, nn.Module) else list(online)
    if len(t) != len(o):
        raise ValueError(f"momentum_update: target has {len(t)} tensors, online has {len(o)}")
    torch._foreach_lerp_(t, o, 1.0 - m)
