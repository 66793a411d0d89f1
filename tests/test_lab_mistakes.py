"""Plausible wrong answers to every graded exercise, each caught by the lab's tests.

MISTAKES lists, per lab, the mistakes students actually make in each function they write: a parameter ignored
or misused, one random draw for the whole batch where every image needs its own, axes mixed up, off-by-one
ranges, a sum for a mean, a missing detach or no_grad, an input changed in place, a dtype or device slip. Each
is a text replacement `old -> new` in the solution cell of the function, and names the graded cells that must
then fail (by default the function's own test cell).

One subprocess per lab runs the lab's code cells as nbgrader's autograde would (NBGRADER_EXECUTION=autograde):
the locked context cells (setup, imports, helpers, constants), the solution cells and the graded test cells
(visible and hidden tests), in notebook order, but not the training cells (the unlocked cells without nbgrader
metadata). It does so once with the correct solution, then once per mistake with that one replacement made,
in a fresh namespace, and records for every graded cell whether it passed or what it raised. The correct run
also records which of the student's functions each graded cell calls; with a mistake in function f, a graded
cell that never calls f cannot change, keeps the correct run's outcome and is not run again (this makes the
whole file about ten times faster).

The tests assert that the correct solution passes every graded cell; that every mistake makes each cell it
names fail with an AssertionError that has a message (a check that explains itself, not a crash) and leaves
every other graded cell passing; that `visible` says truthfully whether the visible part of the function's test
cell already catches the mistake (else only the hidden tests do); that every `old` still occurs exactly once in
the answer of its solution cell, so that the table cannot silently rot when a solution changes; that every
graded function has mistakes; and that the subtle mistake of each lab that tests/test_labs.py autogrades
(WRONG_SUBMISSIONS) is one of them, caught by the hidden tests only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
HIDDEN_MARKER = "### BEGIN HIDDEN TESTS"


@dataclass(frozen=True)
class Mistake:
    """In the solution cell of `function`, `old` becomes `new`; the graded cells `fails` (default: the function's
    own test cell, "test_<function>") must then raise AssertionError with a message, and every other graded cell
    pass. `visible`: the visible part of the function's test cell catches it already (False: only the hidden tests
    do; None: it depends on the random draw, e.g. on the device, and the hidden tests catch it in any case)."""

    function: str
    what: str
    old: str
    new: str
    fails: tuple[str, ...] = ()
    visible: bool | None = False

    @property
    def failing(self) -> tuple[str, ...]:
        return self.fails or (f"test_{self.function}",)


def M(function, what, old, new, *, fails=(), visible=False):  # noqa: N802 (a short constructor for the table)
    return Mistake(function, what, old, new, tuple(fails), visible)


# ---- Lab 1: corruptions (gaussian, masking, salt and pepper), the emphasized loss, the encoder
LAB01 = [
    # gaussian_noise
    M("gaussian_noise", "sigma squared (sigma read as the variance)",
      "x + sigma * eps", "x + sigma ** 2 * eps", visible=True),
    M("gaussian_noise", "the square root of sigma (sigma read as the variance, the other way round)",
      "x + sigma * eps", "x + sigma ** 0.5 * eps", visible=True),
    M("gaussian_noise", "uniform noise in [0, 1) (torch.rand for torch.randn)",
      "eps = torch.randn(x.shape,", "eps = torch.rand(x.shape,", visible=True),
    M("gaussian_noise", "uniform noise of mean 0 and variance 1, not gaussian",
      "eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)",
      "eps = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * 3 ** 0.5"),
    M("gaussian_noise", "one noise image for the whole batch",
      "eps = torch.randn(x.shape,", "eps = torch.randn(x.shape[1:],"),
    M("gaussian_noise", "one noise value per pixel, shared by all channels",
      "eps = torch.randn(x.shape,", "eps = torch.randn((x.shape[0], 1, *x.shape[2:]),"),
    M("gaussian_noise", "one noise value per image (a brightness shift, not noise per element)",
      "eps = torch.randn(x.shape,", "eps = torch.randn((x.shape[0], 1, 1, 1),", visible=None),
    M("gaussian_noise", "the generator is not passed (torch's global random state)",
      "eps = torch.randn(x.shape, generator=generator,", "eps = torch.randn(x.shape,", visible=True),
    M("gaussian_noise", "no clipping to [0, 1]",
      "corrupted = (x + sigma * eps).clamp(0.0, 1.0)", "corrupted = x + sigma * eps", visible=True),
    M("gaussian_noise", "clipped at 1 only (negative values stay)",
      ".clamp(0.0, 1.0)", ".clamp(max=1.0)", visible=None),
    M("gaussian_noise", "torch.randn_like(x) without the generator",
      "eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)", "eps = torch.randn_like(x)", visible=True),
    M("gaussian_noise", "the mask marks the elements that changed, not every element the noise acted on",
      "mask = torch.ones_like(x, dtype=torch.bool)", "mask = corrupted != x"),
    M("gaussian_noise", "x modified in place",
      "corrupted = (x + sigma * eps).clamp(0.0, 1.0)", "corrupted = x.add_(sigma * eps).clamp_(0.0, 1.0)", visible=True),
    M("gaussian_noise", "a float mask (ones_like without dtype=torch.bool)",
      "mask = torch.ones_like(x, dtype=torch.bool)", "mask = torch.ones_like(x)", visible=True),
    # masking_noise
    M("masking_noise", "each element masked with probability fraction (not exactly k per image)",
      "mask = (ranks < k).view_as(x)",
      "mask = torch.rand(x.shape, generator=generator, device=x.device) < fraction",
      fails=("test_masking_noise", "test_salt_and_pepper"), visible=True),
    M("masking_noise", "k truncated with int() instead of rounded",
      "k = round(fraction * d)", "k = int(fraction * d)", fails=("test_masking_noise", "test_salt_and_pepper")),
    M("masking_noise", "fraction used as a count of elements",
      "k = round(fraction * d)", "k = round(fraction)", fails=("test_masking_noise", "test_salt_and_pepper"), visible=True),
    M("masking_noise", "one mask for the whole batch",
      "scores = torch.rand(b, d, generator=generator, device=x.device)",
      "scores = torch.rand(1, d, generator=generator, device=x.device).expand(b, d)",
      fails=("test_masking_noise", "test_salt_and_pepper")),
    M("masking_noise", "the k elements chosen among the B*C*H*W elements of the whole batch (not per image)",
      "ranks = scores.argsort(dim=1).argsort(dim=1)",
      "ranks = scores.flatten().argsort().argsort().view(b, d) // b",
      fails=("test_masking_noise", "test_salt_and_pepper"), visible=True),
    M("masking_noise", "pixels, not elements: one mask per pixel, shared by all channels",
      "mask = (ranks < k).view_as(x)",
      "mask = (ranks < k).view_as(x)[:, :1].expand_as(x)",
      fails=("test_masking_noise", "test_salt_and_pepper")),
    M("masking_noise", "always the first k elements of each image (no random choice)",
      "ranks = scores.argsort(dim=1).argsort(dim=1)",
      "ranks = torch.arange(d, device=x.device).expand(b, d)",
      fails=("test_masking_noise", "test_salt_and_pepper")),
    M("masking_noise", "the generator is not passed",
      "scores = torch.rand(b, d, generator=generator, device=x.device)",
      "scores = torch.rand(b, d, device=x.device)",
      fails=("test_masking_noise", "test_salt_and_pepper")),
    M("masking_noise", "the mask marks the elements that changed (misses those that were 0 already)",
      "return x.masked_fill(mask, 0.0), mask", "corrupted = x.masked_fill(mask, 0.0)\n    return corrupted, corrupted != x"),
    M("masking_noise", "x modified in place",
      "return x.masked_fill(mask, 0.0), mask", "return x.masked_fill_(mask, 0.0), mask", fails=("test_masking_noise", "test_salt_and_pepper"), visible=True),
    # salt_and_pepper
    M("salt_and_pepper", "one coin per image (the whole image gets salt or pepper)",
      "heads = torch.rand(x.shape,", "heads = torch.rand((x.shape[0], 1, 1, 1),"),
    M("salt_and_pepper", "one coin for the whole batch",
      "heads = torch.rand(x.shape,", "heads = torch.rand((1, 1, 1, 1),", visible=True),
    M("salt_and_pepper", "one coin per pixel, shared by all channels",
      "heads = torch.rand(x.shape,", "heads = torch.rand((x.shape[0], 1, *x.shape[2:]),"),
    M("salt_and_pepper", "the coins do not use the generator",
      "heads = torch.rand(x.shape, generator=generator,", "heads = torch.rand(x.shape,"),
    M("salt_and_pepper", "the elements are chosen without the generator",
      "masking_noise(x, fraction, generator=generator)", "masking_noise(x, fraction)"),
    M("salt_and_pepper", "a coin that shows salt with probability fraction, not 1/2",
      "< 0.5", "< fraction"),
    M("salt_and_pepper", "exactly half of each image's elements salt (no coin flips)",
      "heads = torch.rand(x.shape, generator=generator, device=x.device) < 0.5",
      "heads = (torch.rand(x.shape[0], x[0].numel(), generator=generator, device=x.device).argsort(1).argsort(1) < x[0].numel() // 2).view_as(x)"),
    M("salt_and_pepper", "each element corrupted with probability fraction (not exactly k per image)",
      "_, mask = masking_noise(x, fraction, generator=generator)",
      "mask = torch.rand(x.shape, generator=generator, device=x.device) < fraction", visible=True),
    M("salt_and_pepper", "the mask marks only the elements set to 1",
      "return torch.where(mask, heads.to(x.dtype), x), mask", "return torch.where(mask, heads.to(x.dtype), x), mask & heads", visible=True),
    M("salt_and_pepper", "x modified in place",
      "return torch.where(mask, heads.to(x.dtype), x), mask", "x[mask] = heads[mask].to(x.dtype)\n    return x, mask", visible=True),
    # emphasized_mse
    M("emphasized_mse", "alpha and beta swapped",
      "alpha * squared[corrupted].sum() + beta * squared[~corrupted].sum()",
      "beta * squared[corrupted].sum() + alpha * squared[~corrupted].sum()", visible=True),
    M("emphasized_mse", "the sum, not divided by n",
      ") / squared.numel()", ")", visible=True),
    M("emphasized_mse", "divided by the number of corrupted elements",
      ") / squared.numel()", ") / corrupted.sum()", visible=True),
    M("emphasized_mse", "n is the number of elements of one image, not of the batch",
      ") / squared.numel()", ") / squared[0].numel()"),
    M("emphasized_mse", "a mean over the corrupted and a mean over the untouched elements, weighted",
      "return (alpha * squared[corrupted].sum() + beta * squared[~corrupted].sum()) / squared.numel()",
      "return alpha * squared[corrupted].mean() + beta * squared[~corrupted].mean()", visible=True),
    M("emphasized_mse", "absolute error, not squared",
      "squared = (target - pred) ** 2", "squared = (target - pred).abs()", visible=True),
    M("emphasized_mse", "the weights applied before squaring (alpha squared)",
      "return (alpha * squared[corrupted].sum() + beta * squared[~corrupted].sum()) / squared.numel()",
      "weighted = torch.where(corrupted, alpha * (target - pred), beta * (target - pred))\n    return (weighted ** 2).mean()", visible=True),
    M("emphasized_mse", "beta ignored: 1 - alpha used for the untouched elements",
      "+ beta * squared[~corrupted].sum()", "+ (1 - alpha) * squared[~corrupted].sum()", visible=True),
    M("emphasized_mse", "pred detached (no gradient)",
      "squared = (target - pred) ** 2", "squared = (target - pred.detach()) ** 2", visible=True),
    M("emphasized_mse", "a Python float rebuilt into a tensor (cut from the graph)",
      "return (alpha * squared[corrupted].sum() + beta * squared[~corrupted].sum()) / squared.numel()",
      "return torch.tensor(((alpha * squared[corrupted].sum() + beta * squared[~corrupted].sum()) / squared.numel()).item())",
      visible=True),
    # build_encoder
    M("build_encoder", "convolutions with a bias",
      "padding=kernel // 2, bias=False)", "padding=kernel // 2)", visible=True),
    M("build_encoder", "no batch normalization",
      "nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]", "nn.ReLU(inplace=True)]", visible=True),
    M("build_encoder", "ReLU before batch norm",
      "nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]", "nn.ReLU(inplace=True), nn.BatchNorm2d(cout)]", visible=True),
    M("build_encoder", "the stride-2 layers one early (layers 2 and 5, counting from 0)",
      "*block(in_channels, w1), *block(w1, w1), *block(w1, w1, stride=2),\n        *block(w1, w2), *block(w2, w2), *block(w2, w2, stride=2),",
      "*block(in_channels, w1), *block(w1, w1, stride=2), *block(w1, w1),\n        *block(w1, w2), *block(w2, w2, stride=2), *block(w2, w2),"),
    M("build_encoder", "no padding (the maps shrink)",
      "padding=kernel // 2, ", "", visible=True),
    M("build_encoder", "the last layer without batch norm and ReLU",
      "*block(w2, 10, kernel=1),", "nn.Conv2d(w2, 10, 1, bias=False),", visible=True),
    M("build_encoder", "3x3 kernels for layers 8 and 9",
      "*block(w2, w2, kernel=1), *block(w2, 10, kernel=1),", "*block(w2, w2), *block(w2, 10),", visible=True),
    M("build_encoder", "widths ignored (always 32 and 64)",
      "w1, w2 = widths", "w1, w2 = 32, 64"),
    M("build_encoder", "in_channels ignored (always 1)",
      "*block(in_channels, w1)", "*block(1, w1)"),
    M("build_encoder", "widths swapped",
      "w1, w2 = widths", "w2, w1 = widths", visible=True),
    M("build_encoder", "an nn.ModuleList (which has no forward) instead of an nn.Sequential",
      "return nn.Sequential(\n        *block(in_channels, w1), *block(w1, w1), *block(w1, w1, stride=2),\n"
      "        *block(w1, w2), *block(w2, w2), *block(w2, w2, stride=2),\n"
      "        *block(w2, w2), *block(w2, w2, kernel=1), *block(w2, 10, kernel=1),\n    )",
      "return nn.ModuleList([\n        *block(in_channels, w1), *block(w1, w1), *block(w1, w1, stride=2),\n"
      "        *block(w1, w2), *block(w2, w2), *block(w2, w2, stride=2),\n"
      "        *block(w2, w2), *block(w2, w2, kernel=1), *block(w2, 10, kernel=1),\n    ])", visible=True),
    M("build_encoder", "nine nested blocks instead of one flat nn.Sequential of 27 layers",
      "return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]",
      "return [nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))]",
      visible=True),
]

# ---- Lab 2: random block masks, the masked reconstruction loss, RGB to Lab, class rebalancing
LAB02 = [
    # random_block_mask
    M("random_block_mask", "rows and columns swapped: h from W and w from H",
      "h, w = round(math.sqrt(block_fraction) * H), round(math.sqrt(block_fraction) * W)",
      "h, w = round(math.sqrt(block_fraction) * W), round(math.sqrt(block_fraction) * H)"),
    M("random_block_mask", "square blocks whose side comes from the shorter image side",
      "h, w = round(math.sqrt(block_fraction) * H), round(math.sqrt(block_fraction) * W)",
      "h = w = round(math.sqrt(block_fraction) * min(H, W))"),
    M("random_block_mask", "the sides truncated with int() instead of rounded",
      "h, w = round(math.sqrt(block_fraction) * H), round(math.sqrt(block_fraction) * W)",
      "h, w = int(math.sqrt(block_fraction) * H), int(math.sqrt(block_fraction) * W)"),
    M("random_block_mask", "block_fraction used as the side's fraction, not the area's",
      "h, w = round(math.sqrt(block_fraction) * H), round(math.sqrt(block_fraction) * W)",
      "h, w = round(block_fraction * H), round(block_fraction * W)", visible=True),
    M("random_block_mask", "off by one: the corner never reaches the last row and column (randint's high is exclusive)",
      "top = torch.randint(0, H - h + 1, (b, num_blocks)", "top = torch.randint(0, H - h, (b, num_blocks)"),
    M("random_block_mask", "corners anywhere in the image (blocks cut off at the border)",
      "top = torch.randint(0, H - h + 1, (b, num_blocks), generator=generator, device=device)\n"
      "    left = torch.randint(0, W - w + 1, (b, num_blocks), generator=generator, device=device)",
      "top = torch.randint(0, H, (b, num_blocks), generator=generator, device=device)\n"
      "    left = torch.randint(0, W, (b, num_blocks), generator=generator, device=device)", visible=None),
    M("random_block_mask", "one set of blocks for the whole batch",
      "top = torch.randint(0, H - h + 1, (b, num_blocks), generator=generator, device=device)\n"
      "    left = torch.randint(0, W - w + 1, (b, num_blocks), generator=generator, device=device)",
      "top = torch.randint(0, H - h + 1, (1, num_blocks), generator=generator, device=device).expand(b, num_blocks)\n"
      "    left = torch.randint(0, W - w + 1, (1, num_blocks), generator=generator, device=device).expand(b, num_blocks)"),
    M("random_block_mask", "one corner per image, shared by its blocks (they all sit at the same place)",
      "top = torch.randint(0, H - h + 1, (b, num_blocks), generator=generator, device=device)\n"
      "    left = torch.randint(0, W - w + 1, (b, num_blocks), generator=generator, device=device)",
      "top = torch.randint(0, H - h + 1, (b, 1), generator=generator, device=device).expand(b, num_blocks)\n"
      "    left = torch.randint(0, W - w + 1, (b, 1), generator=generator, device=device).expand(b, num_blocks)"),
    M("random_block_mask", "one random number for both the top and the left of a block (blocks on the diagonal)",
      "left = torch.randint(0, W - w + 1, (b, num_blocks), generator=generator, device=device)",
      "left = top * (W - w) // max(H - h, 1)"),
    M("random_block_mask", "the generator not passed to the columns' draw",
      "left = torch.randint(0, W - w + 1, (b, num_blocks), generator=generator, device=device)",
      "left = torch.randint(0, W - w + 1, (b, num_blocks), device=device)", visible=True),
    M("random_block_mask", "num_blocks ignored (always 4)",
      "top = torch.randint(0, H - h + 1, (b, num_blocks), generator=generator, device=device)\n"
      "    left = torch.randint(0, W - w + 1, (b, num_blocks), generator=generator, device=device)",
      "top = torch.randint(0, H - h + 1, (b, 4), generator=generator, device=device)\n"
      "    left = torch.randint(0, W - w + 1, (b, 4), generator=generator, device=device)\n    num_blocks = 4", visible=True),
    M("random_block_mask", "the block ends included (h + 1 rows, w + 1 columns)",
      "(rows < top + h) & (cols >= left) & (cols < left + w)", "(rows <= top + h) & (cols >= left) & (cols <= left + w)", visible=True),
    M("random_block_mask", "rows compared with the columns' corners and the other way round",
      "inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)",
      "inside = (rows >= left) & (rows < left + w) & (cols >= top) & (cols < top + h)"),
    M("random_block_mask", "one mask channel per image channel, (B, C, H, W)",
      "return inside.any(dim=1, keepdim=True)", "return inside.any(dim=1, keepdim=True).expand(b, shape[1], H, W)", visible=True),
    M("random_block_mask", "a float mask",
      "return inside.any(dim=1, keepdim=True)", "return inside.any(dim=1, keepdim=True).float()", visible=True),
    # masked_reconstruction_loss
    M("masked_reconstruction_loss", "divided by the number of hidden pixels, not hidden elements (pixels times channels)",
      "return squared[hidden].sum() / hidden.sum().clamp_min(1)", "return squared[hidden].sum() / mask.sum().clamp_min(1)"),
    M("masked_reconstruction_loss", "divided by the number of all elements",
      "return squared[hidden].sum() / hidden.sum().clamp_min(1)", "return squared[hidden].sum() / squared.numel()", visible=True),
    M("masked_reconstruction_loss", "the sum, not the mean",
      "return squared[hidden].sum() / hidden.sum().clamp_min(1)", "return squared[hidden].sum()", visible=True),
    M("masked_reconstruction_loss", "the error on the visible elements (the mask read the wrong way round)",
      "hidden = mask.expand_as(pred)", "hidden = ~mask.expand_as(pred)", visible=True),
    M("masked_reconstruction_loss", "the mean over every element",
      "return squared[hidden].sum() / hidden.sum().clamp_min(1)", "return squared.mean()", visible=True),
    M("masked_reconstruction_loss", "nan with nothing hidden (0 / 0)",
      "return squared[hidden].sum() / hidden.sum().clamp_min(1)", "return squared[hidden].mean()"),
    M("masked_reconstruction_loss", "absolute error, not squared",
      "squared = (pred - target) ** 2", "squared = (pred - target).abs()", visible=True),
    M("masked_reconstruction_loss", "the mean of each image's mean",
      "return squared[hidden].sum() / hidden.sum().clamp_min(1)",
      "per_image = (squared * hidden).flatten(1).sum(1) / hidden.flatten(1).sum(1).clamp_min(1)\n    return per_image.mean()"),
    M("masked_reconstruction_loss", "the first channel of a per-channel mask used for every channel",
      "hidden = mask.expand_as(pred)", "hidden = mask[:, :1].expand_as(pred)"),
    M("masked_reconstruction_loss", "the count of hidden pixels times the channels (wrong for a per-channel mask)",
      "return squared[hidden].sum() / hidden.sum().clamp_min(1)", "return squared[hidden].sum() / (mask.sum() * pred.shape[1]).clamp_min(1)"),
    M("masked_reconstruction_loss", "pred detached (no gradient)",
      "squared = (pred - target) ** 2", "squared = (pred.detach() - target) ** 2", visible=True),
    # rgb_to_lab
    M("rgb_to_lab", "no sRGB linearisation",
      "linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)", "linear = rgb"),
    M("rgb_to_lab", "a plain power 2.2 for the sRGB curve",
      "linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)", "linear = rgb ** 2.2"),
    M("rgb_to_lab", "the sRGB curve without its linear toe",
      "linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)", "linear = ((rgb + 0.055) / 1.055) ** 2.4",
      visible=True),
    M("rgb_to_lab", "the transpose of RGB_TO_XYZ",
      'torch.einsum("ij,bjhw->bihw", RGB_TO_XYZ.to(rgb), linear)', 'torch.einsum("ji,bjhw->bihw", RGB_TO_XYZ.to(rgb), linear)', visible=True),
    M("rgb_to_lab", "no division by the white point",
      "xyz = xyz / WHITE_D65.to(rgb).view(1, 3, 1, 1)", "xyz = xyz", visible=True),
    M("rgb_to_lab", "f without its linear part",
      "f = torch.where(xyz > delta**3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * delta**2) + 4 / 29)", "f = xyz.clamp_min(0) ** (1 / 3)",
      visible=True),
    M("rgb_to_lab", "f's threshold at (6/29)^2, not (6/29)^3",
      "torch.where(xyz > delta**3,", "torch.where(xyz > delta**2,", visible=True),
    M("rgb_to_lab", "the offset -16 of L missing",
      "116 * fy - 16", "116 * fy", visible=True),
    M("rgb_to_lab", "a and b with their factors swapped",
      "500 * (fx - fy), 200 * (fy - fz)", "200 * (fx - fy), 500 * (fy - fz)", visible=True),
    M("rgb_to_lab", "the channels in the order L, b, a",
      "torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)", "torch.stack([116 * fy - 16, 200 * (fy - fz), 500 * (fx - fy)], dim=1)",
      visible=True),
    M("rgb_to_lab", "the float64 constants not converted to the input's dtype",
      "RGB_TO_XYZ.to(rgb), linear)", "RGB_TO_XYZ, linear)", visible=True),
    M("rgb_to_lab", "computed and returned in float64 whatever the input's dtype",
      "linear = torch.where(rgb > 0.04045,", "rgb = rgb.double()\n    linear = torch.where(rgb > 0.04045,", visible=True),
    # rebalancing_weights
    M("rebalancing_weights", "scaled so that the plain mean of the weights is 1",
      "return w / (prior * w).sum()", "return w / w.mean()", visible=True),
    M("rebalancing_weights", "scaled so that the weights sum to 1",
      "return w / (prior * w).sum()", "return w / w.sum()", visible=True),
    M("rebalancing_weights", "not normalised",
      "return w / (prior * w).sum()", "return w", visible=True),
    M("rebalancing_weights", "mix and 1 - mix swapped",
      "w = 1.0 / ((1 - mix) * prior + mix / prior.numel())", "w = 1.0 / (mix * prior + (1 - mix) / prior.numel())", visible=True),
    M("rebalancing_weights", "Q counts only the classes that occur (p > 0)",
      "mix / prior.numel()", "mix / (prior > 0).sum()"),
    M("rebalancing_weights", "the mixture itself, not its inverse",
      "w = 1.0 / ((1 - mix) * prior + mix / prior.numel())", "w = (1 - mix) * prior + mix / prior.numel()", visible=True),
    M("rebalancing_weights", "the mixture computed in place, on the prior itself",
      "w = 1.0 / ((1 - mix) * prior + mix / prior.numel())", "w = 1.0 / prior.mul_(1 - mix).add_(mix / prior.numel())", visible=True),
    M("rebalancing_weights", "the weights returned in float32 whatever the prior's dtype",
      "return w / (prior * w).sum()", "return (w / (prior * w).sum()).float()"),
]

# ---- Lab 3: rotations, relative positions, jigsaw permutations and shuffles
SHIFT = "shift = torch.randint(-jitter, jitter + 1, (b, 2, 2), generator=generator, device=device)"
LAB03 = [
    # rotate_batch
    M("rotate_batch", "quarter turns clockwise",
      "torch.rot90(images, angle // 90, dims=(-2, -1))", "torch.rot90(images, -(angle // 90), dims=(-2, -1))", visible=True),
    M("rotate_batch", "rot90 over the dims (-1, -2) (clockwise)",
      "torch.rot90(images, angle // 90, dims=(-2, -1))", "torch.rot90(images, angle // 90, dims=(-1, -2))", visible=True),
    M("rotate_batch", "rotation-major order (all images unrotated first), labels to match",
      "rotated = torch.stack(views, dim=1)", "rotated = torch.stack(views, dim=0)", visible=True),
    M("rotate_batch", "labels in rotation-major order",
      "labels = torch.arange(num_rotations, device=images.device).repeat(len(images))",
      "labels = torch.arange(num_rotations, device=images.device).repeat_interleave(len(images))", visible=True),
    M("rotate_batch", "every turn but 0 resampled (90, 180, 270 degrees not exact)",
      "if angle % 90 == 0:", "if angle == 0:"),
    M("rotate_batch", "45-degree turns clockwise (the sines' signs swapped)",
      "[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]", "[[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]]"),
    M("rotate_batch", "nearest-neighbour resampling",
      'mode="bilinear"', 'mode="nearest"'),
    M("rotate_batch", "the border repeated outside the image instead of zeros",
      'padding_mode="zeros"', 'padding_mode="border"'),
    M("rotate_batch", "theta built in float32 whatever the images' dtype",
      "dtype=images.dtype, device=images.device)", "device=images.device)"),
    M("rotate_batch", "num_rotations = 2 turns by 90 degrees, not 180",
      "angle = r * 360 // num_rotations", "angle = r * 90 if num_rotations == 2 else r * 360 // num_rotations", visible=True),
    M("rotate_batch", "no ValueError for a number of rotations other than 2, 4, 8",
      '        raise ValueError(f"num_rotations must be 2, 4 or 8, got {num_rotations!r}")', "        pass"),
    M("rotate_batch", "int32 labels",
      "labels = torch.arange(num_rotations, device=images.device)", "labels = torch.arange(num_rotations, device=images.device, dtype=torch.int32)",
      visible=True),
    # relative_position_pairs
    M("relative_position_pairs", "one jitter for the whole batch",
      SHIFT, SHIFT.replace("(b, 2, 2)", "(1, 2, 2)") + ".expand(b, 2, 2)"),
    M("relative_position_pairs", "the jitter never reaches +jitter (randint's high is exclusive)",
      "torch.randint(-jitter, jitter + 1,", "torch.randint(-jitter, jitter,", visible=True),
    M("relative_position_pairs", "the two tiles of a pair move by the same shift",
      SHIFT, SHIFT.replace("(b, 2, 2)", "(b, 1, 2)") + ".expand(b, 2, 2)"),
    M("relative_position_pairs", "the same shift along rows and columns",
      SHIFT, SHIFT.replace("(b, 2, 2)", "(b, 2, 1)") + ".expand(b, 2, 2)"),
    M("relative_position_pairs", "only the neighbour is jittered",
      "centre_at = centre + shift[:, 0]", "centre_at = centre.expand(b, 2)"),
    M("relative_position_pairs", "one label for the whole batch",
      "labels = torch.randint(8, (b,), generator=generator, device=device)", "labels = torch.randint(8, (1,), generator=generator, device=device).expand(b)",
      visible=True),
    M("relative_position_pairs", "label 7 never drawn (randint(7))",
      "labels = torch.randint(8, (b,)", "labels = torch.randint(7, (b,)"),
    M("relative_position_pairs", "the offsets read as (dcol, drow)",
      "offsets = torch.tensor(NEIGHBOUR_OFFSETS, device=device)[labels]", "offsets = torch.tensor(NEIGHBOUR_OFFSETS, device=device)[labels].flip(1)",
      visible=True),
    M("relative_position_pairs", "the neighbour one pixel away, not one cell (offsets not scaled by the cell)",
      "neighbour_at = centre + cell * offsets + shift[:, 1]", "neighbour_at = centre + offsets + shift[:, 1]", visible=True),
    M("relative_position_pairs", "tiles of cell - gap pixels (the jitter's margin forgotten)",
      "t = cell - gap - 2 * jitter", "t = cell - gap", visible=True),
    M("relative_position_pairs", "the grid's start ignored (it starts at row and column 0)",
      "centre = torch.tensor([(h - 3 * cell) // 2 + cell + (cell - t) // 2,\n                           (w - 3 * cell) // 2 + cell + (cell - t) // 2]",
      "centre = torch.tensor([cell + (cell - t) // 2,\n                           cell + (cell - t) // 2]", visible=True),
    M("relative_position_pairs", "the grid's start row computed from the width and the start column from the height",
      "centre = torch.tensor([(h - 3 * cell) // 2 + cell + (cell - t) // 2,\n                           (w - 3 * cell) // 2 + cell + (cell - t) // 2]",
      "centre = torch.tensor([(w - 3 * cell) // 2 + cell + (cell - t) // 2,\n                           (h - 3 * cell) // 2 + cell + (cell - t) // 2]"),
    M("relative_position_pairs", "the cell from the height only (not the shorter side)",
      "cell = min(h, w) // 3", "cell = h // 3"),
    M("relative_position_pairs", "tiles cut transposed (rows from the columns' index)",
      "rows = (at[:, :1] + span).view(b, 1, t, 1)\n        cols = (at[:, 1:] + span).view(b, 1, 1, t)",
      "rows = (at[:, :1] + span).view(b, 1, 1, t)\n        cols = (at[:, 1:] + span).view(b, 1, t, 1)", visible=True),
    M("relative_position_pairs", "the labels drawn without the generator",
      "labels = torch.randint(8, (b,), generator=generator, device=device)", "labels = torch.randint(8, (b,), device=device)"),
    M("relative_position_pairs", "the shifts drawn without the generator",
      SHIFT, SHIFT.replace("generator=generator, ", "")),
    # jigsaw_permutations
    M("jigsaw_permutations", "the distance to the last permutation chosen only, not the minimum over all chosen",
      "min_distance = torch.minimum(min_distance, (candidates != candidates[best]).sum(1))",
      "min_distance = (candidates != candidates[best]).sum(1)", visible=True),
    M("jigsaw_permutations", "the sum of the distances to the chosen permutations, not their minimum",
      "min_distance = torch.minimum(min_distance, (candidates != candidates[best]).sum(1))",
      "min_distance = torch.where(min_distance == 0, 0, min_distance + (candidates != candidates[best]).sum(1))", visible=True),
    M("jigsaw_permutations", "the first permutation always the identity (no random draw)",
      "first = int(torch.randint(len(candidates), (1,), generator=generator))", "first = 0"),
    M("jigsaw_permutations", "the first permutation drawn without the generator",
      "torch.randint(len(candidates), (1,), generator=generator)", "torch.randint(len(candidates), (1,))"),
    M("jigsaw_permutations", "uint8 permutations returned (no .long())",
      "return candidates[chosen].long()", "return candidates[chosen]", visible=True),
    M("jigsaw_permutations", "argmin instead of argmax (the closest candidate)",
      "best = int(min_distance.argmax())", "best = int(min_distance.argmin())", visible=True),
    M("jigsaw_permutations", "random permutations, not far apart",
      "best = int(min_distance.argmax())", "best = int(torch.randint(len(candidates), (1,), generator=generator))", visible=True),
    M("jigsaw_permutations", "one permutation too many",
      "for _ in range(n - 1):", "for _ in range(n):", visible=True),
    M("jigsaw_permutations", "grid ignored (always 3 x 3)",
      "size = grid * grid", "size = 9", visible=True),
    M("jigsaw_permutations", "the number of equal positions used as the distance",
      "min_distance = (candidates != candidates[first]).sum(1)", "min_distance = (candidates == candidates[first]).sum(1)", visible=True),
    # shuffle_tiles
    M("shuffle_tiles", "the inverse permutation (tile i sent to position permutations[k, i])",
      "order = permutations[index]", "order = permutations[index].argsort(1)", visible=True),
    M("shuffle_tiles", "one permutation for the whole batch",
      "index = torch.randint(len(permutations), (b,), generator=generator, device=tiles.device)",
      "index = torch.randint(len(permutations), (1,), generator=generator, device=tiles.device).expand(b)"),
    M("shuffle_tiles", "the index drawn without the generator",
      "index = torch.randint(len(permutations), (b,), generator=generator, device=tiles.device)",
      "index = torch.randint(len(permutations), (b,), device=tiles.device)"),
    M("shuffle_tiles", "the last permutation of the set never drawn (randint(P - 1))",
      "index = torch.randint(len(permutations), (b,)", "index = torch.randint(len(permutations) - 1, (b,)", visible=True),
    M("shuffle_tiles", "every puzzle shuffled by the first image's permutation",
      "order = permutations[index]", "order = permutations[index[:1]].expand(b, -1)"),
    M("shuffle_tiles", "int32 index",
      "index = torch.randint(len(permutations), (b,), generator=generator, device=tiles.device)",
      "index = torch.randint(len(permutations), (b,), generator=generator, device=tiles.device, dtype=torch.int32)", visible=True),
    M("shuffle_tiles", "the tiles shuffled in place",
      "return tiles[batch, order], index", "tiles[:] = tiles[batch, order]\n    return tiles, index", visible=True),
]

# ---- Lab 4: CPC's patch grid, causal convolution and InfoNCE
UNFOLD = "grid = images.unfold(2, patch_size, stride).unfold(3, patch_size, stride)"
LAB04 = [
    # patch_grid
    M("patch_grid", "the grid's rows and columns swapped",
      "return grid.permute(0, 2, 3, 1, 4, 5)", "return grid.permute(0, 3, 2, 1, 4, 5)", visible=True),
    M("patch_grid", "every patch transposed",
      "return grid.permute(0, 2, 3, 1, 4, 5)", "return grid.permute(0, 2, 3, 1, 5, 4)", visible=True),
    M("patch_grid", "stride ignored (patches that touch)",
      UNFOLD, "grid = images.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size)", visible=True),
    M("patch_grid", "patch_size and stride swapped in unfold",
      UNFOLD, "grid = images.unfold(2, stride, patch_size).unfold(3, stride, patch_size)", visible=True),
    M("patch_grid", "the channels last, (B, R, C, p, p, channels)",
      "return grid.permute(0, 2, 3, 1, 4, 5)", "return grid.permute(0, 2, 3, 4, 5, 1)", visible=True),
    M("patch_grid", "a loop that misses the last row and column of patches (range(0, H - p, s))",
      UNFOLD + "  # (B, channels, R, C, p, p)\n    return grid.permute(0, 2, 3, 1, 4, 5)",
      "p, s = patch_size, stride\n    h, w = images.shape[-2:]\n"
      "    return torch.stack([torch.stack([images[:, :, i:i + p, j:j + p] for j in range(0, w - p, s)], 1) for i in range(0, h - p, s)], 1)",
      visible=True),
    M("patch_grid", "the leftover pixels padded into a last row and column of patches",
      UNFOLD, "images = F.pad(images, (0, (-(images.shape[-1] - patch_size)) % stride, 0, (-(images.shape[-2] - patch_size)) % stride))\n    " + UNFOLD),
    M("patch_grid", "unfold over the columns first (the patch's two axes come out swapped)",
      UNFOLD, "grid = images.unfold(3, patch_size, stride).unfold(2, patch_size, stride)", visible=True),
    M("patch_grid", "the images converted to float",
      UNFOLD, "grid = images.float().unfold(2, patch_size, stride).unfold(3, patch_size, stride)"),
    M("patch_grid", "a reshape where a permute is needed (channels and grid mixed up)",
      "return grid.permute(0, 2, 3, 1, 4, 5)", "return grid.reshape(grid.shape[0], grid.shape[2], grid.shape[3], grid.shape[1], *grid.shape[4:])",
      visible=True),
    # causal_conv2d
    M("causal_conv2d", "'same' padding (the context sees the rows below)",
      "padded = F.pad(z, (kw // 2, kw // 2, kh - 1, 0))", "padded = F.pad(z, (kw // 2, kw // 2, (kh - 1) // 2, kh - 1 - (kh - 1) // 2))",
      visible=True),
    M("causal_conv2d", "the zeros at the bottom instead of the top",
      "F.pad(z, (kw // 2, kw // 2, kh - 1, 0))", "F.pad(z, (kw // 2, kw // 2, 0, kh - 1))", visible=True),
    M("causal_conv2d", "kh rows of padding and the last output row dropped (row i misses its own row)",
      "padded = F.pad(z, (kw // 2, kw // 2, kh - 1, 0))  # (left, right, top, bottom): zeros above the grid, none below\n"
      "    return F.conv2d(padded, weight, bias)",
      "padded = F.pad(z, (kw // 2, kw // 2, kh, 0))\n    return F.conv2d(padded, weight, bias)[:, :, :-1]", visible=True),
    M("causal_conv2d", "bias ignored",
      "return F.conv2d(padded, weight, bias)", "return F.conv2d(padded, weight)", visible=True),
    M("causal_conv2d", "the kernel flipped (a true convolution instead of F.conv2d's correlation)",
      "return F.conv2d(padded, weight, bias)", "return F.conv2d(padded, weight.flip(-2, -1), bias)"),
    M("causal_conv2d", "causal along the columns too (kw - 1 zeros on the left)",
      "F.pad(z, (kw // 2, kw // 2, kh - 1, 0))", "F.pad(z, (kw - 1, 0, kh - 1, 0))", visible=True),
    M("causal_conv2d", "kh and kw swapped",
      "kh, kw = weight.shape[-2:]", "kw, kh = weight.shape[-2:]", visible=True),
    M("causal_conv2d", "a PixelCNN-style masked kernel with 'same' padding (the top kh // 2 + 1 rows of the kernel only)",
      "padded = F.pad(z, (kw // 2, kw // 2, kh - 1, 0))  # (left, right, top, bottom): zeros above the grid, none below\n"
      "    return F.conv2d(padded, weight, bias)",
      "keep = torch.ones_like(weight)\n    keep[:, :, kh // 2 + 1:] = 0\n"
      "    return F.conv2d(z, weight * keep, bias, padding=(kh // 2, kw // 2))", visible=True),
    M("causal_conv2d", "the weight detached (it cannot train)",
      "return F.conv2d(padded, weight, bias)", "return F.conv2d(padded, weight.detach(), bias)"),
    # cpc_info_nce
    M("cpc_info_nce", "negatives from the prediction's own image only (one softmax per image)",
      "logits = queries @ candidates.T  # (Q, N): every prediction against every patch of the batch\n"
      "    return F.cross_entropy(logits, targets)",
      "logits = torch.bmm(queries.view(b, -1, d), candidates.view(b, -1, d).transpose(1, 2))  # each image on its own\n"
      "    return F.cross_entropy(logits.flatten(0, 1), index[0, k:].reshape(-1).repeat(b))"),
    M("cpc_info_nce", "the sum over the predictions",
      "return F.cross_entropy(logits, targets)", 'return F.cross_entropy(logits, targets, reduction="sum")', visible=True),
    M("cpc_info_nce", "the positive in the prediction's own row",
      "targets = index[:, k:].reshape(-1)", "targets = index[:, : rows - k].reshape(-1)", visible=True),
    M("cpc_info_nce", "the positive one row too close (row i + k - 1)",
      "targets = index[:, k:].reshape(-1)", "targets = index[:, k - 1 : rows - 1].reshape(-1)", visible=True),
    M("cpc_info_nce", "the candidates only the rows k .. R - 1 (the top rows left out)",
      "candidates = z.permute(0, 2, 3, 1).reshape(-1, d).float()", "candidates = z[:, :, k:].permute(0, 2, 3, 1).reshape(-1, d).float()\n"
      "    rows = rows - k\n    k = 0", visible=True),
    M("cpc_info_nce", "a reshape without the permute (the D numbers of a vector scattered)",
      "queries = predictions.permute(0, 2, 3, 1).reshape(-1, d).float()", "queries = predictions.reshape(-1, d).float()", visible=True),
    M("cpc_info_nce", "the candidates flattened column by column while the targets count row by row",
      "candidates = z.permute(0, 2, 3, 1).reshape(-1, d).float()", "candidates = z.permute(0, 3, 2, 1).reshape(-1, d).float()"),
    M("cpc_info_nce", "the predictions flattened column by column",
      "queries = predictions.permute(0, 2, 3, 1).reshape(-1, d).float()", "queries = predictions.permute(0, 3, 2, 1).reshape(-1, d).float()"),
    M("cpc_info_nce", "not computed in float32",
      "queries = predictions.permute(0, 2, 3, 1).reshape(-1, d).float()  # (Q, D): image by image, row by row\n"
      "    candidates = z.permute(0, 2, 3, 1).reshape(-1, d).float()",
      "queries = predictions.permute(0, 2, 3, 1).reshape(-1, d)\n    candidates = z.permute(0, 2, 3, 1).reshape(-1, d)"),
    M("cpc_info_nce", "cosine similarities instead of dot products",
      "logits = queries @ candidates.T", "logits = F.normalize(queries, dim=1) @ F.normalize(candidates, dim=1).T", visible=True),
    M("cpc_info_nce", "z detached (no gradient into the encoder)",
      "candidates = z.permute(0, 2, 3, 1).reshape(-1, d).float()", "candidates = z.detach().permute(0, 2, 3, 1).reshape(-1, d).float()",
      visible=True),
    M("cpc_info_nce", "exp, then log (overflows for large scores)",
      "return F.cross_entropy(logits, targets)",
      "return -(logits.gather(1, targets[:, None]).exp() / logits.exp().sum(1, keepdim=True)).log().mean()"),
]

# ---- Lab 5: NT-Xent, MoCo's InfoNCE, the momentum update and the queue, SimCLR's two views
JITTER = "color_jitter(x, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=jitter_p, generator=generator)"
LAB05 = [
    # nt_xent
    M("nt_xent", "each embedding's similarity with itself left in the denominator (no mask on the diagonal)",
      'logits = logits.masked_fill(self_mask, float("-inf"))  # an anchor is not its own negative',
      "logits = logits  # the diagonal (each anchor with itself) stays in the softmax"),
    M("nt_xent", "the diagonal set to 0 instead of -inf (exp(0) = 1 stays in the denominator)",
      'logits.masked_fill(self_mask, float("-inf"))', "logits.masked_fill(self_mask, 0.0)"),
    M("nt_xent", "the temperature applied twice",
      "logits = z @ z.T / temperature", "logits = z @ z.T / temperature / temperature"),
    M("nt_xent", "no temperature",
      "logits = z @ z.T / temperature", "logits = z @ z.T"),
    M("nt_xent", "the similarities multiplied by the temperature",
      "logits = z @ z.T / temperature", "logits = z @ z.T * temperature", visible=True),
    M("nt_xent", "no L2 normalization (dot products, not cosines)",
      "z = F.normalize(torch.cat([z1, z2]).float(), dim=1)", "z = torch.cat([z1, z2]).float()", visible=True),
    M("nt_xent", "the sum over the anchors, not the mean",
      "return F.cross_entropy(logits, partner)", 'return F.cross_entropy(logits, partner, reduction="sum")'),
    M("nt_xent", "only the first views are anchors",
      "return F.cross_entropy(logits, partner)", "return F.cross_entropy(logits[:n], partner[:n])", visible=True),
    M("nt_xent", "each anchor's partner is itself (then masked out: an infinite loss)",
      "partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])", "partner = torch.cat([torch.arange(n), torch.arange(n, 2 * n)])",
      visible=True),
    M("nt_xent", "negatives from the other view only (z1 @ z2.T, both directions)",
      "return F.cross_entropy(logits, partner)",
      "cross = z[:n] @ z[n:].T / temperature\n    target = torch.arange(n, device=z.device)\n"
      "    return (F.cross_entropy(cross, target) + F.cross_entropy(cross.T, target)) / 2"),
    M("nt_xent", "exp, then log (overflows at small temperatures)",
      "return F.cross_entropy(logits, partner)",
      "return -(logits.gather(1, partner[:, None]).exp() / logits.exp().sum(1, keepdim=True)).log().mean()"),
    M("nt_xent", "the embeddings detached (no gradient)",
      "torch.cat([z1, z2]).float()", "torch.cat([z1, z2]).detach().float()", visible=True),
    M("nt_xent", "z1 normalized in place",
      "z = F.normalize(torch.cat([z1, z2]).float(), dim=1)", "z = torch.cat([z1.div_(z1.norm(dim=1, keepdim=True)), F.normalize(z2, dim=1)]).float()",
      visible=True),
    # info_nce_queue
    M("info_nce_queue", "the queue's rows not normalized",
      "negatives = F.normalize(queue.float(), dim=1)", "negatives = queue.float()"),
    M("info_nce_queue", "the keys not normalized",
      "k = F.normalize(key.float(), dim=1)", "k = key.float()", visible=True),
    M("info_nce_queue", "the queries not normalized",
      "q = F.normalize(query.float(), dim=1)", "q = query.float()"),
    M("info_nce_queue", "the temperature applied twice",
      "dim=1) / temperature", "dim=1) / temperature ** 2", visible=True),
    M("info_nce_queue", "no temperature",
      "dim=1) / temperature", "dim=1)", visible=True),
    M("info_nce_queue", "the sum over the queries, not the mean",
      "return F.cross_entropy(logits, targets)", 'return F.cross_entropy(logits, targets, reduction="sum")', visible=True),
    M("info_nce_queue", "the other queries' keys used as negatives too (SimCLR-style)",
      "logits = torch.cat([positive, negative], dim=1) / temperature",
      "logits = torch.cat([q @ k.T, negative], dim=1) / temperature\n    targets = torch.arange(len(q), device=q.device)\n    return F.cross_entropy(logits, targets)",
      visible=True),
    M("info_nce_queue", "the positive appended after the negatives while the target stays 0",
      "torch.cat([positive, negative], dim=1)", "torch.cat([negative, positive], dim=1)", visible=True),
    M("info_nce_queue", "the queries detached (no gradient)",
      "q = F.normalize(query.float(), dim=1)", "q = F.normalize(query.detach().float(), dim=1)", visible=True),
    M("info_nce_queue", "the queue normalized in place",
      "negatives = F.normalize(queue.float(), dim=1)", "negatives = queue.div_(queue.norm(dim=1, keepdim=True)).float()"),
    # momentum_update
    M("momentum_update", "the coefficients swapped",
      "t.mul_(m).add_(o, alpha=1 - m)", "t.mul_(1 - m).add_(o, alpha=m)", visible=True),
    M("momentum_update", "the loop variable rebound (the target never moves)",
      "t.mul_(m).add_(o, alpha=1 - m)", "t = m * t + (1 - m) * o", visible=True),
    M("momentum_update", "no torch.no_grad() (the update enters the autograd graph)",
      "    with torch.no_grad():\n        for t, o in zip(target.parameters(), online.parameters()):\n            t.mul_(m).add_(o, alpha=1 - m)",
      "    for t, o in zip(target.parameters(), online.parameters()):\n        t.mul_(m).add_(o, alpha=1 - m)", visible=True),
    M("momentum_update", "every tensor of the state dict, buffers included",
      "zip(target.parameters(), online.parameters())", "zip(target.state_dict().values(), online.state_dict().values())"),
    M("momentum_update", "floating-point buffers (batch-norm statistics) moved too",
      "zip(target.parameters(), online.parameters())",
      "zip([*target.parameters(), *[b for b in target.buffers() if b.is_floating_point()]], "
      "[*online.parameters(), *[b for b in online.buffers() if b.is_floating_point()]])"),
    M("momentum_update", "the weights move, the biases do not",
      "for t, o in zip(target.parameters(), online.parameters()):\n            t.mul_(m).add_(o, alpha=1 - m)",
      "for (name, t), o in zip(target.named_parameters(), online.parameters()):\n            if name.endswith(\"weight\"):\n"
      "                t.mul_(m).add_(o, alpha=1 - m)", visible=True),
    M("momentum_update", "the online network scaled in place too",
      "t.mul_(m).add_(o, alpha=1 - m)", "t.mul_(m).add_(o.mul_(1 - m))", visible=True),
    M("momentum_update", "no ValueError for a momentum outside [0, 1]",
      '        raise ValueError(f"the momentum m must be in [0, 1], got {m}")', "        pass"),
    # enqueue
    M("enqueue", "a slice that does not wrap around the end of the queue",
      "queue[rows] = keys.detach().to(queue.dtype)", "queue[pointer:pointer + b] = keys.detach().to(queue.dtype)", visible=True),
    M("enqueue", "the new pointer not taken modulo K",
      "return (pointer + b) % k", "return pointer + b", visible=True),
    M("enqueue", "the pointer returned unchanged",
      "return (pointer + b) % k", "return pointer", visible=True),
    M("enqueue", "the pointer taken modulo the batch size",
      "return (pointer + b) % k", "return (pointer + b) % b", visible=True),
    M("enqueue", "off by one: key i written to row pointer + i + 1",
      "rows = (pointer + torch.arange(b, device=queue.device)) % k", "rows = (pointer + 1 + torch.arange(b, device=queue.device)) % k",
      visible=True),
    M("enqueue", "the keys not detached (the queue carries their autograd history)",
      "queue[rows] = keys.detach().to(queue.dtype)", "queue[rows] = keys.to(queue.dtype)", visible=True),
    M("enqueue", "the keys not cast to the queue's dtype",
      "queue[rows] = keys.detach().to(queue.dtype)", "queue[rows] = keys.detach()"),
    M("enqueue", "a new queue written instead of the one given (no effect on the caller's)",
      "queue[rows] = keys.detach().to(queue.dtype)", "queue = queue.clone()\n    queue[rows] = keys.detach().to(queue.dtype)", visible=True),
    M("enqueue", "no ValueError for more keys than the queue holds",
      "    if b > k:\n", "    if False:\n"),
    M("enqueue", "no ValueError for keys of another dimension",
      "    if keys.dim() != 2 or keys.shape[1] != queue.shape[1]:\n", "    if keys.dim() != 2:\n"),
    # two_views
    M("two_views", "the generator not passed to random_resized_crop",
      "random_resized_crop(x, scale=crop_scale, generator=generator)", "random_resized_crop(x, scale=crop_scale)"),
    M("two_views", "the generator not passed to random_horizontal_flip",
      "random_horizontal_flip(x, flip_p, generator=generator)", "random_horizontal_flip(x, flip_p)"),
    M("two_views", "the generator not passed to color_jitter",
      JITTER, JITTER.replace(", generator=generator", "")),
    M("two_views", "the generator not passed to random_grayscale",
      "random_grayscale(x, grayscale_p, generator=generator)", "random_grayscale(x, grayscale_p)"),
    M("two_views", "the generator not passed to gaussian_blur",
      "gaussian_blur(x, p=blur_p, generator=generator)", "gaussian_blur(x, p=blur_p)"),
    M("two_views", "crop_scale not passed (the crop's default scale)",
      "random_resized_crop(x, scale=crop_scale, generator=generator)", "random_resized_crop(x, generator=generator)"),
    M("two_views", "flip_p not passed (the flip's default 0.5)",
      "random_horizontal_flip(x, flip_p, generator=generator)", "random_horizontal_flip(x, generator=generator)"),
    M("two_views", "jitter_p not passed (color_jitter's default 0.8)",
      JITTER, JITTER.replace("p=jitter_p, ", "")),
    M("two_views", "grayscale_p not passed (the default 0.2)",
      "random_grayscale(x, grayscale_p, generator=generator)", "random_grayscale(x, generator=generator)"),
    M("two_views", "blur_p not passed (gaussian_blur's default 0.5)",
      "gaussian_blur(x, p=blur_p, generator=generator)", "gaussian_blur(x, generator=generator)"),
    M("two_views", "jitter_strength ignored (color_jitter's defaults)",
      JITTER, "color_jitter(x, p=jitter_p, generator=generator)"),
    M("two_views", "the jitter's hue left out (its default 0.1)",
      JITTER, "color_jitter(x, 0.8 * s, 0.8 * s, 0.8 * s, p=jitter_p, generator=generator)"),
    M("two_views", "all four jitter settings 0.8 * s (hue too)",
      JITTER, "color_jitter(x, 0.8 * s, 0.8 * s, 0.8 * s, 0.8 * s, p=jitter_p, generator=generator)"),
    M("two_views", "brightness and hue swapped",
      JITTER, "color_jitter(x, 0.2 * s, 0.8 * s, 0.8 * s, 0.8 * s, p=jitter_p, generator=generator)"),
    M("two_views", "saturation and hue swapped",
      JITTER, "color_jitter(x, 0.8 * s, 0.8 * s, 0.2 * s, 0.8 * s, p=jitter_p, generator=generator)"),
    M("two_views", "jitter_strength itself as the brightness, contrast and saturation (not 0.8 of it)",
      JITTER, "color_jitter(x, s, s, s, 0.2 * s, p=jitter_p, generator=generator)"),
    M("two_views", "one flip decision for the whole batch",
      "x = random_horizontal_flip(x, flip_p, generator=generator)",
      "x = x.flip(-1) if torch.rand((), generator=generator, device=x.device) < flip_p else x"),
    M("two_views", "one jitter decision for the whole batch",
      "x = " + JITTER,
      "if torch.rand((), generator=generator, device=x.device) < jitter_p:\n"
      "            x = " + JITTER.replace("p=jitter_p", "p=1.0")),
    M("two_views", "one grayscale decision for the whole batch",
      "x = random_grayscale(x, grayscale_p, generator=generator)",
      "if torch.rand((), generator=generator, device=x.device) < grayscale_p:\n"
      "            x = random_grayscale(x, 1.0, generator=generator)"),
    M("two_views", "one blur decision for the whole batch",
      "x = gaussian_blur(x, p=blur_p, generator=generator)",
      "if torch.rand((), generator=generator, device=x.device) < blur_p:\n"
      "                x = gaussian_blur(x, p=1.0, generator=generator)"),
    M("two_views", "one view, returned twice",
      "return view(images), view(images)", "v = view(images)\n    return v, v.clone()", visible=True),
    M("two_views", "the second view is the image itself (only one view augmented)",
      "return view(images), view(images)", "return view(images), images.clone()", visible=True),
]

# ---- Lab 6: BYOL's and DINO's losses, the center, the momentum teacher
UPDATE = "center.mul_(m).add_(batch_mean, alpha=1 - m)"
LAB06 = [
    # byol_loss
    M("byol_loss", "the sum over the batch",
      "return (2.0 - 2.0 * cosine).mean()", "return (2.0 - 2.0 * cosine).sum()", visible=True),
    M("byol_loss", "1 - cos, not 2 - 2 cos",
      "return (2.0 - 2.0 * cosine).mean()", "return (1.0 - cosine).mean()", visible=True),
    M("byol_loss", "the squared distance of the raw vectors (no normalization)",
      "return (2.0 - 2.0 * cosine).mean()", "return (p.float() - z.detach().float()).pow(2).sum(1).mean()", visible=True),
    M("byol_loss", "-cos, not 2 - 2 cos",
      "return (2.0 - 2.0 * cosine).mean()", "return (-cosine).mean()", visible=True),
    M("byol_loss", "no stop-gradient on z",
      "z.detach().float()", "z.float()"),
    M("byol_loss", "the cosine over the batch axis (dim=0)",
      "F.cosine_similarity(p.float(), z.detach().float(), dim=1)", "F.cosine_similarity(p.float(), z.detach().float(), dim=0)", visible=True),
    M("byol_loss", "not computed in float32",
      "F.cosine_similarity(p.float(), z.detach().float(), dim=1)", "F.cosine_similarity(p, z.detach(), dim=1)"),
    M("byol_loss", "p detached too (no gradient at all)",
      "F.cosine_similarity(p.float(),", "F.cosine_similarity(p.detach().float(),", visible=True),
    M("byol_loss", "p normalized in place",
      "F.cosine_similarity(p.float(), z.detach().float(), dim=1)",
      "F.cosine_similarity(p.div_(p.norm(dim=1, keepdim=True)).float(), z.detach().float(), dim=1)", visible=True),
    M("byol_loss", "divided by D instead of a mean over the batch",
      "return (2.0 - 2.0 * cosine).mean()", "return (2.0 - 2.0 * cosine).sum() / p.shape[1]", visible=True),
    # dino_loss
    M("dino_loss", "no stop-gradient on the teacher's logits",
      "teacher_logits.detach().float()", "teacher_logits.float()"),
    M("dino_loss", "no stop-gradient on the center",
      "center.detach().float()", "center.float()"),
    M("dino_loss", "the center subtracted from the student's logits",
      "F.softmax((teacher_logits.detach().float() - center.detach().float()) / teacher_temp, dim=1)",
      "F.softmax(teacher_logits.detach().float() / teacher_temp, dim=1)\n"
      "    student_logits = student_logits - center.detach()", visible=True),
    M("dino_loss", "the center subtracted in place from the teacher's logits",
      "(teacher_logits.detach().float() - center.detach().float()) / teacher_temp", "teacher_logits.sub_(center).detach().float() / teacher_temp",
      visible=True),
    M("dino_loss", "no centering",
      "(teacher_logits.detach().float() - center.detach().float()) / teacher_temp", "teacher_logits.detach().float() / teacher_temp",
      visible=True),
    M("dino_loss", "the temperatures swapped",
      ") / teacher_temp, dim=1)", ") / student_temp, dim=1)\n    student_temp = teacher_temp", visible=True),
    M("dino_loss", "the teacher not sharpened (no teacher temperature)",
      "(teacher_logits.detach().float() - center.detach().float()) / teacher_temp", "(teacher_logits.detach().float() - center.detach().float())",
      visible=True),
    M("dino_loss", "no student temperature",
      "F.log_softmax(student_logits.float() / student_temp, dim=1)", "F.log_softmax(student_logits.float(), dim=1)", visible=True),
    M("dino_loss", "the sum over the rows",
      "return -(teacher * log_student).sum(dim=1).mean()", "return -(teacher * log_student).sum()", visible=True),
    M("dino_loss", "the mean over every entry (the sum over K missing)",
      "return -(teacher * log_student).sum(dim=1).mean()", "return -(teacher * log_student).mean()", visible=True),
    M("dino_loss", "the softmaxes over the batch (dim=0)",
      "/ teacher_temp, dim=1)", "/ teacher_temp, dim=0)", visible=True),
    M("dino_loss", "log of softmax (not log_softmax: -inf for large logits)",
      "log_student = F.log_softmax(student_logits.float() / student_temp, dim=1)",
      "log_student = torch.log(F.softmax(student_logits.float() / student_temp, dim=1))"),
    M("dino_loss", "the teacher and the student's roles swapped in the cross-entropy",
      "return -(teacher * log_student).sum(dim=1).mean()",
      "return -(F.softmax(student_logits.float() / student_temp, dim=1) * torch.log_softmax(teacher.log(), dim=1)).sum(dim=1).mean()",
      visible=True),
    M("dino_loss", "not computed in float32",
      "(teacher_logits.detach().float() - center.detach().float()) / teacher_temp, dim=1)  # (N, K), a fixed label\n"
      "    log_student = F.log_softmax(student_logits.float() / student_temp, dim=1)",
      "(teacher_logits.detach() - center.detach()) / teacher_temp, dim=1)\n"
      "    log_student = F.log_softmax(student_logits / student_temp, dim=1)"),
    # update_center
    M("update_center", "the coefficients swapped",
      UPDATE, "center.mul_(1 - m).add_(batch_mean, alpha=m)", visible=True),
    M("update_center", "the mean over the outputs (dim=1), not the rows",
      "batch_mean = teacher_logits.mean(dim=0)", "batch_mean = teacher_logits.mean(dim=1)"
      ".mean().expand(center.shape)", visible=True),
    M("update_center", "the name rebound (the caller's center never moves)",
      UPDATE, "center = m * center + (1 - m) * batch_mean", visible=True),
    M("update_center", "no torch.no_grad() (the center carries the logits' autograd history)",
      "    with torch.no_grad():\n        batch_mean = teacher_logits.mean(dim=0).to(center.dtype)  # (K,): the mean over the rows\n        " + UPDATE,
      "    batch_mean = teacher_logits.mean(dim=0).to(center.dtype)\n    " + UPDATE),
    M("update_center", "a new tensor written into center.data (not in place)",
      UPDATE, "center.data = m * center + (1 - m) * batch_mean", visible=True),
    M("update_center", "no ValueError for a momentum outside [0, 1]",
      '        raise ValueError(f"update_center: the momentum m must be in [0, 1], got {m}")', "        pass"),
    M("update_center", "no ValueError for logits of the wrong shape",
      "    if teacher_logits.dim() != 2 or teacher_logits.shape[1] != center.numel():\n", "    if False:\n"),
    M("update_center", "the sum of the rows, not their mean",
      "batch_mean = teacher_logits.mean(dim=0)", "batch_mean = teacher_logits.sum(dim=0)", visible=True),
    M("update_center", "the mean of every logit (one number for all outputs)",
      "batch_mean = teacher_logits.mean(dim=0)", "batch_mean = teacher_logits.mean()", visible=True),
    # update_teacher
    M("update_teacher", "the coefficients swapped",
      "t.mul_(m).add_(s, alpha=1 - m)", "t.mul_(1 - m).add_(s, alpha=m)", visible=True),
    M("update_teacher", "the loop variable rebound (the teacher never moves)",
      "t.mul_(m).add_(s, alpha=1 - m)", "t = m * t + (1 - m) * s", visible=True),
    M("update_teacher", "no torch.no_grad()",
      "    with torch.no_grad():\n        for t, s in zip(t_params, s_params):\n            t.mul_(m).add_(s, alpha=1 - m)",
      "    for t, s in zip(t_params, s_params):\n        t.mul_(m).add_(s, alpha=1 - m)", visible=True),
    M("update_teacher", "every tensor of the state dict, buffers included",
      "t_params, s_params = list(teacher.parameters()), list(student.parameters())",
      "t_params, s_params = list(teacher.state_dict().values()), list(student.state_dict().values())"),
    M("update_teacher", "no check of the networks (zip pairs the wrong tensors or stops early)",
      "    if len(t_params) != len(s_params) or any(t.shape != s.shape for t, s in zip(t_params, s_params)):\n", "    if False:\n"),
    M("update_teacher", "only the number of parameters checked, not their shapes",
      "if len(t_params) != len(s_params) or any(t.shape != s.shape for t, s in zip(t_params, s_params)):",
      "if len(t_params) != len(s_params):"),
    M("update_teacher", "the shapes checked inside the update loop (the teacher half updated when it raises)",
      "any(t.shape != s.shape for t, s in zip(t_params, s_params)):\n"
      "        raise ValueError(\"update_teacher: the teacher and the student must have the same parameters in the same shapes; got \"\n"
      "                         f\"{[tuple(t.shape) for t in t_params]} and {[tuple(s.shape) for s in s_params]}\")\n"
      "    with torch.no_grad():\n        for t, s in zip(t_params, s_params):\n            t.mul_(m).add_(s, alpha=1 - m)",
      "False:\n        raise ValueError(\"update_teacher: the networks have different numbers of parameters\")\n"
      "    with torch.no_grad():\n        for t, s in zip(t_params, s_params):\n"
      "            if t.shape != s.shape:\n                raise ValueError(f\"update_teacher: shapes {tuple(t.shape)} and {tuple(s.shape)} differ\")\n"
      "            t.mul_(m).add_(s, alpha=1 - m)"),
    M("update_teacher", "no ValueError for a momentum outside [0, 1]",
      '        raise ValueError(f"update_teacher: the momentum m must be in [0, 1], got {m}")', "        pass"),
    M("update_teacher", "the student scaled in place too",
      "t.mul_(m).add_(s, alpha=1 - m)", "t.mul_(m).add_(s.mul_(1 - m))", visible=True),
]

# ---- Lab 7: MAE's patchify, unpatchify, random masking and masked MSE
LAB07 = [
    # patchify
    M("patchify", "a plain reshape of the pixels",
      "x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 1, 2, 3, 4, 5)", visible=True),
    M("patchify", "each patch flattened in (column, row) order",
      "x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 2, 4, 5, 3, 1)", visible=True),
    M("patchify", "the patches read column by column",
      "x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 4, 2, 3, 5, 1)", visible=True),
    M("patchify", "the channel varies slowest inside a patch ((channel, row, column) order)",
      "x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 2, 4, 1, 3, 5)", visible=True),
    M("patchify", "no ValueError for sizes not divisible by the patch size",
      "    if height % p or width % p:\n", "    if False:\n"),
    M("patchify", "the grid's height and width swapped (non-square images come out scrambled)",
      "h, w = height // p, width // p", "h, w = width // p, height // p"),
    M("patchify", "the images converted to float",
      "x = images.reshape(b, c, h, p, w, p)", "x = images.float().reshape(b, c, h, p, w, p)"),
    # unpatchify
    M("unpatchify", "the wrong permutation back (patch rows and grid columns mixed up)",
      "x = x.permute(0, 5, 1, 3, 2, 4)", "x = x.permute(0, 5, 1, 2, 3, 4)", visible=True),
    M("unpatchify", "each patch read in (channel, row, column) order",
      "x = patches.reshape(b, h, w, p, p, c)\n    x = x.permute(0, 5, 1, 3, 2, 4)",
      "x = patches.reshape(b, h, w, c, p, p)\n    x = x.permute(0, 3, 1, 4, 2, 5)", visible=True),
    M("unpatchify", "image_size taken as a pair only (an int fails)",
      "height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)",
      "height, width = image_size", visible=True),
    M("unpatchify", "square images assumed",
      "height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)",
      "height = width = image_size if isinstance(image_size, int) else image_size[0]", visible=True),
    M("unpatchify", "no ValueError when L does not match the image size",
      "    if length != h * w:\n", "    if False:\n"),
    M("unpatchify", "no ValueError when D is not a multiple of p**2",
      "    if dim % (p * p):\n", "    if False:\n"),
    M("unpatchify", "the grid's height and width swapped",
      "h, w = height // p, width // p", "h, w = width // p, height // p", visible=True),
    # random_masking
    M("random_masking", "one random order for the whole batch",
      "noise = torch.rand(b, length, generator=generator, device=tokens.device)",
      "noise = torch.rand(1, length, generator=generator, device=tokens.device).expand(b, length)", visible=True),
    M("random_masking", "L_keep truncated with int() instead of rounded",
      "keep = round((1 - mask_ratio) * length)", "keep = int((1 - mask_ratio) * length)"),
    M("random_masking", "mask_ratio read as the fraction kept",
      "keep = round((1 - mask_ratio) * length)", "keep = round(mask_ratio * length)", visible=True),
    M("random_masking", "the mask 1 where the token is kept",
      "mask = torch.ones(b, length, device=tokens.device)\n    mask[:, :keep] = 0",
      "mask = torch.zeros(b, length, device=tokens.device)\n    mask[:, :keep] = 1", visible=True),
    M("random_masking", "the mask left in the shuffled order",
      "mask = mask.gather(1, ids_restore)", "mask = mask", visible=True),
    M("random_masking", "ids_restore is the shuffle itself, not its inverse",
      "ids_restore = ids_shuffle.argsort(dim=1)", "ids_restore = ids_shuffle", visible=True),
    M("random_masking", "the generator not passed",
      "noise = torch.rand(b, length, generator=generator, device=tokens.device)", "noise = torch.rand(b, length, device=tokens.device)"),
    M("random_masking", "the kept tokens sorted back into their original order (ids_restore no longer matches)",
      "ids_keep = ids_shuffle[:, :keep]", "ids_keep = ids_shuffle[:, :keep].sort(dim=1).values", visible=True),
    M("random_masking", "the tokens detached (no gradient to the encoder's input)",
      "visible = tokens.gather(1,", "visible = tokens.detach().gather(1,"),
    M("random_masking", "no check that mask_ratio lies in [0, 1)",
      "    if not 0.0 <= mask_ratio < 1.0:\n", "    if False:\n"),
    M("random_masking", "a bool mask",
      "mask = torch.ones(b, length, device=tokens.device)", "mask = torch.ones(b, length, device=tokens.device, dtype=torch.bool)", visible=True),
    M("random_masking", "the visible tokens converted to float32",
      "visible = tokens.gather(1,", "visible = tokens.float().gather(1,"),
    # masked_mse
    M("masked_mse", "the mean over all patches, not the hidden ones",
      "return (per_patch * mask).sum() / mask.sum()", "return per_patch.mean()"),
    M("masked_mse", "divided by the number of all patches",
      "return (per_patch * mask).sum() / mask.sum()", "return (per_patch * mask).mean()", visible=True),
    M("masked_mse", "the visible patches counted (the mask read the wrong way round)",
      "return (per_patch * mask).sum() / mask.sum()", "return (per_patch * (1 - mask)).sum() / (1 - mask).sum()", visible=True),
    M("masked_mse", "the mean of each image's mean",
      "return (per_patch * mask).sum() / mask.sum()", "return ((per_patch * mask).sum(1) / mask.sum(1)).mean()"),
    M("masked_mse", "the sum over the D values of a patch",
      "per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)", "per_patch = (pred.float() - target.float()).pow(2).sum(dim=-1)",
      visible=True),
    M("masked_mse", "not computed in float32",
      "per_patch = (pred.float() - target.float())", "per_patch = (pred - target)"),
    M("masked_mse", "pred modified in place",
      "per_patch = (pred.float() - target.float()).pow(2)", "per_patch = pred.sub_(target).float().pow(2)", visible=True),
    M("masked_mse", "pred detached",
      "per_patch = (pred.float() - target.float())", "per_patch = (pred.detach().float() - target.float())", visible=True),
]


MISTAKES: dict[str, list[Mistake]] = {
    "lab01_denoising_autoencoders": LAB01,
    "lab02_context_and_color": LAB02,
    "lab03_pretext_tasks": LAB03,
    "lab04_cpc": LAB04,
    "lab05_simclr_moco": LAB05,
    "lab06_byol_dino": LAB06,
    "lab07_mae": LAB07,
}


# ---------------------------------------------------------------------------------------------------- the runner
def _solution_region(source: str) -> tuple[int, int]:
    """Where the answer lies in a solution cell: between ### BEGIN SOLUTION and ### END SOLUTION."""
    start = source.index("### BEGIN SOLUTION")
    return start, source.index("### END SOLUTION", start)


def apply_mistake(source: str, old: str, new: str) -> str:
    """The solution cell with `old` replaced by `new` in its answer (not in its docstring)."""
    start, end = _solution_region(source)
    return source[:start] + source[start:end].replace(old, new) + source[end:]


def _notebook(lab: str, path: Path | None = None):
    import nbformat

    return nbformat.read(path or SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)


def _meta(cell) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def _run_lab(notebook_path: str, mistakes: list[dict]) -> dict:
    """In this (fresh) process: run the lab's graded code once correct and once per mistake; return
    {"correct": {grade_id: outcome}, "mistakes": [{grade_id: outcome}, ...], "calls": {grade_id: [functions]},
    "seconds": [...]}; an outcome is {"status": "pass", "seconds": s} or {"status": exception name, "message": str,
    "visible_part": bool (raised by a statement of the visible part of the cell)}.

    The correct run records which of the student's functions each graded cell calls (directly or through other
    functions). With a mistake in function f, a graded cell that never calls f cannot change: it is not run again
    and keeps the correct run's outcome; the cells that call f, and the cells the mistake names, run.
    """
    import contextlib
    import io
    import traceback

    import nbformat

    os.environ["NBGRADER_EXECUTION"] = "autograde"
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(notebook_path, as_version=4)
    cells = []  # (kind, grade_id, source)
    for cell in nb.cells:
        meta = _meta(cell)
        if cell.cell_type != "code" or not meta:
            continue  # markdown, and the training cells (no nbgrader metadata)
        kind = "solution" if meta.get("solution") else "grade" if meta.get("grade") else "context"
        cells.append((kind, meta.get("grade_id"), cell.source))
    solution_files = {f"<cell {grade_id}>": grade_id for kind, grade_id, _ in cells if kind == "solution"}
    calls: dict[str, set] = {}

    def tracer(seen: set):
        def trace(frame, event, arg):
            function = solution_files.get(frame.f_code.co_filename)
            if function is not None:
                seen.add(function)
            return None  # no line tracing

        return trace

    def run(mistake=None, correct=None):
        namespace = {"__name__": "__main__"}
        outcomes = {}
        for kind, grade_id, source in cells:
            if kind == "solution" and mistake is not None and grade_id == mistake["function"]:
                source = apply_mistake(source, mistake["old"], mistake["new"])
            filename = f"<cell {grade_id}>"
            if kind != "grade":
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 (the course's own notebook)
                except Exception as err:  # noqa: BLE001 (as in a notebook: the next cells run anyway)
                    outcomes[f"<{grade_id}>"] = {"status": type(err).__name__, "message": str(err), "visible_part": False}
                continue
            if mistake is not None and mistake["function"] not in calls[grade_id] and grade_id not in mistake["failing"]:
                outcomes[grade_id] = correct[grade_id]  # it never calls the function with the mistake
                continue
            code = compile(source, filename, "exec")
            hidden_line = next((i for i, line in enumerate(source.splitlines(), 1) if HIDDEN_MARKER in line), 10**9)
            if mistake is None:
                calls[grade_id] = set()
                sys.settrace(tracer(calls[grade_id]))
            start = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(code, namespace)  # noqa: S102
                outcomes[grade_id] = {"status": "pass", "seconds": time.perf_counter() - start}
            except BaseException as err:  # noqa: BLE001 (recorded, judged by the test)
                lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__) if frame.filename == filename]
                outcomes[grade_id] = {
                    "status": type(err).__name__,
                    "message": str(err),
                    "visible_part": bool(lines) and lines[0] < hidden_line,  # the cell's own statement that raised
                }
            finally:
                sys.settrace(None)
        return outcomes

    result = {"mistakes": [], "seconds": []}
    start = time.perf_counter()
    result["correct"] = run()
    result["seconds"].append(time.perf_counter() - start)
    result["calls"] = {grade_id: sorted(functions) for grade_id, functions in calls.items()}
    for mistake in mistakes:
        start = time.perf_counter()
        result["mistakes"].append(run(mistake, result["correct"]))
        result["seconds"].append(time.perf_counter() - start)
    return result


def run_lab(lab: str, mistakes: list[Mistake], notebook_path: Path | None = None, timeout: float = 900) -> dict:
    """Run _run_lab in a fresh Python process (nothing of one lab leaks into another, or into pytest)."""
    path = notebook_path or SOLUTIONS / lab / f"{lab}.ipynb"
    env = dict(os.environ, NBGRADER_EXECUTION="autograde", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, __file__, str(path)],
        input=json.dumps([dict(asdict(m), failing=list(m.failing)) for m in mistakes]),
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout,
    )
    assert proc.returncode == 0, f"{lab}: the runner exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------- the tests
LABS = sorted(MISTAKES)


def graded_functions(lab: str) -> list[str]:
    """The grade_ids of the solution cells that hold code (the functions students write)."""
    return [_meta(c)["grade_id"] for c in _notebook(lab).cells if c.cell_type == "code" and _meta(c).get("solution")]


@pytest.mark.parametrize("lab", LABS)
def test_every_old_text_is_in_its_solution_cell(lab):
    sources = {_meta(c).get("grade_id"): c.source for c in _notebook(lab).cells if _meta(c).get("solution")}
    for mistake in MISTAKES[lab]:
        assert mistake.function in sources, f"{lab}: no solution cell {mistake.function!r} (mistake: {mistake.what})"
        start, end = _solution_region(sources[mistake.function])
        count = sources[mistake.function][start:end].count(mistake.old)
        assert count == 1, (
            f"{lab}, {mistake.function}: {mistake.old!r} occurs {count} times in the answer of the solution cell, expected once; "
            f"update MISTAKES in tests/test_lab_mistakes.py (mistake: {mistake.what})"
        )


@pytest.mark.parametrize("lab", LABS)
def test_every_graded_function_has_mistakes(lab):
    covered = {m.function for m in MISTAKES[lab]}
    missing = [f for f in graded_functions(lab) if f not in covered]
    assert not missing, f"{lab}: no mistake listed for {missing}"


def test_the_autograded_mistakes_are_in_the_table():
    """tests/test_labs.py autogrades one subtle mistake per lab (WRONG_SUBMISSIONS) and expects its cells to score 0
    with an AssertionError; the table here proves that, cell by cell, in seconds."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_labs import WRONG_SUBMISSIONS

    for lab, wrong in WRONG_SUBMISSIONS.items():
        same = [m for m in MISTAKES.get(lab, []) if (m.function, m.old, m.new) == (wrong.cell, wrong.old, wrong.new)]
        assert same, f"{lab}: WRONG_SUBMISSIONS in tests/test_labs.py has '{wrong.what}', which MISTAKES here lacks: add it (same old and new)"
        assert set(same[0].failing) == set(wrong.fails), f"{lab}: '{wrong.what}' fails {sorted(wrong.fails)} there, {sorted(same[0].failing)} here"
        assert same[0].visible is False, f"{lab}: '{wrong.what}' must pass the visible tests (it is the subtle mistake of the lab)"


def judge(lab: str, mistakes: list[Mistake], result: dict) -> list[str]:
    """The problems, one line each, with a run's outcomes."""
    problems = []
    graded = list(result["correct"])
    for grade_id, outcome in result["correct"].items():
        if outcome["status"] != "pass":
            problems.append(f"the correct solution fails {grade_id}: {outcome['status']}: {outcome.get('message', '')[:300]}")
    for mistake, outcomes in zip(mistakes, result["mistakes"]):
        unknown = set(mistake.failing) - set(graded)
        if unknown:
            problems.append(f"[{mistake.function}] {mistake.what}: names graded cells {sorted(unknown)} that the lab does not have")
        for grade_id in graded:
            outcome = outcomes[grade_id]
            if grade_id in mistake.failing:
                if outcome["status"] == "pass":
                    problems.append(f"[{mistake.function}] {mistake.what}: {grade_id} passes; the mistake is not caught")
                elif outcome["status"] != "AssertionError" or not outcome["message"].strip():
                    problems.append(f"[{mistake.function}] {mistake.what}: {grade_id} raised {outcome['status']}: "
                                    f"{outcome['message'][:300]!r}; expected an AssertionError that says what is wrong")
            elif outcome["status"] != "pass":
                problems.append(f"[{mistake.function}] {mistake.what}: {grade_id} should pass but raised {outcome['status']}: "
                                f"{outcome.get('message', '')[:300]}")
        own = outcomes.get(mistake.failing[0], {})
        if own.get("status") == "AssertionError" and mistake.visible is not None and own["visible_part"] != mistake.visible:
            where = "the visible tests" if own["visible_part"] else "the hidden tests only"
            problems.append(f"[{mistake.function}] {mistake.what}: caught by {where}; set visible={own['visible_part']} in MISTAKES")
    return problems


@pytest.mark.parametrize("lab", LABS)
def test_every_mistake_is_caught(lab):
    mistakes = MISTAKES[lab]
    result = run_lab(lab, mistakes)
    problems = judge(lab, mistakes, result)
    assert not problems, f"{lab}: {len(problems)} problem(s):\n" + "\n".join(problems)


if __name__ == "__main__":
    # The runner's process: python tests/test_lab_mistakes.py NOTEBOOK < mistakes.json > result (last line, JSON).
    _result = _run_lab(sys.argv[1], json.load(sys.stdin))
    sys.stdout.write("\n" + json.dumps(_result) + "\n")
