"""``photos``: patches of the colour photographs that ship with scikit-image.

The colour methods (colorization, split-brain) need colour images, and the
course must run offline. scikit-image installs a handful of real photographs
with its wheel (no download); this source cuts them into overlapping square
patches. It is a small, honest stand-in for a real colour dataset on a CPU;
on a GPU use CIFAR-10 or STL-10.

Each photo is scaled so that its shorter side is ``BASE_SIDE`` pixels, then
patches of ``PATCH_SIDE`` pixels are cut on a grid with stride ``STRIDE``.
Patches that lie entirely in the left three quarters of the photo form the
``train`` split, those entirely in the right quarter the ``test`` split, so
no test pixel is seen in training (``all`` adds the patches that straddle
the line). The label of a patch is the photo it came
from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dataset import ImageDataset

__all__ = ["PHOTOS", "PHOTO_SPLITS", "load_photos"]

#: The scikit-image photographs used, in label order (natural scenes only: no
#: logos, colour wheels or micrographs).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
PHOTO_SPLITS = ("train", "test", "all")
BASE_SIDE = 256
PATCH_SIDE = 64
STRIDE = 16


def _photo(name: str) -> torch.Tensor:
    """One photograph as uint8 (3, H, W), shorter side BASE_SIDE."""
    try:
        import skimage.data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'photos' dataset needs scikit-image: pip install scikit-image (Colab has it already)"
        ) from err
    image = torch.from_numpy(getattr(skimage.data, name)()[..., :3].copy()).permute(2, 0, 1)
    h, w = image.shape[-2:]
    scale = BASE_SIDE / min(h, w)
    size = (round(h * scale), round(w * scale))
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def load_photos(split: str = "train") -> ImageDataset:
    """Patches of the scikit-image photographs: uint8 (N, 3, 64, 64), labels = photo index.

    ``split``: "train" (patches inside the left three quarters of each photo),
    "test" (patches inside the right quarter) or "all" (every patch).
    """
    if split not in PHOTO_SPLITS:
        raise ValueError(f"dataset 'photos' has splits {PHOTO_SPLITS}, got {split!r}")
    patches, labels = [], []
    for label, name in enumerate(PHOTOS):
        image = _photo(name)
        h, w = image.shape[-2:]
        border = (3 * w) // 4  # train patches start left of it; test patches lie right of it
        for top in range(0, h - PATCH_SIDE + 1, STRIDE):
            for left in range(0, w - PATCH_SIDE + 1, STRIDE):
                is_train = left + PATCH_SIDE <= border
                is_test = left >= border
                if split == "all" or (split == "train" and is_train) or (split == "test" and is_test):
                    patches.append(image[:, top : top + PATCH_SIDE, left : left + PATCH_SIDE])
                    labels.append(label)
    return ImageDataset(torch.stack(patches).contiguous(), torch.tensor(labels, dtype=torch.int64), list(PHOTOS), "photos", split)
