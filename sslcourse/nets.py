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
    "sincos_position_embedding",
    "TransformerBlock",
    "VisionTransformer",
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


# ----------------------------------------------------------------- a small Vision Transformer
def sincos_position_embedding(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings for a grid x grid of patches (as in MAE).

    Half of the ``dim`` channels encode the row, half the column, each with
    sines and cosines of geometrically spaced frequencies (Vaswani et al. 2017).

    Returns:
        (grid * grid, dim), patch ``l = i * grid + j`` at row i, column j.
    """
    if dim % 4:
        raise ValueError(f"sincos_position_embedding: dim must be divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (dim/4,)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (L,) -> (L, dim/2)
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


class TransformerBlock(nn.Module):
    """A pre-norm Transformer block: x + MSA(LN(x)), then x + MLP(LN(x)). (B, L, D) -> (B, L, D).

    Attention is PyTorch's ``nn.MultiheadAttention`` (its fused scaled-dot-product
    kernels when no weights are asked for); the MLP is Linear-GELU-Linear.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"TransformerBlock: dim {dim} must be divisible by heads {heads}")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights of this block for input x (B, L, D): (B, heads, L, L), rows sum to 1."""
        h = self.norm1(x)
        return self.attn(h, h, h, need_weights=True, average_attn_weights=False)[1]


class VisionTransformer(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021) whose token sequence the methods can reach.

    Images (B, C, H, W) are cut into p x p patches, each embedded linearly (a
    convolution with stride p); fixed sine-cosine position embeddings are added;
    a learned class token is put in front; pre-norm blocks and a final layer
    norm follow. ``forward`` returns the class token's output, (B, dim).

    The pieces MAE needs: ``embed_patches(images)`` -> (B, L, dim) with positions,
    then any subset of those tokens through ``encode_tokens(tokens)`` ->
    (B, 1 + L', dim) with the class token first.

    Sizes: on 16 x 16 digits, patch 4 gives L = 16 tokens; the defaults (dim 96,
    depth 4, 4 heads) have about 0.3 M parameters and train on a CPU.
    """

    def __init__(
        self,
        image_size: int = 16,
        patch_size: int = 4,
        in_channels: int = 1,
        dim: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"VisionTransformer: image_size {image_size} must be divisible by patch_size {patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.grid = image_size // patch_size
        self.num_patches = self.grid**2
        self.dim = dim
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_position_embedding(dim, self.grid).unsqueeze(0), persistent=False)  # (1, L, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw what the layers' own ``reset_parameters`` do not cover: the class token and the
        attention projections. (:func:`sslcourse.evaluate.random_init_like` calls it, then the layers'.)"""
        nn.init.normal_(self.cls_token, std=0.02)
        for block in self.blocks:
            block.attn._reset_parameters()

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, dim): patch embeddings plus their positions, row by row."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"VisionTransformer expects images (B, {self.in_channels}, {self.image_size}, {self.image_size}), got {tuple(images.shape)}"
            )
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, L, dim)
        return tokens + self.pos_embed

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L', dim) patch tokens (with positions) -> (B, 1 + L', dim), the class token first."""
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, dim), the class token's output."""
        return self.encode_tokens(self.embed_patches(images))[:, 0]

    @torch.no_grad()
    def class_attention(self, images: torch.Tensor) -> torch.Tensor:
        """The last block's attention of the class token to each patch: (B, heads, grid, grid).

        The maps DINO shows (Caron et al. 2021, figure 1); each head's map sums to at
        most 1 (the class token's attention to itself is left out).
        """
        x = torch.cat([self.cls_token.expand(images.shape[0], -1, -1), self.embed_patches(images)], dim=1)
        for block in self.blocks[:-1]:
            x = block(x)
        weights = self.blocks[-1].attention(x)  # (B, heads, 1 + L, 1 + L)
        return weights[:, :, 0, 1:].reshape(images.shape[0], -1, self.grid, self.grid)
