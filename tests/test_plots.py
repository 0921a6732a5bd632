"""The end-of-run figures drawn from what the step log measured: readable, never blank, no warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from zoo import plots
from zoo.training.callbacks.step_log import HIST_BINS, histogram


def snapshots(steps, scale_of=lambda step: 1.0, n=2000, seed=0):
    """Histograms of a weight and a gradient at each step, as the step log fetches them: (step, lo, hi, counts)."""
    g = torch.Generator().manual_seed(seed)
    hist = {}
    for step in steps:
        for kind, shift in (("weight", 0.5), ("grad", 0.0)):
            lo, hi, *counts = histogram(torch.randn(n, generator=g) * scale_of(step) + shift).tolist()
            hist.setdefault(f"{kind}/net.0.weight", []).append((step, lo, hi, counts))
    lo, hi, *counts = histogram(torch.zeros(8)).tolist()  # a bias of one value: histc widens its range
    hist["weight/net.0.bias"] = [(s, lo, hi, counts) for s in steps]
    return hist


def coloured_fraction(png) -> float:
    """The share of the image's pixels in colour: the drawn data (text, axes and background are grey)."""
    import matplotlib.image

    img = matplotlib.image.imread(png)[..., :3]
    return float(((img.max(axis=2) - img.min(axis=2)) > 0.15).mean())


@pytest.mark.parametrize("steps", [[100], [100, 200, 300, 400], list(range(10, 1010, 10))],
                         ids=["one snapshot", "four snapshots", "a hundred snapshots"])
def test_histogram_figure_shows_what_was_measured(tmp_path, steps):
    hist = snapshots(steps, scale_of=lambda s: 1 + s / 100)
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
