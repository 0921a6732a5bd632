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


def margins(fig, *, left: float, right: float, top: float, bottom: float, hspace: float = 0.2,
            wspace: float = 0.2) -> None:
    """Fixed margins, in inches: what ``tight_layout`` would find for Zoo's own figures, without its
    pass over every tick label (a third of the time of a figure of many axes). Titles are placed at
    ``y=1.0`` for the same reason (no search for tick labels above the axes)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h,
                        hspace=hspace, wspace=wspace)


# How Zoo's figures are written (Pillow's PNG options): zlib's fastest level takes a quarter less
# time than Pillow's default (6) for files a quarter larger (40 against 53 ms for the histograms).
PNG = {"compress_level": 1}


def figure(figsize: tuple[float, float]):
    """A ``matplotlib.figure.Figure`` of ``figsize`` inches, made without pyplot (nothing to close, no
    figure manager) and saved through Agg whatever pyplot's backend: matplotlib's own way of
    drawing figures into files."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def few_ticks(axis, nbins: int = 5, integer: bool = False) -> None:
    """At most ``nbins`` + 1 ticks on ``axis`` at 1, 2, 2.5 or 5 times a power of ten (the steps of
    matplotlib's default locator), and none beyond the axis' ends.

    Drawing an axis is mostly making its ticks (each is two lines and two texts, copied from the
    first) and laying out their labels; the default locator gives up to ten on a panel, with one
    past each end that is made and drawn nowhere.
    """
    from matplotlib.ticker import MaxNLocator

    class InView(MaxNLocator):
        def tick_values(self, vmin, vmax):
            ticks = super().tick_values(vmin, vmax)
            lo, hi = min(vmin, vmax), max(vmin, vmax)
            slack = (hi - lo) * 1e-9  # a tick on an end, give or take rounding
            return ticks[(ticks >= lo - slack) & (ticks <= hi + slack)]

    axis.set_major_locator(InView(nbins=nbins, steps=[1, 2, 2.5, 5, 10], integer=integer))


def plain_log_ticks(axis, values) -> None:
    """A log ``axis`` labelled in plain numbers (``0.05``, ``0.1``, ``1e-05``), no minor ticks: at 1, 2
    and 5 times each power of ten while ``values`` span less than two decades, at powers of ten
    beyond.

    matplotlib's default labels powers of ten as ``$10^{-1}$`` (its mathtext parser is built on
    first use: 0.1-0.3 s) and makes three dozen unlabelled minor ticks for a curve of two decades.
    """
    from matplotlib.ticker import LogLocator, NullLocator, StrMethodFormatter

    positive = [v for v in values if 0 < v < np.inf]
    decades = np.log10(max(positive) / min(positive)) if positive else 0.0
    axis.set_major_locator(LogLocator(subs=(1, 2, 5) if decades < 2 else (1,)))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_locator(NullLocator())


def loss_figure(history):
    """``train/loss`` per step with ``val/loss`` per epoch on the same step axis (log-scaled when
    every loss is above 0): the figure :func:`loss_curve` saves."""
    fig = figure((7, 4))
    ax = fig.add_subplot()
    ax.plot(history.steps, history.losses, lw=0.8, alpha=0.6, label="train/loss (per step)")
    values = list(history.losses)
    if history.epochs:
        ax.plot([e["step"] for e in history.epochs], [e["train/loss_epoch"] for e in history.epochs],
                "o-", label="train/loss_epoch")
        ax.plot([e["step"] for e in history.epochs], [e["val/loss"] for e in history.epochs], "s-", label="val/loss")
        values += [e[k] for e in history.epochs for k in ("train/loss_epoch", "val/loss")]
    few_ticks(ax.xaxis, integer=True)
    if history.losses and min(history.losses) > 0:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis, values)
    else:
        few_ticks(ax.yaxis, nbins=6)
    ax.set(xlabel="step", ylabel="loss")
    ax.set_title("Loss", y=1.0)
    ax.legend()
    margins(fig, left=0.8, right=0.15, top=0.35, bottom=0.5)
    return fig


def loss_curve(history, path: Path) -> Path:
    """:func:`loss_figure` saved as a PNG at ``path``."""
    loss_figure(history).savefig(path, dpi=110, pil_kwargs=PNG)
    return path


# The bands of TensorBoard's distribution view: min-max, 7-93%, 16-84% and 31-69% of the values
# (a normal distribution's +-1.5, +-1 and +-0.5 standard deviations), and the median.
PERCENTILES = (0, 7, 16, 31, 50, 69, 84, 93, 100)


def percentiles(lo: float, hi: float, counts, qs=PERCENTILES) -> np.ndarray:
    """The ``qs``-th percentiles of values counted in equal bins over ``[lo, hi]`` (linear within a bin).

    ``lo`` and ``hi`` are the smallest and largest value, so the 0th and 100th percentiles are
    exact; a tensor of one value (``lo == hi``) has that value at every percentile.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if hi <= lo or total <= 0:
        return np.full(len(qs), lo, dtype=np.float64)
    cdf = np.concatenate([[0.0], np.cumsum(counts) / total])
    edges = np.linspace(lo, hi, len(counts) + 1)
    out = np.interp(np.asarray(qs, dtype=np.float64) / 100, cdf, edges)
    out[np.asarray(qs) <= 0], out[np.asarray(qs) >= 100] = lo, hi
    return out


def histograms(hist: dict[str, list], npz_path: Path, png_path: Path, max_rows: int = 8) -> tuple[Path, Path]:
    """Save every histogram compactly (``.npz``: steps, ranges, counts per tensor) and plot them.

    The PNG has one row per tensor (up to ``max_rows``), its weights on the left and its
    gradients on the right, each drawn from its own measured bins, nothing resampled. Several
    snapshots are drawn as TensorBoard draws a distribution: percentile bands over the steps
    (:data:`PERCENTILES`), the median as a line with a dot at each snapshot (up to 20 of them),
    so that four snapshots look like four. A single snapshot is drawn as the histogram it is.
    """
    arrays = {}
    for key, rows in hist.items():
        arrays[f"{key}/steps"] = np.array([r[0] for r in rows], dtype=np.int64)
        arrays[f"{key}/range"] = np.array([(r[1], r[2]) for r in rows], dtype=np.float32)
        arrays[f"{key}/counts"] = np.array([r[3] for r in rows], dtype=np.float32)
    np.savez_compressed(npz_path, **arrays)
    names = sorted({k.split("/", 1)[1] for k in hist})[:max_rows]
    kinds = (("weight", "C0"), ("grad", "C1"))
    cells = [[[x for x in hist.get(f"{kind}/{name}", ()) if np.isfinite(x[1]) and np.isfinite(x[2])]
              for kind, _ in kinds] for name in names]
    # Every panel over the steps: one step axis for the figure, labelled on the bottom row only.
    shared = all(len(rows) > 1 for row in cells for rows in row)
    fig = figure((9, (1.6 if shared else 1.9) * len(names) + 0.8))
    axes = fig.subplots(len(names), 2, squeeze=False, sharex=shared)
    for r, name in enumerate(names):
        for c, (kind, color) in enumerate(kinds):
            ax, rows = axes[r][c], cells[r][c]
            if not rows:
                ax.axis("off")
                continue
            if len(rows) == 1:
                _one_snapshot(ax, rows[0], color)
                ax.set_title(f"{kind} {name} (step {rows[0][0]})", fontsize=8, y=1.0)
            else:
                _bands(ax, rows, color, xlabel=not shared or r == len(names) - 1)
                ax.set_title(f"{kind} {name}", fontsize=8, y=1.0)
            ax.tick_params(labelsize=6)
            few_ticks(ax.xaxis, integer=len(rows) > 1)
            few_ticks(ax.yaxis)
    several = any(len(v) > 1 for v in hist.values())
    fig.suptitle("values over training steps: min-max, 7-93%, 16-84%, 31-69% bands and the median"
                 if several else "values at the one step measured", fontsize=8)
    margins(fig, left=0.6, right=0.12, top=0.65, bottom=0.42, hspace=0.3 if shared else 0.55, wspace=0.16)
    fig.savefig(png_path, dpi=100, pil_kwargs=PNG)
    return npz_path, png_path


def _one_snapshot(ax, row, color: str) -> None:
    """A snapshot as its histogram: value on x, count on y."""
    _, lo, hi, counts = row
    if hi <= lo:  # one value: histc's bins span [value - 1, value + 1]
        lo, hi = lo - 1, hi + 1
    ax.stairs(counts, np.linspace(lo, hi, len(counts) + 1), fill=True, color=color, alpha=0.7)
    ax.set_xlabel("value", fontsize=7)
    ax.set_ylabel("count", fontsize=7)


def _bands(ax, rows, color: str, xlabel: bool = True) -> None:
    """Snapshots as percentile bands over the steps: step on x, value on y."""
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba

    steps = np.array([x[0] for x in rows])
    p = np.array([percentiles(lo, hi, counts) for _, lo, hi, counts in rows])
    n = len(PERCENTILES)
    # The four bands as one collection, outermost first, the inner ones on top (what fill_between
    # would draw, without a collection and an autoscale of every shared axis per band).
    bands = [np.column_stack([np.concatenate([steps, steps[::-1]]), np.concatenate([p[:, i], p[::-1, n - 1 - i]])])
             for i in range(n // 2)]
    ax.add_collection(PolyCollection(bands, facecolors=[to_rgba(color, a) for a in (0.15, 0.25, 0.35, 0.45)],
                                     linewidths=0))
    few = len(steps) <= 20  # a dot at each snapshot while they can be told apart
    ax.plot(steps, p[:, n // 2], color=color, lw=1, marker="o" if few else None, ms=5, mec="white", mew=0.5)
    ax.margins(x=0.02)
    if xlabel:
        ax.set_xlabel("step", fontsize=7)
    ax.set_ylabel("value", fontsize=7)
