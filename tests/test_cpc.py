"""sslcourse.methods.CPC: the patch grid, the causal context, the InfoNCE step."""

from __future__ import annotations

import math

import pytest
import torch

from sslcourse.methods import CPC
from sslcourse.methods.cpc import PatchEncoder, RowContext, overlapping_patches


def images(b=4, size=24, seed=0):
    return torch.rand(b, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_overlapping_patches_cuts_the_grid_the_papers_describe():
    x = torch.arange(2 * 1 * 24 * 24, dtype=torch.float32).view(2, 1, 24, 24)
    grid = overlapping_patches(x, patch_size=8, stride=4)
    assert grid.shape == (2, 5, 5, 1, 8, 8)
    torch.testing.assert_close(grid[1, 2, 3, 0], x[1, 0, 8:16, 12:20])
    # half-overlapping neighbours share 4 columns
    torch.testing.assert_close(grid[0, 0, 0, 0, :, 4:], grid[0, 0, 1, 0, :, :4])
    with pytest.raises(ValueError, match="do not fit 24 x 24"):
        overlapping_patches(x, patch_size=32)


@pytest.mark.parametrize("kind", ["gru", "masked_conv"])
def test_context_cannot_see_the_rows_it_predicts(kind):
    """Changing rows below i (the patches CPC predicts from row i) leaves the context at rows <= i unchanged."""
    torch.manual_seed(0)
    context = RowContext(dim=16, context_dim=12, kind=kind).eval()
    z = torch.randn(3, 16, 6, 5)
    c = context(z)
    for i in range(5):
        changed = z.clone()
        changed[:, :, i + 1 :] = torch.randn_like(changed[:, :, i + 1 :]) * 10
        c2 = context(changed)
        torch.testing.assert_close(c2[:, :, : i + 1], c[:, :, : i + 1], msg=f"{kind}: context at rows <= {i} saw rows below")
        assert not torch.allclose(c2[:, :, i + 1 :], c[:, :, i + 1 :]), "the context ignores its own row"


def test_cpc_context_is_causal_end_to_end_through_the_encoder():
    """In the whole method: editing the image below a patch row leaves the context of the rows above unchanged."""
    torch.manual_seed(0)
    method = CPC(image_size=24, dim=16, width=8, context_dim=16).eval()
    x = images(2)
    c = method.context(method.encoder(x))
    edited = x.clone()
    edited[:, :, 16:] = 1.0  # pixels 16..23 belong to patch rows 3 and 4 only (rows start every 4 pixels, 8 tall)
    c2 = method.context(method.encoder(edited))
    torch.testing.assert_close(c2[:, :, :3], c[:, :, :3])


def test_layer_norm_keeps_patches_independent():
    torch.manual_seed(0)
    enc = PatchEncoder(dim=16, width=8, norm="layer").train()
    x = images(2)
    z = enc(x)
    other = x.clone()
    other[1] = torch.rand(1, 24, 24)  # change the second image only
    torch.testing.assert_close(enc(other)[0], z[0])


def test_training_step_starts_near_chance_and_gives_gradients():
    torch.manual_seed(0)
    method = CPC(image_size=24, dim=16, width=8, context_dim=16, steps=2)
    out = method.training_step((images(4), None))
    candidates = 4 * 5 * 5
    assert abs(float(out["loss"].detach()) - math.log(candidates)) < 0.5 * math.log(candidates)
    out["loss"].backward()
    for part in (method.encoder, method.context, method.predictors):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match=r"steps must be in 1..4 for a 5-row grid"):
        CPC(image_size=24, steps=5)
    with pytest.raises(ValueError, match="context must be 'gru' or 'masked_conv'"):
        RowContext(kind="lstm")
    with pytest.raises(ValueError, match="built for 24 x 24 images"):
        CPC(image_size=24).training_step((images(2, 16), None))
    with pytest.raises(ValueError, match="max_shift must be an int >= 0, got -1"):
        CPC(max_shift=-1)
