"""The end-of-run figures drawn from what the step log measured: readable, never blank, no warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from zoo import plots
from zoo.training.callbacks.step_log import HIST_BINS, History, histogram


def snapshots(steps, scale_of=lambda step: 1.0, n=2000, seed=0, bias_grad=False):
    """Histograms of a weight and a gradient at each step, as the step log fetches them: (step, lo, hi, counts).

    The bias has no gradient unless ``bias_grad`` (a tensor with a gradient of zeros).
    """
    g = torch.Generator().manual_seed(seed)
    hist = {}
    for step in steps:
        for kind, shift in (("weight", 0.5), ("grad", 0.0)):
            lo, hi, *counts = histogram(torch.randn(n, generator=g) * scale_of(step) + shift).tolist()
            hist.setdefault(f"{kind}/net.0.weight", []).append((step, lo, hi, counts))
    lo, hi, *counts = histogram(torch.zeros(8)).tolist()  # a bias of one value: histc widens its range
    hist["weight/net.0.bias"] = [(s, lo, hi, counts) for s in steps]
    if bias_grad:
        hist["grad/net.0.bias"] = [(s, lo, hi, counts) for s in steps]
    return hist


def coloured_fraction(png) -> float:
    """The share of the image's pixels in colour: the drawn data (text, axes and background are grey)."""
    import matplotlib.image

    img = matplotlib.image.imread(png)[..., :3]
    return float(((img.max(axis=2) - img.min(axis=2)) > 0.15).mean())


@pytest.mark.parametrize("steps, bias_grad", [([100], False), ([100, 200, 300, 400], False),
                                              ([100, 200, 300, 400], True), (list(range(10, 1010, 10)), True)],
                         ids=["one snapshot", "four snapshots, a panel empty", "four snapshots, one step axis",
                              "a hundred snapshots"])
def test_histogram_figure_shows_what_was_measured(tmp_path, steps, bias_grad):
    """Every panel drawn (a tensor without a gradient leaves its panel empty); when every panel is
    over the steps they share one step axis, labelled on the bottom row (the figure is shorter)."""
    hist = snapshots(steps, scale_of=lambda s: 1 + s / 100, bias_grad=bias_grad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's warning for an empty image, or any other, fails the test
        npz, png = plots.histograms(hist, tmp_path / "h.npz", tmp_path / "h.png")
    import matplotlib.image

    img = matplotlib.image.imread(png)[..., :3]
    assert img.std() > 0.05  # not blank
    assert coloured_fraction(png) > 0.03, "the panels show no data"
    saved = np.load(npz)
    assert saved["weight/net.0.weight/steps"].tolist() == steps
    assert saved["grad/net.0.weight/counts"].shape == (len(steps), HIST_BINS)
    assert img.shape[0] == (400 if bias_grad else 460)  # 1.6 or 1.9 inches a row, 0.8 more, at 100 dpi


def history(losses, epochs=()):
    h = History(steps=list(range(1, len(losses) + 1)), losses=[float(v) for v in losses])
    h.epochs = [{"step": s, "train/loss_epoch": a, "val/loss": b} for s, a, b in epochs]
    return h


def number(label: str) -> float:
    return float(label.replace("\u2212", "-"))  # matplotlib writes a minus sign, not a hyphen


def y_labels(fig) -> list[str]:
    """The loss axis' tick labels inside its view, top to bottom, as drawn."""
    fig.draw_without_rendering()
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    ticks = [t for t in ax.yaxis.get_major_ticks() if lo <= t.get_loc() <= hi and t.label1.get_visible()]
    return [t.label1.get_text() for t in sorted(ticks, key=lambda t: -t.get_loc())]


@pytest.mark.parametrize("lo, hi, want", [
    (0.02, 1.05, ["1", "0.5", "0.2", "0.1", "0.05", "0.02"]),  # the default run's two decades: 1, 2 and 5 of each
    (0.3, 0.9, None),  # inside one decade: still labels, plain
    (1e-5, 3.0, None),  # five decades: powers of ten
])
def test_log_scaled_loss_is_labelled_in_plain_numbers(lo, hi, want):
    """No mathtext (``$10^{-1}$``) and no minor ticks on the log axis: plain numbers a reader can read off."""
    fig = plots.loss_figure(history(np.geomspace(hi, lo, 400), epochs=[(200, hi / 2, hi / 1.5)]))
    labels = y_labels(fig)
    assert fig.axes[0].get_yscale() == "log"
    assert len(labels) >= 3 and all("$" not in t and lo * 0.9 <= number(t) <= hi * 1.1 for t in labels), labels
    assert len(fig.axes[0].yaxis.get_minorticklocs()) == 0
    if want is not None:
        assert labels == want
    if hi / lo > 100:
        assert all(np.log10(number(t)).is_integer() for t in labels), labels


def test_a_loss_at_or_below_zero_keeps_a_linear_axis():
    fig = plots.loss_figure(history(np.linspace(1.0, -0.5, 50)))
    labels = y_labels(fig)
    assert fig.axes[0].get_yscale() == "linear"
    values = [number(t) for t in labels]
    assert len(values) >= 3 and min(values) < 0 < max(values), labels


@pytest.mark.parametrize("make", [
    lambda g: torch.randn(5000, generator=g),
    lambda g: torch.rand(5000, generator=g) ** 3 * 4 - 1,  # skewed
    lambda g: torch.cat([torch.randn(2500, generator=g) - 4, torch.randn(2500, generator=g) + 4]),  # two modes
])
def test_percentiles_come_from_each_snapshots_own_bins(make):
    """The bands are the data's percentiles, read from its own 32 bins (within one bin), not from a shared grid."""
    t = make(torch.Generator().manual_seed(3))
    lo, hi, *counts = histogram(t).tolist()
    got = plots.percentiles(lo, hi, counts)
    want = np.percentile(t.numpy(), plots.PERCENTILES)
    assert got[0] == pytest.approx(t.min().item()) and got[-1] == pytest.approx(t.max().item())
    assert np.abs(got - want).max() <= (hi - lo) / HIST_BINS
    assert np.all(np.diff(got) >= 0)


def test_percentiles_of_a_tensor_of_one_value():
    lo, hi, *counts = histogram(torch.full((10,), 0.25)).tolist()
    assert plots.percentiles(lo, hi, counts).tolist() == [0.25] * len(plots.PERCENTILES)
