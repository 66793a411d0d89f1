"""The small Vision Transformer: shapes, positions, the token path MAE uses, class-token attention."""

from __future__ import annotations

import pytest
import torch

from sslcourse.nets import TransformerBlock, VisionTransformer, sincos_position_embedding


def test_sincos_position_embedding_gives_every_patch_its_own_code():
    pos = sincos_position_embedding(32, 4)
    assert pos.shape == (16, 32) and pos.dtype == torch.float32
    distances = torch.cdist(pos, pos) + torch.eye(16) * 1e9
    assert distances.min() > 0.1, "two patches share (almost) the same position code"
    # the first half encodes the row only: patches of one row share it
    assert torch.allclose(pos[0, :16], pos[3, :16]) and not torch.allclose(pos[0, :16], pos[4, :16])
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_embedding(30, 4)


def test_vit_maps_images_to_class_token_features_and_keeps_device_and_dtype():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, in_channels=1, dim=32, depth=2, heads=4)
    x = torch.rand(5, 1, 16, 16)
    out = vit(x)
    assert out.shape == (5, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert vit.num_patches == 16 and vit.embed_patches(x).shape == (5, 16, 32)


def test_vit_encode_tokens_accepts_any_subset_of_tokens_and_is_permutation_equivariant():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=2, in_channels=3, dim=16, depth=2, heads=2).eval()
    tokens = vit.embed_patches(torch.rand(2, 3, 8, 8))  # (2, 16, 16)
    subset = tokens[:, :4]
    out = vit.encode_tokens(subset)
    assert out.shape == (2, 5, 16)
    # positions live in the tokens, so the order of the tokens does not matter to the class token
    perm = torch.tensor([2, 0, 3, 1])
    out_perm = vit.encode_tokens(subset[:, perm])
    torch.testing.assert_close(out_perm[:, 0], out[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_perm[:, 1:], out[:, 1:][:, perm], atol=1e-5, rtol=1e-5)


def test_vit_images_differ_only_in_one_patch_change_that_token_s_embedding_only():
    vit = VisionTransformer(image_size=8, patch_size=4, in_channels=1, dim=16, depth=1, heads=2)
    a = torch.rand(1, 1, 8, 8)
    b = a.clone()
    b[..., 4:, :4] += 1.0  # row 1, column 0: token 2
    diff = (vit.embed_patches(a) - vit.embed_patches(b)).abs().sum(-1)[0]
    assert diff[2] > 0 and diff[[0, 1, 3]].sum() == 0


def test_vit_class_attention_is_one_map_per_head_over_the_patch_grid():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, dim=32, depth=2, heads=4)
    maps = vit.class_attention(torch.rand(3, 1, 16, 16))
    assert maps.shape == (3, 4, 4, 4)
    assert (maps >= 0).all() and (maps.sum(dim=(2, 3)) <= 1 + 1e-5).all()


def test_transformer_block_attention_rows_are_distributions():
    block = TransformerBlock(16, 4)
    w = block.attention(torch.randn(2, 7, 16))
    assert w.shape == (2, 4, 7, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7))


def test_vit_trains_every_parameter():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=4, dim=16, depth=2, heads=2)
    vit(torch.rand(4, 1, 8, 8)).pow(2).sum().backward()
    missing = [n for n, p in vit.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_vit_rejects_images_of_the_wrong_shape():
    vit = VisionTransformer(image_size=16, patch_size=4)
    with pytest.raises(ValueError, match=r"expects images \(B, 1, 16, 16\)"):
        vit(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        VisionTransformer(image_size=15, patch_size=4)


def test_random_init_like_redraws_every_vit_parameter():
    from sslcourse.evaluate import random_init_like

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=4, dim=16, depth=2, heads=2)
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(1.0)  # as if trained
    fresh = random_init_like(vit, seed=3)
    same = [n for (n, a), b in zip(vit.named_parameters(), fresh.parameters()) if torch.equal(a, b)]
    assert not same, f"random_init_like left these parameters as they were: {same}"
