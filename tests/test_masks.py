"""sslcourse.masks: the inpainting masks of the context encoder."""

from __future__ import annotations

import pytest
import torch

from sslcourse import masks
from sslcourse.masks import central_mask, make_mask, random_block_mask, random_region_mask

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# name -> callable(shape, generator=..., device=...) -> mask
RANDOM = {
    "random_block_mask": lambda shape, **kw: random_block_mask(shape, 4, 1 / 16, **kw),
    "random_region_mask": lambda shape, **kw: random_region_mask(shape, 0.25, **kw),
}
ALL = {"central_mask": lambda shape, generator=None, **kw: central_mask(shape, 0.25, **kw), **RANDOM}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------- shape, dtype, device
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
def test_bool_b1hw_on_the_requested_device(name, device):
    mask = ALL[name]((5, 3, 16, 12), generator=gen(), device=device)
    assert mask.dtype == torch.bool
    assert mask.shape == (5, 1, 16, 12)
    assert mask.device.type == device


@pytest.mark.parametrize("name", ALL)
def test_accepts_bhw_and_torch_size(name):
    assert ALL[name]((2, 8, 8)).shape == (2, 1, 8, 8)
    assert ALL[name](torch.zeros(2, 3, 8, 8).shape).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("shape", [(4, 4), (2, 1, 1, 8, 8), (0, 1, 8, 8)])
@pytest.mark.parametrize("name", ALL)
def test_bad_shape_names_function_and_what_came(name, shape):
    fn = getattr(masks, name)
    with pytest.raises(ValueError) as info:
        fn(shape)
    assert name in str(info.value) and str(tuple(shape)) in str(info.value)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
@pytest.mark.parametrize("fn", [central_mask, random_region_mask])
def test_fraction_out_of_range(fn, fraction):
    with pytest.raises(ValueError) as info:
        fn((2, 1, 8, 8), fraction)
    assert fn.__name__ in str(info.value) and str(fraction) in str(info.value)


def test_random_block_bad_arguments():
    with pytest.raises(ValueError, match="random_block_mask: block_fraction must be in"):
        random_block_mask((2, 1, 8, 8), 2, 1.5)
    with pytest.raises(ValueError, match="random_block_mask: num_blocks must be an int >= 0, got -1"):
        random_block_mask((2, 1, 8, 8), -1)


# ------------------------------------------------------------------ central
def test_central_quarter_of_16x16_is_the_middle_8x8():
    mask = central_mask((3, 1, 16, 16), 0.25)
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[4:12, 4:12] = True
    for m in mask:
        assert torch.equal(m[0], expected)


@pytest.mark.parametrize("h, w", [(16, 16), (32, 32), (15, 15), (16, 12), (9, 20)])
@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.4, 0.7])
def test_central_exactly_centred_with_about_the_area(h, w, fraction):
    mask = central_mask((2, 1, h, w), fraction)[0, 0]
    rows = mask.any(1).nonzero().flatten()
    cols = mask.any(0).nonzero().flatten()
    top, bottom = int(rows[0]), h - 1 - int(rows[-1])
    left, right = int(cols[0]), w - 1 - int(cols[-1])
    assert top == bottom and left == right, "equal margins on both sides"
    assert torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.flip(1))
    # a full rectangle
    assert int(mask.sum()) == len(rows) * len(cols)
    # each side is within 1 pixel of sqrt(fraction) * side (kept to the parity of the side)
    assert abs(len(rows) - fraction**0.5 * h) <= 1.0 and abs(len(cols) - fraction**0.5 * w) <= 1.0


def test_central_same_for_every_image_and_edge_fractions():
    mask = central_mask((4, 3, 16, 16), 0.3)
    assert all(torch.equal(mask[0], m) for m in mask)
    assert not central_mask((2, 1, 16, 16), 0.0).any()
    assert central_mask((2, 1, 16, 16), 1.0).all()


# ------------------------------------------------------------------- random
@pytest.mark.parametrize("name", RANDOM)
def test_random_masks_differ_per_image(name):
    mask = RANDOM[name]((8, 1, 16, 16), generator=gen())
    assert len({tuple(m.flatten().tolist()) for m in mask}) == len(mask)


@pytest.mark.parametrize("name", RANDOM)
def test_reproducible_with_a_generator(name):
    fn = RANDOM[name]
    a = fn((6, 1, 16, 16), generator=gen(1))
    b = fn((6, 1, 16, 16), generator=gen(1))
    c = fn((6, 1, 16, 16), generator=gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", RANDOM)
def test_works_without_a_generator(name):
    assert RANDOM[name]((2, 1, 16, 16)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", RANDOM)
def test_cpu_generator_gives_the_same_mask_on_any_device(name, device):
    a = RANDOM[name]((4, 1, 16, 16), generator=gen(3), device=device)
    ref = RANDOM[name]((4, 1, 16, 16), generator=gen(3))
    assert a.device.type == device
    assert torch.equal(a.cpu(), ref)


def test_random_blocks_cover_between_one_and_all_blocks():
    mask = random_block_mask((256, 1, 16, 16), 4, 1 / 16, generator=gen())
    covered = mask.flatten(1).sum(1)
    assert int(covered.min()) >= 16 and int(covered.max()) <= 64, "each block is 4x4 = 16 pixels"
    assert bool((covered == 64).any()) and bool((covered < 64).any()), "blocks may overlap, and usually do not all"
    # 4 blocks of 1/16 hide about a fifth of the image on average
    assert 0.17 < mask.float().mean().item() < 0.25


def test_random_blocks_are_rectangles_inside_the_image():
    mask = random_block_mask((64, 1, 16, 16), 1, 0.25, generator=gen())
    for m in mask[:, 0]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert len(rows) == len(cols) == 8 and int(m.sum()) == 64
        assert int(rows[-1] - rows[0]) == 7 and int(cols[-1] - cols[0]) == 7
    # every position is used: top-left corners spread over 0..8
    tops = {int(m.any(1).nonzero()[0]) for m in mask[:, 0]}
    assert len(tops) >= 5 and min(tops) >= 0 and max(tops) <= 8


def test_zero_blocks_hide_nothing():
    assert not random_block_mask((3, 1, 8, 8), 0).any()
    assert not random_block_mask((3, 1, 8, 8), 4, 0.0).any()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_random_region_hides_exactly_the_fraction(fraction):
    mask = random_region_mask((16, 1, 16, 16), fraction, generator=gen())
    assert mask.flatten(1).sum(1).tolist() == [round(fraction * 256)] * 16


def _neighbour_agreement(mask: torch.Tensor) -> float:
    horizontal = (mask[..., 1:] == mask[..., :-1]).float().mean()
    vertical = (mask[..., 1:, :] == mask[..., :-1, :]).float().mean()
    return float((horizontal + vertical) / 2)


def test_random_regions_are_blobs_not_scattered_pixels():
    regions = random_region_mask((64, 1, 16, 16), 0.25, generator=gen())
    # for scattered pixels at 25% two neighbours agree 62.5% of the time
    assert _neighbour_agreement(regions) > 0.85
    rougher = random_region_mask((64, 1, 16, 16), 0.25, smoothness=0.03, generator=gen())
    assert _neighbour_agreement(rougher) < _neighbour_agreement(regions)


def test_random_region_covers_the_whole_image_evenly():
    # the smoothed field is stationary: borders are hidden as often as the centre
    mask = random_region_mask((2000, 1, 16, 16), 0.25, generator=gen()).float().mean(0)[0]
    assert 0.18 < mask[0].mean().item() < 0.32 and 0.18 < mask[:, 0].mean().item() < 0.32
    assert 0.18 < mask[6:10, 6:10].mean().item() < 0.32


def test_random_region_bad_smoothness():
    with pytest.raises(ValueError, match="random_region_mask: smoothness must be > 0, got 0"):
        random_region_mask((2, 1, 8, 8), 0.25, smoothness=0)


# ----------------------------------------------------------------- make_mask
def test_make_mask_dispatches():
    shape = (6, 1, 16, 16)
    assert torch.equal(make_mask("central", shape, 0.25), central_mask(shape, 0.25))
    assert torch.equal(
        make_mask("random_block", shape, 0.25, num_blocks=4, generator=gen(5)),
        random_block_mask(shape, 4, 0.25 / 4, generator=gen(5)),
    )
    assert torch.equal(make_mask("random_region", shape, 0.3, generator=gen(5)), random_region_mask(shape, 0.3, generator=gen(5)))


def test_make_mask_unknown_kind():
    with pytest.raises(ValueError, match="unknown mask 'square'"):
        make_mask("square", (2, 1, 8, 8))
