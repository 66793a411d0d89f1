"""Figures the chapters and labs share. Each returns its matplotlib Figure or Axes."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

__all__ = ["image_grid", "loss_curve", "label_efficiency_curve", "tsne_scatter", "format_accuracy_table", "format_spread_legend"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or float in [0, 1] -> (H, W) or (H, W, 3) float for imshow."""
    image = image.detach().cpu()
    image = image.float().div(255) if image.dtype == torch.uint8 else image.float()
    image = image.clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def image_grid(rows: Mapping[str, torch.Tensor], *, n: int = 8, scale: float = 1.1, title: str | None = None):
    """One row per entry of ``rows`` (e.g. clean / corrupted / restored), ``n`` images each.

    Each value is a batch (B, C, H, W), uint8 or float in [0, 1]. Returns the Figure.
    """
    plt = _plt()
    n = min(n, *(len(v) for v in rows.values()))
    fig, axes = plt.subplots(len(rows), n, figsize=(scale * n, scale * len(rows) + (0.3 if title else 0)), squeeze=False)
    for r, (name, batch) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(_to_hwc(batch[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout(pad=0.2)
    return fig


def loss_curve(history, *, ax=None, smooth: int = 20, label: str | None = None):
    """Loss per step of a :class:`sslcourse.History` (faint), with a running mean (solid)."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    steps = np.asarray(history.step)
    loss = np.asarray(history.loss)
    line = ax.plot(steps, loss, alpha=0.25, lw=1)[0]
    if len(loss) >= smooth > 1:
        kernel = np.ones(smooth) / smooth
        ax.plot(steps[smooth - 1 :], np.convolve(loss, kernel, mode="valid"), color=line.get_color(), lw=2, label=label or history.method)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if label or history.method:
        ax.legend(frameon=False)
    return ax


def label_efficiency_curve(
    results: Mapping[str, Mapping[str, float]], *, ax=None, title: str | None = None, ylabel: str = "test accuracy"
):
    """Accuracy against the fraction of labels used, one line per entry.

    ``results`` is ``{name: {str(fraction): accuracy}}``, e.g. from
    :func:`sslcourse.evaluate.fine_tune_sweep` or one probe of
    :func:`sslcourse.evaluate.compare_representations`.
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    for name, by_fraction in results.items():
        fractions = sorted(by_fraction, key=float)
        ax.plot([100 * float(f) for f in fractions], [100 * by_fraction[f] for f in fractions], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labels used (%)")
    ax.set_ylabel(f"{ylabel} (%)")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    return ax


def tsne_scatter(embedding: np.ndarray, labels: torch.Tensor | np.ndarray, *, classes: Sequence[str] | None = None, ax=None, title: str | None = None):
    """Scatter a 2-D embedding (N, 2), coloured by label."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    for c in np.unique(labels):
        pts = embedding[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, label=classes[c] if classes else str(c))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    ax.legend(markerscale=2.5, fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    return ax


def _percent(fraction: str) -> str:
    return f"{100 * float(fraction):g}%"


def _cell(accuracy: float) -> str:
    """ "92.0 ± 0.4" for an :class:`~sslcourse.evaluate.Accuracy`, "92.0" for a plain float (percent)."""
    return accuracy.pm() if hasattr(accuracy, "pm") else f"{100 * accuracy:.1f}"


def format_accuracy_table(rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """A plain-text table of :func:`sslcourse.evaluate.compare_representations` results:
    every cell in percent, as "mean ± spread" where it carries its spread."""
    probes = list(next(iter(rows.values())))
    fractions = list(next(iter(rows.values()))[probes[0]])
    header = ["representation"] + [f"{p} @ {_percent(f)}" for p in probes for f in fractions]
    body = [[name] + [_cell(rows[name][p][f]) for p in probes for f in fractions] for name in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body])


def format_spread_legend(rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """One line saying what each "±" of :func:`format_accuracy_table` is over, label fraction by fraction."""
    cells = next(iter(next(iter(rows.values())).values()))
    by_spread: dict[str, list[str]] = {}
    for fraction, acc in cells.items():
        by_spread.setdefault(getattr(acc, "spread_of", "a single measurement (no spread)"), []).append(_percent(fraction))
    parts = []
    for spread_of, fractions in by_spread.items():
        at = " and ".join(fractions)
        if "bootstrap" in spread_of:
            parts.append(f"at {at} of the labels over {spread_of} "
                         "(one fit per row; its test predictions resampled, the same resamples for every row)")
        else:
            parts.append(f"at {at} of the labels over {spread_of} (the same subsets for every row)")
    return "± is the sample standard deviation: " + "; ".join(parts)
