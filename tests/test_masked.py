"""MAE: the encoder sees only the visible patches, the loss counts only the hidden ones, the decoder
puts every prediction back at its patch, and reconstructions have the right shapes."""

from __future__ import annotations

import re

import pytest
import torch

from sslcourse.methods import MAE
from sslcourse.nets import VisionTransformer
from sslcourse.patches import patchify


def _images(n=4, size=16, channels=1, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def small_mae(**kwargs):
    torch.manual_seed(0)
    return MAE(dim=32, depth=2, heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2, **kwargs)


def test_mae_encoder_sees_only_the_visible_share_of_patches():
    mae = small_mae(mask_ratio=0.75)
    latent, mask, ids_restore = mae.forward_encoder(_images())
    assert latent.shape == (4, 1 + 4, 32)  # class token + 4 of 16 patches
    assert mask.shape == (4, 16) and (mask.sum(1) == 12).all()
    assert ids_restore.shape == (4, 16)


def test_mae_encoder_output_does_not_depend_on_hidden_patches():
    mae = small_mae().eval()
    x = _images(2)
    g = lambda: torch.Generator().manual_seed(7)
    latent, mask, _ = mae.forward_encoder(x, g())
    # change the pixels of every hidden patch; the visible tokens, and so the latent, stay the same
    patches = patchify(x, 4)
    noisy = patches + 5.0 * mask.unsqueeze(-1)
    from sslcourse.patches import unpatchify

    latent2, mask2, _ = mae.forward_encoder(unpatchify(noisy, 4, channels=1, image_size=16), g())
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(latent, latent2)


def test_mae_loss_ignores_the_visible_patches():
    mae = small_mae()
    x = _images()
    latent, mask, ids_restore = mae.forward_encoder(x)
    pred = mae.forward_decoder(latent, ids_restore)
    assert pred.shape == (4, 16, 16)
    pred.retain_grad()
    from sslcourse.losses import masked_mse

    masked_mse(pred, mae.targets(x), mask).backward()
    assert pred.grad[mask == 0].abs().sum() == 0 and pred.grad[mask == 1].abs().sum() > 0


def test_mae_decoder_puts_each_prediction_back_at_its_patch():
    """A decoder whose output is its input's position code shows where each token landed."""
    mae = small_mae(mask_ratio=0.5)
    with torch.no_grad():
        for block in mae.decoder_blocks:  # blocks that add nothing
            for p in block.parameters():
                p.zero_()
        mae.decoder_embed.weight.zero_()
        mae.decoder_embed.bias.zero_()
        mae.mask_token.zero_()
    mae.decoder_norm = torch.nn.Identity()
    mae.decoder_pred = torch.nn.Identity()
    latent, _, ids_restore = mae.forward_encoder(_images())
    out = mae.forward_decoder(latent, ids_restore)  # now: the decoder's position embedding of each slot
    torch.testing.assert_close(out, mae.decoder_pos_embed.expand(4, -1, -1))


def test_mae_norm_pix_targets_are_normalized_per_patch():
    mae = small_mae(norm_pix_loss=True)
    t = mae.targets(_images())
    torch.testing.assert_close(t.mean(-1), torch.zeros(4, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.std(-1), torch.ones(4, 16), atol=1e-3, rtol=0)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_mae_reconstruct_returns_images(norm_pix):
    mae = small_mae(norm_pix_loss=norm_pix, in_channels=3)
    x = _images(channels=3)
    masked, recon, pasted = mae.reconstruct(x)
    for t in (masked, recon, pasted):
        assert t.shape == x.shape and torch.isfinite(t).all()
    visible = (masked != 0).any(1, keepdim=True).expand_as(x)  # a visible patch keeps its pixels in the paste
    torch.testing.assert_close(pasted[visible], x[visible])


def test_mae_trains_every_parameter_and_the_loss_falls():
    mae = small_mae()
    x = (_images(32) > 0.5).float()
    opt = torch.optim.AdamW(mae.parameters(), lr=3e-3)
    first = None
    for step in range(40):
        loss = mae.training_step((x, None))["loss"]
        opt.zero_grad()
        loss.backward()
        if step == 0:
            first = loss.item()
            missing = [n for n, p in mae.named_parameters() if p.grad is None]
            assert not missing, f"no gradient reaches {missing}"
        opt.step()
    assert loss.item() < 0.8 * first


def test_mae_needs_a_vision_transformer():
    from sslcourse.nets import ConvEncoder

    with pytest.raises(TypeError, match="VisionTransformer"):
        MAE(ConvEncoder(1, (8, 8)))
    assert isinstance(MAE().encoder, VisionTransformer)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.25, 1.5, float("nan"), True])
def test_mae_rejects_a_mask_ratio_outside_the_open_unit_interval(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be a number in \(0, 1\), got " + re.escape(repr(ratio))):
        MAE(mask_ratio=ratio)


@pytest.mark.parametrize("ratio, hidden", [(0.02, 0), (0.99, 16)])
def test_mae_rejects_a_mask_ratio_that_hides_no_patch_or_every_patch(ratio, hidden):
    # 16 x 16 images in 4 x 4 patches: 16 patches; 0.02 rounds to no hidden patch (a NaN loss), 0.99 to all 16
    with pytest.raises(ValueError, match=rf"mask_ratio {ratio} hides {hidden} of the 16 patches; it must hide at least 1 and at most 15"):
        MAE(mask_ratio=ratio)


@pytest.mark.parametrize("ratio", [1 / 16, 15 / 16])
def test_mae_accepts_the_extreme_ratios_that_hide_one_patch_or_keep_one(ratio):
    mae = small_mae(mask_ratio=ratio)
    loss = mae.training_step((_images(), None))["loss"]
    assert torch.isfinite(loss)
