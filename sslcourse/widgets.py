"""Interactive explorers for Jupyter and Colab (ipywidgets).

The static book cannot run them; chapters show a figure there and build the
widget only in a live notebook. ipywidgets is imported when an explorer is
built, not when this module is imported, so ``import sslcourse.widgets``
works without it.

- :func:`corruption_explorer`: the denoising autoencoder's corruptions
  (gaussian, masking, salt-and-pepper) at a level chosen with a slider.
"""

from __future__ import annotations

import torch

from . import augment

__all__ = ["corruption_explorer", "CORRUPTION_LEVELS"]

#: Slider ranges per corruption: (min, max, step, default). sigma for gaussian, a fraction otherwise.
CORRUPTION_LEVELS = {
    "gaussian": (0.0, 1.0, 0.05, 0.3),
    "masking": (0.0, 1.0, 0.05, 0.5),
    "salt_and_pepper": (0.0, 1.0, 0.05, 0.25),
}


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the explorers need ipywidgets: pip install ipywidgets "
            "(Colab and the course's requirements.txt already have it)"
        ) from err
    return ipywidgets


def _as_float_batch(images) -> torch.Tensor:
    images = getattr(images, "images", images)  # an ImageDataset works too
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise TypeError(f"corruption_explorer expects images (N, C, H, W) or an ImageDataset; got {type(images).__name__}")
    images = images.detach().cpu()
    return images.float().div(255) if images.dtype == torch.uint8 else images.float().clamp(0, 1)


def corruption_explorer(images, *, n: int = 8, kind: str = "masking", level: float | None = None, seed: int = 0):
    """A widget that corrupts ``n`` images with a chosen corruption and level.

    Controls: the corruption (:data:`sslcourse.augment.CORRUPTIONS`), its
    level (sigma for gaussian, the corrupted fraction otherwise) and the
    random seed. The figure shows the clean images, the corrupted ones, and
    where the corruption touched them (the mask the emphasized loss uses).

    Args:
        images: uint8 or float (N, C, H, W), or an ImageDataset; the first ``n`` are shown.
        n: how many images.
        kind, level, seed: the initial settings.
    Returns:
        an ``ipywidgets.VBox``; display it (the last expression of a cell does).
        Its ``.update()`` redraws, and ``.controls`` holds the three controls.
    """
    widgets = _ipywidgets()
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .plots import image_grid

    if kind not in augment.CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; expected one of {sorted(augment.CORRUPTIONS)}")
    batch = _as_float_batch(images)[:n]
    lo, hi, step, default = CORRUPTION_LEVELS[kind]
    kind_box = widgets.Dropdown(options=list(augment.CORRUPTIONS), value=kind, description="corruption")
    level_box = widgets.FloatSlider(value=default if level is None else level, min=lo, max=hi, step=step, description="level")
    seed_box = widgets.IntSlider(value=seed, min=0, max=99, description="seed")
    out = widgets.Output()

    def update(*_):
        generator = torch.Generator().manual_seed(seed_box.value)
        noisy, mask = augment.corrupt(batch, kind_box.value, level_box.value, generator=generator)
        name = "sigma" if kind_box.value == "gaussian" else "fraction"
        fig = image_grid(
            {"clean": batch, "corrupted": noisy, "where": mask.float()},
            n=n,
            title=f"{kind_box.value}, {name} = {level_box.value:.2f}",
        )
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    def on_kind(change):
        lo, hi, step, default = CORRUPTION_LEVELS[change["new"]]
        level_box.description = "sigma" if change["new"] == "gaussian" else "fraction"
        if level_box.value == default:
            update()
        else:
            level_box.value = default  # redraws through the level observer

    level_box.description = "sigma" if kind == "gaussian" else "fraction"
    kind_box.observe(on_kind, names="value")
    level_box.observe(update, names="value")
    seed_box.observe(update, names="value")
    box = widgets.VBox([widgets.HBox([kind_box, level_box, seed_box]), out])
    box.controls = (kind_box, level_box, seed_box)
    box.update = update
    update()
    return box
