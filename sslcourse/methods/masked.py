"""Masked image modeling: hide most of an image's patches and reconstruct them.

- :class:`MAE` (He et al. 2021): a Vision Transformer encodes only the visible
  patches; a light decoder puts mask tokens where the hidden ones were and
  predicts their pixels; the loss counts the hidden patches only
  (:func:`sslcourse.losses.masked_mse`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import losses
from ..nets import TransformerBlock, VisionTransformer, sincos_position_embedding
from ..patches import patchify, random_masking, unpatchify
from .base import SSLMethod, check_number

__all__ = ["MAE"]


def _check_masks_some_patches(mask_ratio: float, num_patches: int) -> None:
    """Refuse a ratio that hides no patch (nothing to reconstruct: a NaN loss) or every patch
    (nothing to encode), for images of ``num_patches`` patches, as :func:`~sslcourse.patches.random_masking` rounds."""
    visible = int(round((1.0 - mask_ratio) * num_patches))
    if not 1 <= visible <= num_patches - 1:
        hidden = num_patches - visible
        raise ValueError(
            f"mask_ratio {mask_ratio} hides {hidden} of the {num_patches} patches; it must hide at least 1 and at most "
            f"{num_patches - 1} (with {num_patches} patches, 1/{num_patches} = {1 / num_patches:.4g} hides one and "
            f"{num_patches - 1}/{num_patches} = {(num_patches - 1) / num_patches:.4g} leaves one visible)"
        )


class MAE(SSLMethod):
    """Masked autoencoder (He et al. 2021).

    Each step embeds the image's patches with their positions, keeps a random
    ``1 - mask_ratio`` of them per image (:func:`~sslcourse.patches.random_masking`),
    and runs the encoder (a :class:`~sslcourse.nets.VisionTransformer`) on
    those alone, which is what makes MAE cheap. The decoder maps the encoded
    tokens to its own width, appends one shared learned mask token per hidden
    patch, restores the original order, adds its own position embeddings, runs
    a few Transformer blocks and predicts every patch's pixels. The loss is the
    mean squared error on the hidden patches only; with ``norm_pix_loss`` the
    target is each patch normalized by its own mean and standard deviation (the
    paper's better option).

    Args:
        encoder: a VisionTransformer; default one with ``image_size``, ``patch_size``,
            ``in_channels``, ``dim``, ``depth``, ``heads``.
        mask_ratio: the share of patches hidden (0.75 in the paper), in (0, 1); it must hide
            at least one patch and leave at least one visible.
        decoder_dim, decoder_depth, decoder_heads: the decoder (512, 8, 16 in the paper).
        norm_pix_loss: normalized-pixel targets.

    The representation is the encoder's class token (``encoder(images)``), on all patches.
    ``training_step`` returns ``{"loss"}``.
    """

    def __init__(
        self,
        encoder: VisionTransformer | None = None,
        *,
        in_channels: int = 1,
        image_size: int = 16,
        patch_size: int = 4,
        dim: int = 96,
        depth: int = 4,
        heads: int = 4,
        mask_ratio: float = 0.75,
        decoder_dim: int = 64,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        self.mask_ratio = check_number("mask_ratio", mask_ratio, low=0, high=1, low_open=True, high_open=True)
        if encoder is None:
            encoder = VisionTransformer(image_size, patch_size, in_channels, dim, depth, heads)
        if not isinstance(encoder, VisionTransformer):
            raise TypeError(f"MAE needs a VisionTransformer encoder (it encodes a subset of tokens); got {type(encoder).__name__}")
        _check_masks_some_patches(mask_ratio, encoder.num_patches)
        self.init_encoder(encoder, image_size=encoder.image_size)
        self.patch_size, self.norm_pix_loss = encoder.patch_size, norm_pix_loss
        self.decoder_embed = nn.Linear(encoder.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos_embed", sincos_position_embedding(decoder_dim, encoder.grid).unsqueeze(0), persistent=False)
        self.decoder_blocks = nn.ModuleList(TransformerBlock(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size**2 * self.in_channels)

    def forward_encoder(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """Encode the visible patches: images (B, C, H, W) -> (latent (B, 1 + L_keep, dim), mask (B, L), ids_restore (B, L))."""
        tokens = self.encoder.embed_patches(images)  # (B, L, dim), positions added
        visible, mask, ids_restore = random_masking(tokens, self.mask_ratio, generator=generator)
        return self.encoder.encode_tokens(visible), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch: latent (B, 1 + L_keep, dim), ids_restore (B, L) -> (B, L, p*p*C)."""
        x = self.decoder_embed(latent)  # (B, 1 + L_keep, D_dec)
        b, length = ids_restore.shape
        cls, visible = x[:, :1], x[:, 1:]
        masks = self.mask_token.expand(b, length - visible.shape[1], -1)
        x = torch.cat([visible, masks], dim=1)  # (B, L, D_dec): visible first, as random_masking left them
        x = x.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # original order
        x = torch.cat([cls, x + self.decoder_pos_embed], dim=1)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # drop the class token

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """The patches to reconstruct, (B, L, p*p*C); normalized per patch if ``norm_pix_loss``."""
        target = patchify(images, self.patch_size)
        if self.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return target

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        self.check_images(x)
        latent, mask, ids_restore = self.forward_encoder(x)
        pred = self.forward_decoder(latent, ids_restore)
        return {"loss": losses.masked_mse(pred, self.targets(x), mask)}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For figures: (masked input, reconstruction, reconstruction with the visible patches pasted back),
        each (B, C, H, W) in pixel units (with ``norm_pix_loss`` each predicted patch gets the true
        patch's mean and standard deviation back, as the paper's figures do)."""
        latent, mask, ids_restore = self.forward_encoder(images, generator)
        pred = self.forward_decoder(latent, ids_restore)
        if self.norm_pix_loss:
            true = patchify(images, self.patch_size)
            pred = pred * (true.var(dim=-1, keepdim=True) + 1e-6).sqrt() + true.mean(dim=-1, keepdim=True)
        shape = dict(channels=self.in_channels, image_size=self.image_size)
        patches = patchify(images, self.patch_size)
        hidden = mask.unsqueeze(-1)
        masked_input = unpatchify(patches * (1 - hidden), self.patch_size, **shape)
        reconstruction = unpatchify(pred, self.patch_size, **shape).clamp(0, 1)
        pasted = unpatchify(patches * (1 - hidden) + pred * hidden, self.patch_size, **shape).clamp(0, 1)
        return masked_input, reconstruction, pasted

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, patch_size={self.patch_size}, mask_ratio={self.mask_ratio}, norm_pix_loss={self.norm_pix_loss}"
