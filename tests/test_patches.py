"""sslcourse.patches: patchify, tile grids, relative positions, jigsaw permutations, token masking."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sslcourse.patches import (
    RELATIVE_POSITION_OFFSETS,
    all_permutations,
    grid_tile_size,
    jigsaw_permutations,
    min_hamming_distance,
    patch_grid,
    patchify,
    random_masking,
    relative_position_pairs,
    shuffle_tiles,
    unpatchify,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coordinate_images(b: int, h: int, w: int) -> torch.Tensor:
    """(b, 1, h, w) float: each pixel holds its flat index row * w + col (exact in float32)."""
    return torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).repeat(b, 1, 1, 1)


# ----------------------------------------------------------------- patchify
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("c, h, w, p", [(1, 16, 16, 4), (3, 32, 32, 8), (3, 8, 12, 4), (2, 6, 6, 1), (1, 5, 5, 5)])
def test_patchify_unpatchify_round_trip(c, h, w, p, device):
    x = torch.rand(2, c, h, w, generator=gen()).to(device)
    tokens = patchify(x, p)
    assert tokens.shape == (2, (h // p) * (w // p), p * p * c)
    assert tokens.device == x.device
    assert torch.equal(unpatchify(tokens, p, grid=(h // p, w // p)), x)
    assert torch.equal(unpatchify(tokens, p, image_size=(h, w)), x)
    if h == w:
        assert torch.equal(unpatchify(tokens, p), x)
        assert torch.equal(unpatchify(tokens, p, channels=c, image_size=h), x)


def test_patchify_mae_ordering():
    """Patch l = i * w + j is the block at grid row i, column j, flattened as (p, p, C)."""
    x = torch.rand(2, 3, 8, 12, generator=gen())
    p = 4
    tokens = patchify(x, p)
    for i, j in itertools.product(range(2), range(3)):
        block = x[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p]  # (B, C, p, p)
        assert torch.equal(tokens[:, i * 3 + j], block.permute(0, 2, 3, 1).reshape(2, -1))
    # channel varies fastest: the first C entries are pixel (0, 0) of the first patch
    assert torch.equal(tokens[0, 0, :3], x[0, :, 0, 0])


def test_unpatchify_inverts_on_random_tokens():
    tokens = torch.rand(3, 12, 2 * 4 * 4, generator=gen())
    assert torch.equal(patchify(unpatchify(tokens, 4, grid=(3, 4)), 4), tokens)


@pytest.mark.parametrize(
    "shape, p, match",
    [
        ((2, 1, 15, 16), 4, r"divisible by patch_size 4.*15 x 16"),
        ((2, 1, 16, 18), 4, r"divisible by patch_size 4.*16 x 18"),
        ((1, 16, 16), 4, r"patchify expects images \(B, C, H, W\); got shape \(1, 16, 16\)"),
        ((2, 1, 16, 16), 0, r"patch_size must be an int >= 1, got 0"),
    ],
)
def test_patchify_errors(shape, p, match):
    with pytest.raises(ValueError, match=match):
        patchify(torch.rand(*shape), p)


def test_patchify_type_error():
    with pytest.raises(TypeError, match="patchify expects images as a tensor.*ndarray"):
        patchify(torch.rand(1, 1, 4, 4).numpy(), 2)


def test_unpatchify_errors():
    tokens = torch.rand(2, 6, 16)
    with pytest.raises(ValueError, match="6 patches do not form a square grid"):
        unpatchify(tokens, 4)
    with pytest.raises(ValueError, match=r"a grid of 2 x 2 patches holds 4 patches, got 6"):
        unpatchify(tokens, 4, grid=(2, 2))
    with pytest.raises(ValueError, match="not a multiple of patch_size\\*\\*2 = 9"):
        unpatchify(tokens, 3)
    with pytest.raises(ValueError, match="expected patches of dimension patch_size\\*\\*2 \\* channels = 48, got 16"):
        unpatchify(tokens, 4, channels=3, grid=(2, 3))
    with pytest.raises(ValueError, match="not both"):
        unpatchify(tokens, 4, grid=(2, 3), image_size=(8, 12))
    with pytest.raises(ValueError, match="image_size 8 x 10 is not divisible by patch_size 4"):
        unpatchify(tokens, 4, image_size=(8, 10))
    with pytest.raises(ValueError, match=r"unpatchify expects patches \(B, L, D\); got shape \(6, 16\)"):
        unpatchify(tokens[0], 4)


# ----------------------------------------------------------------- tile grids
@pytest.mark.parametrize(
    "h, w, grid, gap, jitter, expected",
    [(32, 32, 3, 2, 0, 8), (32, 32, 3, 0, 1, 8), (32, 32, 3, 2, 1, 6), (48, 48, 3, 4, 0, 12), (30, 40, 3, 0, 0, 10), (16, 16, 2, 0, 0, 8)],
)
def test_grid_tile_size_formula(h, w, grid, gap, jitter, expected):
    assert grid_tile_size(h, w, grid, gap=gap, jitter=jitter) == expected == min(h, w) // grid - gap - 2 * jitter


def test_grid_tile_size_too_small():
    with pytest.raises(ValueError, match="cells of 5 pixels; gap 3 and jitter 1 leave tiles of 0 pixels"):
        grid_tile_size(16, 16, 3, gap=3, jitter=1)
    with pytest.raises(ValueError, match="gap must be an int >= 0, got -1"):
        grid_tile_size(16, 16, 3, gap=-1)


def _tile_origins(tiles: torch.Tensor, width: int) -> torch.Tensor:
    """From tiles of a coordinate image: (B, n, 2) top-left (row, col); checks each tile is a contiguous block."""
    t = tiles.shape[-1]
    first = tiles[..., 0, 0, 0].long()  # (B, n)
    rows, cols = first // width, first % width
    expected = first[..., None, None] + (torch.arange(t).view(t, 1) * width + torch.arange(t).view(1, t))
    assert torch.equal(tiles[:, :, 0].long(), expected), "every tile is a contiguous t x t block of the image"
    return torch.stack([rows, cols], -1)


def test_patch_grid_without_jitter_is_fixed_slices():
    x = torch.rand(2, 3, 32, 32, generator=gen())
    tiles = patch_grid(x, 3, gap=2)
    assert tiles.shape == (2, 9, 3, 8, 8)
    # cell 10, border (32 - 30) // 2 = 1, tile centred in its cell: starts at 1 + 10 i + 1
    for i, j in itertools.product(range(3), range(3)):
        r, c = 2 + 10 * i, 2 + 10 * j
        assert torch.equal(tiles[:, 3 * i + j], x[:, :, r : r + 8, c : c + 8])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("grid, gap, jitter", [(3, 2, 0), (3, 0, 1), (3, 2, 2), (4, 1, 1), (2, 3, 3)])
def test_patch_grid_geometry_with_gap_and_jitter(grid, gap, jitter, device):
    b, size = 16, 36
    x = coordinate_images(b, size, size).to(device)
    tiles = patch_grid(x, grid, gap=gap, jitter=jitter, generator=gen())
    t = grid_tile_size(size, size, grid, gap=gap, jitter=jitter)
    assert tiles.shape == (b, grid * grid, 1, t, t) and tiles.device == x.device
    origins = _tile_origins(tiles.cpu(), size).view(b, grid, grid, 2)
    cell = size // grid
    nominal = (size - grid * cell) // 2 + torch.arange(grid) * cell + (cell - t) // 2
    shift_r = origins[..., 0] - nominal.view(1, grid, 1)
    shift_c = origins[..., 1] - nominal.view(1, 1, grid)
    assert shift_r.abs().max() <= jitter and shift_c.abs().max() <= jitter
    # neighbours never overlap and are at least `gap` pixels apart
    assert (origins[:, 1:, :, 0] - origins[:, :-1, :, 0]).min() >= t + gap
    assert (origins[:, :, 1:, 1] - origins[:, :, :-1, 1]).min() >= t + gap
    if jitter:
        # every shift value occurs, and shifts differ per image and per tile
        assert set(shift_r.flatten().tolist()) == set(range(-jitter, jitter + 1))
        assert not torch.equal(shift_r[0], shift_r[1])
        assert len(set(shift_c[0].flatten().tolist())) > 1


def test_patch_grid_reproducible_and_cpu_generator_on_device():
    x = torch.rand(4, 1, 32, 32, generator=gen())
    a = patch_grid(x, 3, jitter=1, generator=gen(3))
    assert torch.equal(a, patch_grid(x, 3, jitter=1, generator=gen(3)))
    assert not torch.equal(a, patch_grid(x, 3, jitter=1, generator=gen(4)))
    assert patch_grid(x, 3, jitter=1).shape == a.shape  # works without a generator


def test_patch_grid_non_square_image_centres_the_grid():
    x = coordinate_images(1, 30, 40)
    origins = _tile_origins(patch_grid(x, 3), 40).view(3, 3, 2)
    assert origins[:, 0, 1].tolist() == [5, 5, 5]  # (40 - 30) // 2 pixels of border on the left
    assert origins[0, :, 0].tolist() == [0, 0, 0]


def test_patch_grid_errors():
    with pytest.raises(ValueError, match=r"patch_grid expects images \(B, C, H, W\); got shape \(32, 32\)"):
        patch_grid(torch.rand(32, 32))
    with pytest.raises(ValueError, match="leave tiles of"):
        patch_grid(torch.rand(1, 1, 12, 12), 3, gap=4)


# ----------------------------------------------------- relative position pairs
def test_relative_position_offsets_constant():
    assert len(RELATIVE_POSITION_OFFSETS) == 8 and len(set(RELATIVE_POSITION_OFFSETS)) == 8
    assert (0, 0) not in RELATIVE_POSITION_OFFSETS
    # row by row: top-left, top, top-right, left, right, bottom-left, bottom, bottom-right
    assert list(RELATIVE_POSITION_OFFSETS) == sorted(RELATIVE_POSITION_OFFSETS)
    assert RELATIVE_POSITION_OFFSETS[1] == (-1, 0) and RELATIVE_POSITION_OFFSETS[4] == (0, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gap, jitter", [(2, 0), (0, 1), (2, 1)])
def test_relative_position_labels_match_geometry(gap, jitter, device):
    """Channel 0 holds each pixel's grid row, channel 1 its grid column; the tiles carry them."""
    b, size = 400, 32
    cell = size // 3
    border = (size - 3 * cell) // 2
    index = (torch.arange(size) - border).div(cell, rounding_mode="floor").clamp(0, 2).float()
    x = torch.stack([index.view(size, 1).expand(size, size), index.view(1, size).expand(size, size)])
    x = x.unsqueeze(0).repeat(b, 1, 1, 1).to(device)
    centre, neighbour, label = relative_position_pairs(x, gap=gap, jitter=jitter, generator=gen())
    t = grid_tile_size(size, size, 3, gap=gap, jitter=jitter)
    assert centre.shape == neighbour.shape == (b, 2, t, t)
    assert label.shape == (b,) and label.dtype == torch.int64 and label.device == x.device
    # every pixel of a tile lies in its own cell
    assert bool((centre == 1).all()), "the centre tile comes from grid cell (1, 1)"
    assert bool((neighbour == neighbour[..., :1, :1]).all())
    offsets = torch.tensor(RELATIVE_POSITION_OFFSETS, device=device)[label]  # (B, 2)
    position = neighbour[:, :, 0, 0].long()  # (B, 2): the neighbour's (grid row, grid col)
    assert torch.equal(position - 1, offsets)
    counts = torch.bincount(label.cpu(), minlength=8)
    assert counts.min() > 25, f"all 8 labels, roughly uniform: {counts.tolist()}"


def test_relative_position_pairs_are_tiles_of_the_grid():
    x = torch.rand(8, 3, 32, 32, generator=gen())
    tiles = patch_grid(x, 3, gap=2)
    centre, neighbour, label = relative_position_pairs(x, gap=2, jitter=0, generator=gen(1))
    assert torch.equal(centre, tiles[:, 4])
    which = torch.tensor([0, 1, 2, 3, 5, 6, 7, 8])[label]
    assert torch.equal(neighbour, tiles[torch.arange(8), which])


def test_relative_position_pairs_reproducible():
    x = torch.rand(16, 1, 32, 32, generator=gen())
    a = relative_position_pairs(x, jitter=1, generator=gen(5))
    b = relative_position_pairs(x, jitter=1, generator=gen(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


# ----------------------------------------------------------------- jigsaw
def test_all_permutations_matches_itertools():
    for n in (1, 2, 3, 5):
        ours = {tuple(r) for r in all_permutations(n).tolist()}
        assert ours == set(itertools.permutations(range(n)))
        assert len(all_permutations(n)) == math.factorial(n)


def _pairwise_min_hamming(perms: torch.Tensor) -> int:
    rows = perms.tolist()
    return min(sum(a != b for a, b in zip(p, q)) for p, q in itertools.combinations(rows, 2))


def test_min_hamming_distance_by_hand():
    perms = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [3, 2, 1, 0]])
    assert min_hamming_distance(perms) == 2
    assert min_hamming_distance(perms[[0, 2]]) == 4
    with pytest.raises(ValueError, match="at least 2 permutations, got 1"):
        min_hamming_distance(perms[:1])
    with pytest.raises(ValueError, match=r"expects permutations \(n, N\); got \(4,\)"):
        min_hamming_distance(perms[0])


@pytest.fixture(scope="module")
def perms100():
    return jigsaw_permutations(100, 3, seed=0)


def test_jigsaw_permutations_valid_and_distinct(perms100):
    assert perms100.shape == (100, 9) and perms100.dtype == torch.int64
    assert torch.equal(perms100.sort(1).values, torch.arange(9).expand(100, 9)), "every row is a permutation of 0..8"
    assert len(perms100.unique(dim=0)) == 100


def test_jigsaw_permutations_far_apart(perms100):
    d = min_hamming_distance(perms100)
    assert d == _pairwise_min_hamming(perms100)
    assert d >= 6  # measured: 6 for n=100, seed 0
    g = gen(0)
    for _ in range(5):
        random_set = torch.stack([torch.randperm(9, generator=g) for _ in range(100)])
        assert d > min_hamming_distance(random_set)  # random sets of 100 reach only 2 or 3


def test_jigsaw_permutations_greedy_rule_small_sets():
    # fewer permutations are farther apart; 2 of them can differ everywhere
    assert min_hamming_distance(jigsaw_permutations(2)) == 9
    assert min_hamming_distance(jigsaw_permutations(10)) >= 8
    # grid 2: 4 permutations of 4 tiles that differ in every position exist, and the greedy rule finds them
    p = jigsaw_permutations(4, 2)
    assert p.shape == (4, 4) and min_hamming_distance(p) == 4


def test_jigsaw_permutations_deterministic(perms100):
    assert torch.equal(jigsaw_permutations(100, 3, seed=0), perms100)
    assert not torch.equal(jigsaw_permutations(100, 3, seed=1), perms100)
    assert torch.equal(jigsaw_permutations(30, seed=0), perms100[:30]), "greedy: a prefix of a longer set"


def test_jigsaw_permutations_errors():
    with pytest.raises(ValueError, match="asked for 25 permutations but a 2 x 2 grid has only 24"):
        jigsaw_permutations(25, 2)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        jigsaw_permutations(0)
    with pytest.raises(ValueError, match="grid must be an int >= 2, got 1"):
        jigsaw_permutations(3, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_shuffle_tiles_applies_the_chosen_permutation(device, perms100):
    b = 32
    tiles = torch.rand(b, 9, 2, 4, 4, generator=gen()).to(device)
    shuffled, index = shuffle_tiles(tiles, perms100, generator=gen(1))
    assert shuffled.shape == tiles.shape and shuffled.device == tiles.device
    assert index.shape == (b,) and index.dtype == torch.int64 and index.device == tiles.device
    assert 0 <= int(index.min()) and int(index.max()) < 100
    assert len(index.unique()) > 10, "a permutation drawn per image"
    for k in range(b):
        order = perms100[int(index[k])]
        for i in range(9):
            assert torch.equal(shuffled[k, i], tiles[k, int(order[i])])
    # undo: put tile order[i] back at position order[i]
    restored = torch.empty_like(shuffled)
    order = perms100.to(device)[index]
    restored.scatter_(1, order.view(b, 9, 1, 1, 1).expand_as(shuffled), shuffled)
    assert torch.equal(restored, tiles)


def test_shuffle_tiles_reproducible_and_errors(perms100):
    tiles = torch.rand(8, 9, 5)
    a = shuffle_tiles(tiles, perms100, generator=gen(2))
    b = shuffle_tiles(tiles, perms100, generator=gen(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match=r"permutations \(P, 9\) for 9 tiles; got \(3, 4\)"):
        shuffle_tiles(tiles, torch.zeros(3, 4, dtype=torch.long))


# ----------------------------------------------------------------- masking
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("length, ratio", [(16, 0.75), (49, 0.75), (10, 0.33), (64, 0.5), (7, 0.0)])
def test_random_masking_counts_and_consistency(length, ratio, device):
    b, d = 6, 5
    tokens = torch.rand(b, length, d, generator=gen()).to(device)
    visible, mask, ids_restore = random_masking(tokens, ratio, generator=gen(1))
    keep = round((1 - ratio) * length)
    assert visible.shape == (b, keep, d) and visible.device == tokens.device
    assert mask.shape == (b, length) and mask.dtype == torch.float32 and mask.device == tokens.device
    assert ids_restore.shape == (b, length) and ids_restore.dtype == torch.int64
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert mask.sum(1).tolist() == [length - keep] * b
    # ids_restore is a permutation; the first `keep` of the shuffled order are the kept tokens
    assert torch.equal(ids_restore.sort(1).values, torch.arange(length, device=device).expand(b, length))
    assert torch.equal(mask, (ids_restore >= keep).float())
    # the visible tokens are exactly the unmasked tokens
    for k in range(b):
        kept = tokens[k][mask[k] == 0]
        assert torch.equal(visible[k].sort(0).values, kept.sort(0).values)
    # MAE's unshuffle: append mask tokens, gather with ids_restore -> the original where kept, the filler where removed
    filler = torch.full((b, length - keep, d), -1.0, device=device)
    full = torch.cat([visible, filler], 1).gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
    removed = mask.bool()
    assert torch.equal(full[~removed], tokens[~removed])
    assert bool((full[removed] == -1).all())


def test_random_masking_independent_per_sample():
    tokens = torch.rand(1, 64, 3, generator=gen()).repeat(32, 1, 1)
    _, mask, _ = random_masking(tokens, 0.75, generator=gen())
    assert len({tuple(m.tolist()) for m in mask}) == 32
    # every position is masked in some sample and kept in another
    assert bool((mask.mean(0) > 0).all()) and bool((mask.mean(0) < 1).all())


def test_random_masking_reproducible():
    tokens = torch.rand(4, 16, 8, generator=gen())
    a = random_masking(tokens, 0.5, generator=gen(7))
    b = random_masking(tokens, 0.5, generator=gen(7))
    c = random_masking(tokens, 0.5, generator=gen(8))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[1], c[1])
    assert random_masking(tokens, 0.5)[0].shape == (4, 8, 8)


def test_random_masking_errors():
    tokens = torch.rand(2, 8, 4)
    for ratio in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=rf"mask_ratio must be in \[0, 1\), got {ratio}"):
            random_masking(tokens, ratio)
    with pytest.raises(ValueError, match="mask_ratio 0.95 keeps no token of 8"):
        random_masking(tokens, 0.95)
    with pytest.raises(ValueError, match=r"random_masking expects tokens \(B, L, D\); got shape \(8, 4\)"):
        random_masking(tokens[0], 0.5)
    with pytest.raises(TypeError, match="ndarray"):
        random_masking(tokens.numpy(), 0.5)
