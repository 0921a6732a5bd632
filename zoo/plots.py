"""End-of-run figures: the loss curve and the gradient/weight histograms (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` set up to draw into files (the Agg backend, no display needed).

    The one place Zoo and its plugins get matplotlib from (``zoo.pyplot()``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve(history, path: Path) -> Path:
    """``train/loss`` per step with ``val/loss`` per epoch on the same step axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history.steps, history.losses, lw=0.8, alpha=0.6, label="train/loss (per step)")
    if history.epochs:
        ax.plot([e["step"] for e in history.epochs], [e["train/loss_epoch"] for e in history.epochs],
                "o-", label="train/loss_epoch")
        ax.plot([e["step"] for e in history.epochs], [e["val/loss"] for e in history.epochs], "s-", label="val/loss")
    if history.losses and min(history.losses) > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title="Loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def histograms(hist: dict[str, list], npz_path: Path, png_path: Path, max_rows: int = 8) -> tuple[Path, Path]:
    """Save every histogram compactly (``.npz``: steps, ranges, counts per tensor) and plot them.

    The PNG shows, for up to ``max_rows`` tensors, how the distribution of weights and gradients
    moved over training: one heat-map per tensor, step on x, value on y.
    """
    arrays = {}
    for key, rows in hist.items():
        arrays[f"{key}/steps"] = np.array([r[0] for r in rows], dtype=np.int64)
        arrays[f"{key}/range"] = np.array([(r[1], r[2]) for r in rows], dtype=np.float32)
        arrays[f"{key}/counts"] = np.array([r[3] for r in rows], dtype=np.float32)
    np.savez_compressed(npz_path, **arrays)
    plt = pyplot()
    names = sorted({k.split("/", 1)[1] for k in hist})[:max_rows]
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 1.8 * len(names) + 0.6), squeeze=False)
    for r, name in enumerate(names):
        for c, kind in enumerate(("weight", "grad")):
            ax = axes[r][c]
            rows = hist.get(f"{kind}/{name}")
            if not rows:
                ax.axis("off")
                continue
            lo = min(x[1] for x in rows)
            hi = max(x[2] for x in rows)
            bins = 48
            grid = np.zeros((bins, len(rows)))
            for j, (_, a, b, counts) in enumerate(rows):
                centers = np.linspace(a, b, len(counts))
                idx = np.clip(((centers - lo) / max(hi - lo, 1e-12) * (bins - 1)).astype(int), 0, bins - 1)
                np.add.at(grid[:, j], idx, counts)
            ax.imshow(np.log1p(grid), aspect="auto", origin="lower", cmap="viridis",
                      extent=(rows[0][0], rows[-1][0], lo, hi))
            ax.set_title(f"{kind} {name}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.supxlabel("step", fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return npz_path, png_path
