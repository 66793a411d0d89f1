"""Context (pretext) tasks: predict a transformation or a spatial layout.

The labels of these tasks cost nothing: we applied the rotation, we chose
which neighbour to cut, we shuffled the tiles. A network that solves them has
to know what upright digits and objects look like, and how their parts fit
together, unless it finds a low-level shortcut; each method below carries the
defense its paper used against the shortcuts it found.

- :class:`RotationPrediction` (Gidaris et al. 2018): by how much was the image rotated?
- :class:`RelativePosition` (Doersch et al. 2015): where is the second patch relative to the first?
- :class:`Jigsaw` (Noroozi and Favaro 2016): which permutation shuffled the 3 x 3 tiles?

The patch methods train their encoder on small tiles; the encoder is fully
convolutional, so it also encodes whole images for probing.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import augment, patches
from ..augment import _check_batch as _check_images, _rand
from ..nets import MLPHead
from .base import SSLMethod, accuracy, check_number

__all__ = [
    "rotate",
    "rotate_batch",
    "ROTATIONS",
    "drop_color_channels",
    "project_color",
    "RotationPrediction",
    "RelativePosition",
    "Jigsaw",
]


# ----------------------------------------------------------------- rotations
#: The supported numbers of rotations and their angles in degrees, counter-clockwise.
ROTATIONS: dict[int, tuple[float, ...]] = {
    2: (0.0, 180.0),
    4: (0.0, 90.0, 180.0, 270.0),
    8: (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0),
}


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every image counter-clockwise (as displayed, row 0 on top) by ``degrees``.

    Multiples of 90 degrees are exact (``torch.rot90``; a quarter turn needs
    H == W to keep the shape). Any other angle resamples the image with one
    affine warp about its centre: bilinear interpolation, zeros outside the
    input, so the corners of the square are cut off and the result is slightly
    blurred. (B, C, H, W) -> (B, C, H, W).
    """
    _check_images(images, "rotate")
    quarter, rest = divmod(float(degrees) % 360.0, 90.0)
    h, w = images.shape[-2:]
    if rest == 0.0:
        if quarter % 2 and h != w:
            raise ValueError(f"rotate: a rotation by {degrees} degrees needs square images; got H x W = {h} x {w}")
        return torch.rot90(images, int(quarter), dims=(-2, -1))
    if h != w:
        raise ValueError(f"rotate: a rotation by {degrees} degrees needs square images; got H x W = {h} x {w}")
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    # affine_grid maps each output position to where it samples the input (x right, y down, in [-1, 1])
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_batch(images: torch.Tensor, num_rotations: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image under every one of ``num_rotations`` rotations: RotNet's batch (Gidaris et al. 2018).

    The angles are ``ROTATIONS[num_rotations]``: 2 (0 and 180 degrees), 4
    (multiples of 90, exact) or 8 (multiples of 45; the odd multiples are
    bilinear resamplings, see :func:`rotate`, which a network could tell
    apart from the exact quarter turns by their blur and cut corners).

    The output is image-major: ``rotated[b * R + r]`` is image b rotated by
    ``ROTATIONS[R][r]`` degrees and ``labels[b * R + r] = r``.

    Args:
        images: (B, C, H, W); square unless ``num_rotations`` is 2.
    Returns:
        (rotated (B*R, C, H, W), labels int64 (B*R,) in [0, R)).
    """
    _check_images(images, "rotate_batch")
    if num_rotations not in ROTATIONS:
        raise ValueError(f"rotate_batch: num_rotations must be one of {sorted(ROTATIONS)}, got {num_rotations!r}")
    b = images.shape[0]
    rotated = torch.stack([rotate(images, angle) for angle in ROTATIONS[num_rotations]], dim=1)  # (B, R, C, H, W)
    labels = torch.arange(num_rotations, device=images.device).repeat(b)
    return rotated.flatten(0, 1), labels


# ------------------------------------------------------------------ colour
def drop_color_channels(
    x: torch.Tensor, *, noise_ratio: float = 0.01, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep one colour channel per image, at random; replace the others by noise.

    The "color dropping" of Doersch et al. (2015) against chromatic
    aberration: lenses shift the colour channels by different amounts towards
    the border of a photo, so the offset between channels tells a network
    where in the image a patch came from, without looking at its content.
    With one channel kept, there is no offset to read. Each replaced channel
    is gaussian noise around the kept channel's mean with a standard deviation
    of ``noise_ratio`` times the kept channel's standard deviation (both per
    image), so the patch stays a plausible, almost gray input.

    Args:
        x: (B, C, H, W), C >= 2 (each image of the batch is treated on its own:
           pass patches as a batch to drop per patch).
    Returns:
        (B, C, H, W).
    """
    _check_images(x, "drop_color_channels")
    b, c = x.shape[:2]
    if c < 2:
        raise ValueError(f"drop_color_channels needs colour images (C >= 2); got {c} channel(s)")
    keep = (_rand((b,), x, generator) * c).long().clamp_(max=c - 1)  # (B,)
    kept = x[torch.arange(b, device=x.device), keep].unsqueeze(1)  # (B, 1, H, W)
    mean = kept.mean(dim=(2, 3), keepdim=True)
    std = kept.std(dim=(2, 3), keepdim=True)
    noise = mean + noise_ratio * std * _rand(x.shape, x, generator, normal=True).to(x.dtype)
    is_kept = (torch.arange(c, device=x.device).view(1, c, 1, 1) == keep.view(b, 1, 1, 1))
    return torch.where(is_kept, x, noise)


def project_color(x: torch.Tensor) -> torch.Tensor:
    """Remove the green-magenta component of every RGB pixel (Doersch et al. 2015's "projection").

    Chromatic aberration mostly moves green against magenta (red plus blue);
    projecting each pixel's colour onto the plane orthogonal to the axis
    a = (-1, 2, -1) / sqrt(6) removes that cue and keeps the rest of the
    colour: x <- x - (a . x) a. (B, 3, H, W) -> (B, 3, H, W).
    """
    _check_images(x, "project_color")
    if x.shape[1] != 3:
        raise ValueError(f"project_color needs RGB images (B, 3, H, W); got {tuple(x.shape)}")
    a = torch.tensor([-1.0, 2.0, -1.0], device=x.device, dtype=x.dtype) / math.sqrt(6.0)
    along = (x * a.view(1, 3, 1, 1)).sum(1, keepdim=True)  # (B, 1, H, W)
    return x - along * a.view(1, 3, 1, 1)


_COLOR_DEFENSES = {"drop": drop_color_channels, "project": project_color}


# ------------------------------------------------------------------ helpers
def _check_permutations(perms, size: int) -> torch.Tensor:
    """A permutation set (P, size), P >= 2, rows distinct permutations of range(size): returned as int64 on the CPU."""
    if not isinstance(perms, torch.Tensor) or perms.dim() != 2 or perms.shape[1] != size or len(perms) < 2:
        got = tuple(perms.shape) if isinstance(perms, torch.Tensor) else type(perms).__name__
        raise ValueError(f"permutations must be an int tensor (P, {size}) with P >= 2; got {got}")
    if perms.dtype.is_floating_point or perms.dtype == torch.bool or perms.is_complex():
        raise ValueError(f"permutations must be an int tensor (P, {size}); got dtype {perms.dtype}")
    perms = perms.detach().long().cpu()
    bad = (perms.sort(1).values != torch.arange(size)).any(1)
    if bad.any():
        row = int(bad.nonzero()[0])
        raise ValueError(f"permutations: row {row} ({perms[row].tolist()}) is not a permutation of 0..{size - 1}")
    if len(perms.unique(dim=0)) < len(perms):
        raise ValueError("permutations: some rows repeat; the jigsaw classes must be distinct permutations")
    return perms.clone()


# ------------------------------------------------------------------ methods
class RotationPrediction(SSLMethod):
    """RotNet (Gidaris et al. 2018): classify by how much each image was rotated.

    Each step moves every image by its own random shift of up to
    ``max_shift`` pixels (:func:`sslcourse.augment.random_translate`), builds
    all ``num_rotations`` rotations of it (:func:`rotate_batch`, so a batch of
    B images trains on B*R inputs with balanced labels), encodes them and
    classifies the rotation with an MLP head on the flattened encoder output.
    The random per-image shift keeps the network from reading the rotation off
    where the digit sits in its frame (the digits are not perfectly centred)
    instead of off its shape.

    Args:
        encoder: defaults to :class:`~sslcourse.nets.ConvEncoder` with ``widths``.
        in_channels: image channels (1 for digits, 3 for CIFAR-10).
        widths: the default encoder's widths.
        image_size: the side of the (square) training images; sizes the head.
        num_rotations: 4 (multiples of 90 degrees, the paper's best), 2 or 8.
        max_shift: the random translation in pixels before rotating; 0 turns it off.
        hidden_dim, head_layers: the :class:`~sslcourse.nets.MLPHead` classifier.
        rotate_fn: replaces :func:`rotate_batch` (e.g. your own, from Lab 03); same
            contract: ``rotate_fn(images, num_rotations) -> (rotated, labels)``.

    ``training_step`` returns ``{"loss", "accuracy"}``: cross-entropy and the
    fraction of rotations recognised.

    On digits (CPU default: 16 x 16 images, batch 128, lr 1e-3, about 50 s)
    the pretrained encoder beats its random initialisation most clearly at
    the middle layer, ``encoder.truncated(6)``; the last layers specialise in
    rotations. Without the random shift the task gets easier and the features worse.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        image_size: int = 16,
        num_rotations: int = 4,
        max_shift: int = 2,
        hidden_dim: int = 256,
        head_layers: int = 2,
        rotate_fn: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        if num_rotations not in ROTATIONS:
            raise ValueError(f"num_rotations must be one of {sorted(ROTATIONS)}, got {num_rotations!r}")
        self.max_shift = check_number("max_shift", max_shift, low=0, integer=True)
        self.init_encoder(encoder, in_channels=in_channels, widths=widths, image_size=image_size)
        self.num_rotations = num_rotations
        self.rotate_fn = rotate_fn if rotate_fn is not None else rotate_batch
        self.head = MLPHead(self.feature_dim(), num_rotations, hidden_dim=hidden_dim, num_layers=head_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotation logits: (B, C, H, W) -> (B, num_rotations)."""
        return self.head(self.encoder(x).flatten(1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        self.check_images(x)
        if self.max_shift:
            x = augment.random_translate(x, self.max_shift)
        rotated, labels = self.rotate_fn(x, self.num_rotations)
        logits = self(rotated).float()
        return {"loss": F.cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, num_rotations={self.num_rotations}, max_shift={self.max_shift}"


class RelativePosition(SSLMethod):
    """Context prediction (Doersch et al. 2015): where does the second patch sit relative to the first?

    Each step cuts, from every image, the centre tile of a 3 x 3 grid and one
    of its 8 neighbours at random (:func:`sslcourse.patches.relative_position_pairs`),
    encodes both with the same encoder, concatenates the two flattened
    features (centre first) and classifies the neighbour's position (8 classes)
    with an MLP head.

    The defenses of the paper against low-level shortcuts:

    - ``gap``: pixels left out between the tiles, so lines do not simply continue across the border;
    - ``jitter``: each tile moves by up to this many pixels, so the gap width is no clue either;
    - ``color_defense`` (3-channel input only; grayscale has no colour cue):
      chromatic aberration tells where a patch lay in the photo, so each tile
      keeps one random colour channel and the others become noise
      (``"drop"``, :func:`drop_color_channels`), or loses its green-magenta
      component (``"project"``, :func:`project_color`), or neither (None).

    Tiles have side t = (image_size // 3) - gap - 2 * jitter
    (:func:`sslcourse.patches.grid_tile_size`); the default
    :class:`~sslcourse.nets.ConvEncoder` needs t divisible by 4: on 32 x 32
    images, gap 0 and jitter 1 (the default: tiles 2 pixels apart on
    average, touching at worst) or gap 2 and jitter 0 give t = 8.

    ``pair_fn`` replaces :func:`sslcourse.patches.relative_position_pairs`
    (e.g. your own, from Lab 03); same contract: ``pair_fn(images, gap=gap,
    jitter=jitter) -> (centre, neighbour, labels)``.

    ``training_step`` returns ``{"loss", "accuracy"}``.

    On digits (CPU default: 32 x 32 images, batch 128, lr 1e-3, about 50 s)
    the pretrained encoder beats its random initialisation most reliably at
    ``encoder.truncated(3)``, whose receptive field (7 pixels) fits inside a
    tile, and by less at ``truncated(6)``.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        image_size: int = 32,
        gap: int = 0,
        jitter: int = 1,
        color_defense: str | None = "drop",
        max_shift: int = 0,
        hidden_dim: int = 256,
        head_layers: int = 2,
        pair_fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        if color_defense is not None and color_defense not in _COLOR_DEFENSES:
            raise ValueError(f"color_defense must be one of {sorted(_COLOR_DEFENSES)} or None, got {color_defense!r}")
        self.max_shift = check_number("max_shift", max_shift, low=0, integer=True)
        self.init_encoder(encoder, in_channels=in_channels, widths=widths, image_size=image_size)
        self.gap, self.jitter, self.color_defense = gap, jitter, color_defense
        self.pair_fn = pair_fn if pair_fn is not None else patches.relative_position_pairs
        self.tile_size = patches.grid_tile_size(image_size, image_size, 3, gap=gap, jitter=jitter)
        dim = self.feature_dim(self.tile_size, what=f"tiles (image_size {image_size}, gap {gap}, jitter {jitter})")
        self.head = MLPHead(2 * dim, 8, hidden_dim=hidden_dim, num_layers=head_layers)

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        """Position logits: two (B, C, t, t) tiles -> (B, 8), in the order of ``RELATIVE_POSITION_OFFSETS``."""
        features = self.encoder(torch.cat([centre, neighbour])).flatten(1)  # (2B, D): one pass, shared weights
        first, second = features.chunk(2)
        return self.head(torch.cat([first, second], dim=1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        self.check_images(x)
        if self.max_shift:
            x = augment.random_translate(x, self.max_shift)
        centre, neighbour, labels = self.pair_fn(x, gap=self.gap, jitter=self.jitter)
        if self.color_defense is not None and x.shape[1] == 3:
            centre, neighbour = _COLOR_DEFENSES[self.color_defense](torch.cat([centre, neighbour])).chunk(2)
        logits = self(centre, neighbour).float()
        return {"loss": F.cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, tile_size={self.tile_size}, gap={self.gap}, jitter={self.jitter}, color_defense={self.color_defense}"


class Jigsaw(SSLMethod):
    """Jigsaw puzzles (Noroozi and Favaro 2016): which permutation shuffled the tiles?

    Each step cuts every image into a 3 x 3 :func:`~sslcourse.patches.patch_grid`
    (with ``gap`` and ``jitter``), shuffles the tiles by one of
    ``num_permutations`` permutations chosen at random per image
    (:func:`~sslcourse.patches.shuffle_tiles`; the set comes from
    :func:`~sslcourse.patches.jigsaw_permutations`, far apart in Hamming
    distance) and classifies the permutation. The network is the paper's
    context-free network: the encoder sees one tile at a time (shared weights,
    no tile sees another), the nine flattened features are concatenated in
    puzzle order and an MLP head classifies.

    The gap and the jitter are the paper's defenses against solving the puzzle
    by matching tile borders; tile side t = (image_size // 3) - gap - 2 * jitter,
    divisible by 4 for the default encoder (8 on 32 x 32 images by default).

    ``training_step`` returns ``{"loss", "accuracy"}``. The permutation set is
    the buffer ``permutations`` (num_permutations, 9): by default
    ``jigsaw_permutations(num_permutations, 3, seed=permutation_seed)``, or the
    int tensor (P, 9) passed as ``permutations=`` (then ``num_permutations`` is
    P). ``shuffle_fn`` replaces :func:`~sslcourse.patches.shuffle_tiles` (e.g.
    your own, from Lab 03); same contract: ``shuffle_fn(tiles, permutations) ->
    (shuffled, labels)``.

    On digits (CPU default: 32 x 32 images, batch 64, lr 3e-3, about 50 s) the
    puzzle is nearly solved within a minute and only the early layers gain:
    ``encoder.truncated(3)``, whose receptive field (7 pixels) fits inside a
    tile, beats its random initialisation by a point or two; deeper layers,
    trained on 8-pixel tiles only, do worse than at random init on whole images.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        image_size: int = 32,
        num_permutations: int = 100,
        gap: int = 0,
        jitter: int = 1,
        max_shift: int = 0,
        hidden_dim: int = 512,
        head_layers: int = 2,
        permutation_seed: int = 0,
        permutations: torch.Tensor | None = None,
        shuffle_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.max_shift = check_number("max_shift", max_shift, low=0, integer=True)
        self.init_encoder(encoder, in_channels=in_channels, widths=widths, image_size=image_size)
        self.gap, self.jitter = gap, jitter
        self.tile_size = patches.grid_tile_size(image_size, image_size, 3, gap=gap, jitter=jitter)
        if permutations is None:
            permutations = patches.jigsaw_permutations(num_permutations, 3, seed=permutation_seed)
        else:
            permutations = _check_permutations(permutations, 9)
        self.register_buffer("permutations", permutations)
        self.shuffle_fn = shuffle_fn if shuffle_fn is not None else patches.shuffle_tiles
        dim = self.feature_dim(self.tile_size, what=f"tiles (image_size {image_size}, gap {gap}, jitter {jitter})")
        self.head = MLPHead(9 * dim, len(permutations), hidden_dim=hidden_dim, num_layers=head_layers)

    @property
    def num_permutations(self) -> int:
        return len(self.permutations)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """Permutation logits: shuffled tiles (B, 9, C, t, t) -> (B, num_permutations)."""
        b = tiles.shape[0]
        features = self.encoder(tiles.flatten(0, 1)).flatten(1)  # (B*9, D): every tile on its own
        return self.head(features.view(b, -1))  # (B, 9*D), in puzzle order

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0]
        self.check_images(x)
        if self.max_shift:
            x = augment.random_translate(x, self.max_shift)
        tiles = patches.patch_grid(x, 3, gap=self.gap, jitter=self.jitter)
        shuffled, labels = self.shuffle_fn(tiles, self.permutations)
        logits = self(shuffled).float()
        return {"loss": F.cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, tile_size={self.tile_size}, gap={self.gap}, jitter={self.jitter}, num_permutations={self.num_permutations}"
