"""Patches and tokens: the raw material of the context and masked-modelling methods.

- :func:`patchify` / :func:`unpatchify` turn images into a sequence of flat
  patches and back (the token layout of ViT and MAE).
- :func:`patch_grid` cuts each image into a grid of tiles, with the gap and
  the random jitter that keep a network from solving a context task by
  low-level shortcuts; :func:`relative_position_pairs` (Doersch et al. 2015)
  and :func:`shuffle_tiles` (Noroozi and Favaro 2016) build their pretext
  tasks from it.
- :func:`jigsaw_permutations` chooses a set of tile orders that are far apart
  in Hamming distance, so the jigsaw classes are distinguishable.
- :func:`random_masking` hides a random subset of tokens per sample (MAE, He
  et al. 2021).

Every random function draws a fresh choice per image on the device the batch
is on and accepts a ``torch.Generator`` (a CPU generator also works for a CUDA
batch: the numbers are drawn on the CPU and moved).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .augment import _rand

__all__ = [
    "patchify",
    "unpatchify",
    "grid_tile_size",
    "patch_grid",
    "RELATIVE_POSITION_OFFSETS",
    "relative_position_pairs",
    "all_permutations",
    "jigsaw_permutations",
    "min_hamming_distance",
    "shuffle_tiles",
    "random_masking",
]


# ----------------------------------------------------------------- checks
def _check_images(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} expects images as a tensor (B, C, H, W); got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} expects images (B, C, H, W); got shape {tuple(images.shape)}")


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _randint(high: int, shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform integers in [0, high), int64 of ``shape`` on ``like``'s device."""
    return (_rand(shape, like, generator) * high).long().clamp_(max=high - 1)


# ------------------------------------------------------- patchify / unpatchify
def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches and flatten each one.

    The layout of MAE: the h x w grid of patches (h = H / p, w = W / p) is read
    row by row, so patch ``l = i * w + j`` covers rows ``i*p : (i+1)*p`` and
    columns ``j*p : (j+1)*p``; each patch is flattened in (p, p, C) order
    (row, column, channel; the channel varies fastest).

    Args:
        images: (B, C, H, W), H and W divisible by ``patch_size``.
        patch_size: the side p of a patch, in pixels.
    Returns:
        (B, L, p*p*C) with L = (H / p) * (W / p).
    """
    _check_images(images, "patchify")
    p = _check_int(patch_size, "patchify: patch_size", 1)
    b, c, height, width = images.shape
    if height % p or width % p:
        raise ValueError(f"patchify: H and W must be divisible by patch_size {p}; got images of H x W = {height} x {width}")
    h, w = height // p, width // p
    x = images.reshape(b, c, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(b, h * w, p * p * c)


def unpatchify(
    patches: torch.Tensor,
    patch_size: int,
    *,
    channels: int | None = None,
    grid: tuple[int, int] | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """The exact inverse of :func:`patchify`: (B, L, p*p*C) -> (B, C, H, W).

    The layout of the patch grid comes from ``grid = (h, w)`` (patches per
    column and per row) or from ``image_size`` (``H`` or ``(H, W)`` in
    pixels); with neither, the grid is assumed square (L must be a square
    number). ``channels`` defaults to D / p**2.

    Args:
        patches: (B, L, D) with D = p*p*C.
        patch_size: the side p of a patch.
    Returns:
        (B, C, h*p, w*p).
    """
    if not isinstance(patches, torch.Tensor):
        raise TypeError(f"unpatchify expects patches as a tensor (B, L, D); got {type(patches).__name__}")
    if patches.dim() != 3:
        raise ValueError(f"unpatchify expects patches (B, L, D); got shape {tuple(patches.shape)}")
    p = _check_int(patch_size, "unpatchify: patch_size", 1)
    b, length, dim = patches.shape
    if channels is None:
        if dim % (p * p):
            raise ValueError(f"unpatchify: patch dimension {dim} is not a multiple of patch_size**2 = {p * p}")
        channels = dim // (p * p)
    c = _check_int(channels, "unpatchify: channels", 1)
    if dim != p * p * c:
        raise ValueError(f"unpatchify: expected patches of dimension patch_size**2 * channels = {p * p * c}, got {dim}")
    if grid is not None and image_size is not None:
        raise ValueError("unpatchify: pass grid=(h, w) or image_size, not both")
    if image_size is not None:
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if height % p or width % p:
            raise ValueError(f"unpatchify: image_size {height} x {width} is not divisible by patch_size {p}")
        grid = (height // p, width // p)
    if grid is None:
        side = math.isqrt(length)
        if side * side != length:
            raise ValueError(f"unpatchify: {length} patches do not form a square grid; pass grid=(h, w) or image_size")
        grid = (side, side)
    h, w = (int(g) for g in grid)
    if h * w != length:
        raise ValueError(f"unpatchify: a grid of {h} x {w} patches holds {h * w} patches, got {length}")
    x = patches.reshape(b, h, w, p, p, c)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(b, c, h * p, w * p)


# ----------------------------------------------------------------- tile grids
def grid_tile_size(height: int, width: int | None = None, grid: int = 3, *, gap: int = 0, jitter: int = 0) -> int:
    """The side t of the tiles :func:`patch_grid` cuts from an H x W image::

        cell = min(H, W) // grid          # the grid's pitch, in pixels
        t    = cell - gap - 2 * jitter

    so that every tile, shifted by up to ``jitter`` pixels, stays inside its
    cell and neighbouring tiles are always at least ``gap`` pixels apart.
    E.g. 32 x 32 images, grid 3: cell 10; gap 2, jitter 0 gives t = 8.
    Raises ValueError when t < 1.
    """
    width = height if width is None else width
    grid = _check_int(grid, "grid", 1)
    gap = _check_int(gap, "gap", 0)
    jitter = _check_int(jitter, "jitter", 0)
    cell = min(height, width) // grid
    t = cell - gap - 2 * jitter
    if t < 1:
        raise ValueError(
            f"a {grid} x {grid} grid on {height} x {width} images has cells of {cell} pixels; gap {gap} and jitter "
            f"{jitter} leave tiles of {t} pixels. Use larger images, a smaller gap or less jitter"
        )
    return t


def _tile_starts(size: int, grid: int, cell: int, t: int, device) -> torch.Tensor:
    """First pixel of every tile along one axis, before jitter: int64 (grid,)."""
    border = (size - grid * cell) // 2  # the grid is centred; left-over pixels go to the borders
    return border + torch.arange(grid, device=device) * cell + (cell - t) // 2


def patch_grid(
    images: torch.Tensor,
    grid: int = 3,
    *,
    gap: int = 0,
    jitter: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cut each image into ``grid`` x ``grid`` square tiles, row by row.

    The image is divided into a centred grid of cells of ``cell = min(H, W) //
    grid`` pixels; each tile has side ``t = cell - gap - 2 * jitter``
    (:func:`grid_tile_size`) and sits in the middle of its cell, moved by a
    random whole number of pixels in [-jitter, jitter] along each axis, drawn
    independently for every image and every tile. Two neighbouring tiles are
    therefore at least ``gap`` pixels apart and never overlap.

    The gap and the jitter are the defenses of Doersch et al. (2015) and Noroozi
    and Favaro (2016): without them a network can tell which tiles touch by
    continuing lines and textures across the border (a low-level shortcut)
    instead of recognising what is in them.

    Args:
        images: (B, C, H, W).
        grid: tiles per side.
        gap: minimum number of pixels between neighbouring tiles.
        jitter: maximum random shift of each tile, in pixels.
    Returns:
        (B, grid*grid, C, t, t); tile ``k = row * grid + col``.
    """
    _check_images(images, "patch_grid")
    b, c, height, width = images.shape
    t = grid_tile_size(height, width, grid, gap=gap, jitter=jitter)
    cell = min(height, width) // grid
    n = grid * grid
    rows = _tile_starts(height, grid, cell, t, images.device).view(1, grid, 1).expand(b, grid, grid)  # [b, i, j]
    cols = _tile_starts(width, grid, cell, t, images.device).view(1, 1, grid).expand(b, grid, grid)
    if jitter:
        shift = _randint(2 * jitter + 1, (2, b, grid, grid), images, generator) - jitter  # per image, tile, axis
        rows, cols = rows + shift[0], cols + shift[1]
    span = torch.arange(t, device=images.device)
    rows = rows.reshape(b, n, 1, 1) + span.view(1, 1, t, 1)  # (B, n, t, 1)
    cols = cols.reshape(b, n, 1, 1) + span.view(1, 1, 1, t)  # (B, n, 1, t)
    index = (rows * width + cols).view(b, 1, n * t * t).expand(b, c, -1)  # (B, C, n*t*t)
    tiles = images.flatten(2).gather(2, index).view(b, c, n, t, t)
    return tiles.transpose(1, 2).contiguous()


#: (drow, dcol) of the neighbour, in tiles, relative to the centre tile, for each label of
#: :func:`relative_position_pairs`: row by row over the 8 neighbours.
RELATIVE_POSITION_OFFSETS: tuple[tuple[int, int], ...] = (
    (-1, -1),  # 0 top-left
    (-1, 0),  # 1 top
    (-1, 1),  # 2 top-right
    (0, -1),  # 3 left
    (0, 1),  # 4 right
    (1, -1),  # 5 bottom-left
    (1, 0),  # 6 bottom
    (1, 1),  # 7 bottom-right
)
_NEIGHBOUR_TILES = (0, 1, 2, 3, 5, 6, 7, 8)  # tile index (row * 3 + col) of each label


def relative_position_pairs(
    images: torch.Tensor,
    *,
    gap: int = 0,
    jitter: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pretext task of Doersch et al. (2015): where is the second patch?

    Each image is cut into a 3 x 3 :func:`patch_grid` (same ``gap`` and
    ``jitter``); the pair is the centre tile and one of its 8 neighbours,
    chosen uniformly at random per image. The label says which neighbour,
    row by row: 0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5
    bottom-left, 6 bottom, 7 bottom-right; ``RELATIVE_POSITION_OFFSETS[label]``
    is its (drow, dcol) from the centre, in tiles.

    Args:
        images: (B, C, H, W).
    Returns:
        (centre (B, C, t, t), neighbour (B, C, t, t), label int64 (B,)), with
        t = :func:`grid_tile_size` (H, W, 3, gap=gap, jitter=jitter).
    """
    _check_images(images, "relative_position_pairs")
    tiles = patch_grid(images, 3, gap=gap, jitter=jitter, generator=generator)  # (B, 9, C, t, t)
    b = images.shape[0]
    label = _randint(8, (b,), images, generator)
    which = torch.tensor(_NEIGHBOUR_TILES, device=images.device)[label]
    batch = torch.arange(b, device=images.device)
    return tiles[:, 4], tiles[batch, which], label


# ----------------------------------------------------------------- jigsaw
def all_permutations(n: int) -> torch.Tensor:
    """Every permutation of ``range(n)``: int64 (n!, n), in a fixed order.

    Built by inserting the element k at every position of each permutation of
    ``range(k)``, one vectorised step per k (9! = 362,880 rows take well under a second).
    """
    n = _check_int(n, "all_permutations: n", 1)
    perms = torch.zeros(1, 1, dtype=torch.int64)
    for k in range(1, n):
        m = perms.shape[0]
        grown = torch.empty(k + 1, m, k + 1, dtype=torch.int64)
        for pos in range(k + 1):
            grown[pos, :, :pos] = perms[:, :pos]
            grown[pos, :, pos] = k
            grown[pos, :, pos + 1 :] = perms[:, pos:]
        perms = grown.view(-1, k + 1)
    return perms


class _PackedPermutations:
    """Permutations of N <= 16 items packed into one uint64 each, four bits per position,
    so the Hamming distance from one of them to all the others takes a few vector ops."""

    def __init__(self, perms: torch.Tensor) -> None:
        rows = perms.numpy().astype(np.uint64)
        self.size = perms.shape[1]
        self.codes = np.zeros(len(rows), dtype=np.uint64)
        for k in range(self.size):
            self.codes |= rows[:, k] << np.uint64(4 * k)
        self.low_bits = np.uint64(sum(1 << (4 * k) for k in range(self.size)))

    def distances(self, i: int) -> np.ndarray:
        """Hamming distance from row ``i`` to every row: int32 (M,)."""
        x = self.codes ^ self.codes[i]  # the 4 bits of position k are 0 exactly where the rows agree
        x = (x | (x >> np.uint64(1)) | (x >> np.uint64(2)) | (x >> np.uint64(3))) & self.low_bits  # one bit per differing position
        if hasattr(np, "bitwise_count"):  # numpy >= 2.0
            return np.bitwise_count(x).astype(np.int32)
        count = np.zeros(len(x), dtype=np.int32)
        for k in range(self.size):
            count += ((x >> np.uint64(4 * k)) & np.uint64(1)).astype(np.int32)
        return count


def jigsaw_permutations(
    n: int, grid: int = 3, *, seed: int = 0, num_candidates: int = 100_000
) -> torch.Tensor:
    """``n`` tile orders of a ``grid`` x ``grid`` puzzle that are far apart from each other.

    A jigsaw class is only learnable if the permutations differ in many tiles;
    Noroozi and Favaro (2016) choose them greedily. Start from a random
    permutation; then, ``n - 1`` times, add the candidate whose minimum
    Hamming distance (the number of positions at which two permutations
    differ) to the permutations chosen so far is largest, breaking ties by
    the largest summed distance (the criterion of the paper's algorithm),
    then by a seeded random order. This farthest-point rule keeps the
    minimum pairwise distance of the set (:func:`min_hamming_distance`) high:
    for grid 3 and seed 0 it is 8 for n = 10, 7 for n = 30 and 6 for n = 100.

    Candidates: all (grid**2)! permutations when there are at most a million
    (grid 2 or 3: 24 or 362,880); otherwise (grid 4) ``num_candidates``
    random ones. Deterministic for a ``seed``.

    Returns:
        int64 (n, grid*grid), all rows distinct; row k lists, for each position
        of the shuffled puzzle, which tile goes there (see :func:`shuffle_tiles`).
    """
    grid = _check_int(grid, "jigsaw_permutations: grid", 2)
    n = _check_int(n, "jigsaw_permutations: n", 1)
    if grid > 4:
        raise ValueError(f"jigsaw_permutations supports grids of 2 to 4 tiles per side, got {grid}")
    size = grid * grid
    gen = torch.Generator().manual_seed(seed)
    if math.factorial(size) <= 1_000_000:
        candidates = all_permutations(size)
    else:
        candidates = torch.rand(_check_int(num_candidates, "num_candidates", 1), size, generator=gen).argsort(1).unique(dim=0)
    if n > len(candidates):
        raise ValueError(f"jigsaw_permutations: asked for {n} permutations but a {grid} x {grid} grid has only {len(candidates)} candidates")
    candidates = candidates[torch.randperm(len(candidates), generator=gen)]  # a seeded order: for the start and for ties
    packed = _PackedPermutations(candidates)
    chosen = [0]  # the first candidate of a random order: a random permutation
    min_dist = packed.distances(0)  # (M,) distance of each candidate to the chosen set
    sum_dist = min_dist.copy()
    scale = size * n + 1  # sum_dist < scale, so min_dist dominates the score
    for _ in range(n - 1):
        best = int(np.argmax(min_dist * scale + sum_dist))  # chosen rows have min_dist 0, all others >= 2
        chosen.append(best)
        dist = packed.distances(best)
        np.minimum(min_dist, dist, out=min_dist)
        sum_dist += dist
    return candidates[chosen].clone()


def min_hamming_distance(perms: torch.Tensor) -> int:
    """The smallest number of positions at which two rows of ``perms`` (n, N), n >= 2, differ."""
    if not isinstance(perms, torch.Tensor) or perms.dim() != 2:
        got = tuple(perms.shape) if isinstance(perms, torch.Tensor) else type(perms).__name__
        raise ValueError(f"min_hamming_distance expects permutations (n, N); got {got}")
    if len(perms) < 2:
        raise ValueError(f"min_hamming_distance needs at least 2 permutations, got {len(perms)}")
    dist = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    dist.fill_diagonal_(perms.shape[1] + 1)
    return int(dist.min())


def shuffle_tiles(
    tiles: torch.Tensor, permutations: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scramble each puzzle by one of the ``permutations``, chosen at random per image.

    ``shuffled[b, i] = tiles[b, permutations[k_b, i]]``: position i of the
    shuffled puzzle shows tile ``permutations[k_b, i]``, where ``k_b`` is the
    permutation index drawn for image b (the jigsaw label).

    Args:
        tiles: (B, N, ...) e.g. (B, N, C, t, t) from :func:`patch_grid`.
        permutations: int (P, N), each row a permutation of range(N).
    Returns:
        (shuffled (B, N, ...), perm_index int64 (B,) in [0, P)).
    """
    if not isinstance(tiles, torch.Tensor) or tiles.dim() < 2:
        raise ValueError(f"shuffle_tiles expects tiles (B, N, ...); got {getattr(tiles, 'shape', type(tiles).__name__)}")
    if not isinstance(permutations, torch.Tensor) or permutations.dim() != 2 or permutations.shape[1] != tiles.shape[1]:
        got = tuple(permutations.shape) if isinstance(permutations, torch.Tensor) else type(permutations).__name__
        raise ValueError(f"shuffle_tiles expects permutations (P, {tiles.shape[1]}) for {tiles.shape[1]} tiles; got {got}")
    b, n = tiles.shape[:2]
    perm_index = _randint(len(permutations), (b,), tiles, generator)
    order = permutations.to(tiles.device).long()[perm_index]  # (B, N)
    index = order.view(b, n, *([1] * (tiles.dim() - 2))).expand_as(tiles)
    return tiles.gather(1, index), perm_index


# ----------------------------------------------------------------- masking
def random_masking(
    tokens: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random subset of the tokens of each sample, as MAE does (He et al. 2021).

    Each sample draws its own random order of its L tokens; the first
    ``L_keep = round((1 - mask_ratio) * L)`` of that order stay visible (in
    that random order), the rest are removed.

    Args:
        tokens: (B, L, D).
        mask_ratio: the fraction of tokens removed, in [0, 1).
    Returns:
        visible: (B, L_keep, D), the kept tokens.
        mask: float32 (B, L) in the original token order, 1 = removed, 0 = kept.
        ids_restore: int64 (B, L); ``torch.gather`` of the (B, L, D) sequence
            [visible tokens, then L - L_keep mask tokens] with ``ids_restore``
            along dim 1 puts every token back at its original position.
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"random_masking expects tokens as a tensor (B, L, D); got {type(tokens).__name__}")
    if tokens.dim() != 3:
        raise ValueError(f"random_masking expects tokens (B, L, D); got shape {tuple(tokens.shape)}")
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(f"random_masking: mask_ratio must be in [0, 1), got {mask_ratio}")
    b, length, dim = tokens.shape
    keep = int(round((1.0 - float(mask_ratio)) * length))
    if keep < 1:
        raise ValueError(f"random_masking: mask_ratio {mask_ratio} keeps no token of {length}")
    noise = _rand((b, length), tokens, generator)  # (B, L) uniform
    ids_shuffle = noise.argsort(dim=1)  # ascending: the first `keep` are kept
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, L) where each original token went
    ids_keep = ids_shuffle[:, :keep]  # (B, L_keep)
    visible = tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # (B, L_keep, D)
    mask = torch.ones(b, length, device=tokens.device)
    mask[:, :keep] = 0  # in shuffled order: kept first
    mask = mask.gather(1, ids_restore)  # back to the original order
    return visible, mask, ids_restore
