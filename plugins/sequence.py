"""Sequence datasets (kind ``sequence``): generated from the seed or bundled with scikit-learn,
never downloaded. Inputs are float sequences ``(T, F)``; the RNN and transformer families read them.

* ``sine``: forecast the next ``horizon`` values of a sine wave from ``length`` noisy values;
  the target is standardised, so ``test/mse`` is the MSE relative to the signal's variance.
* ``adding``: the adding problem (Hochreiter & Schmidhuber, 1997): each step is a
  (value, marker) pair, two steps are marked, and the target is the sum of the two marked
  values; predicting the mean scores an MSE of 1/6 ≈ 0.17.
* ``digits_rows``: scikit-learn's 8x8 digits read top to bottom as 8 rows of 8 features.
"""

from __future__ import annotations

import math

import torch

import zoo
from zoo_builtins.tabular import toy_data


def _splits(x: torch.Tensor, y: torch.Tensor, *, seed: int, task: str, output_dim: int, meta: dict,
            stratify=None) -> zoo.Splits:
    tr, va, te = zoo.split_indices(len(x), seed, stratify=stratify)
    info = zoo.DataInfo(kind="sequence", task=task, input_shape=tuple(x.shape[1:]), output_dim=output_dim, meta=meta)
    return zoo.Splits(*(zoo.TensorSplit(x[i], y[i]) for i in (tr, va, te)), info=info)


def make_sine(seed: int, n_samples: int, length: int, horizon: int, noise: float):
    """Raw sine waves: noisy inputs (N, length, 1) and the clean continuation (N, horizon).

    Each wave has its own period (10 to 40 steps), amplitude (0.5 to 1.5) and phase.
    """
    g = torch.Generator().manual_seed(seed)
    period = 10 + 30 * torch.rand(n_samples, 1, generator=g)
    amplitude = 0.5 + torch.rand(n_samples, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n_samples, 1, generator=g)
    t = torch.arange(length + horizon, dtype=torch.float32)
    clean = amplitude * torch.sin(2 * math.pi * t / period + phase)
    x = clean[:, :length] + noise * torch.randn(n_samples, length, generator=g)
    return x.unsqueeze(-1), clean[:, length:]


def load_sine(seed: int, n_samples: int = 2000, length: int = 50, horizon: int = 5, noise: float = 0.1) -> zoo.Splits:
    """Forecast the next ``horizon`` values of a sine wave from ``length`` noisy ones (regression).

    Inputs and targets are standardised by the training split's mean and standard deviation
    (one scalar each), so the test MSE is relative to the signal's variance and predicting the
    mean scores about 1; ``meta["target_std"]`` converts back (raw MSE = MSE · target_std²).
    """
    zoo.check_range("data.n_samples", n_samples, 20)
    zoo.check_range("data.length", length, 2)
    zoo.check_range("data.horizon", horizon, 1)
    zoo.check_range("data.noise", noise, 0)
    x, y = make_sine(seed, n_samples, length, horizon, noise)
    tr, va, te = zoo.split_indices(n_samples, seed)
    target_mean, target_std = y[tr].mean(), y[tr].std()
    xs = zoo.standardize(x[tr], x[va], x[te], dim=(0, 1, 2))
    ys = zoo.standardize(y[tr], y[va], y[te], dim=(0, 1))
    info = zoo.DataInfo(kind="sequence", task="regression", input_shape=(length, 1), output_dim=horizon,
                        meta={"target_mean": float(target_mean), "target_std": float(target_std), "noise": noise,
                              "preprocessing": {"input": zoo.scaling(x[tr], dim=(0, 1, 2)),
                                                "target": zoo.scaling(y[tr], dim=(0, 1))}})
    return zoo.Splits(*(zoo.TensorSplit(a, b) for a, b in zip(xs, ys)), info=info)


def make_adding(seed: int, n_samples: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem: inputs (N, length, 2) of (value, marker) and targets (N, 1).

    Values are uniform in [0, 1); one step in the first half and one in the second half are
    marked with 1; the target is the sum of the two marked values.
    """
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n_samples, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n_samples, 1), generator=g)
    second = torch.randint(half, length, (n_samples, 1), generator=g)
    markers = torch.zeros(n_samples, length)
    markers.scatter_(1, first, 1.0)
    markers.scatter_(1, second, 1.0)
    target = (values * markers).sum(1, keepdim=True)
    return torch.stack([values, markers], -1), target


def load_adding(seed: int, n_samples: int = 10000, length: int = 50) -> zoo.Splits:
    """The adding problem as regression; nothing is standardised (the mean predictor scores 1/6)."""
    zoo.check_range("data.n_samples", n_samples, 20)
    zoo.check_range("data.length", length, 2)
    x, y = make_adding(seed, n_samples, length)
    return _splits(x, y, seed=seed, task="regression", output_dim=1, meta={"mean_predictor_mse": 1 / 6})


def load_digits_rows(seed: int) -> zoo.Splits:
    """scikit-learn's digits as sequences of 8 rows of 8 pixels, standardised per column."""
    bunch = toy_data("digits")
    x = torch.as_tensor(bunch.data, dtype=torch.float32).reshape(-1, 8, 8)
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    tr, va, te = zoo.split_indices(len(x), seed, stratify=y.numpy())
    xs = zoo.standardize(x[tr], x[va], x[te], dim=(0, 1))
    info = zoo.DataInfo(kind="sequence", task="classification", input_shape=(8, 8), output_dim=10,
                        meta={"class_names": [str(n) for n in bunch.target_names], "image_shape": (8, 8),
                              "preprocessing": {"input": zoo.scaling(x[tr], dim=(0, 1))}})
    return zoo.Splits(*(zoo.TensorSplit(a, y[i]) for a, i in zip(xs, (tr, va, te))), info=info)


@zoo.hookimpl
def zoo_datasets():
    return [
        zoo.Dataset(
            name="sine", kind="sequence", task="regression", load=load_sine,
            description="forecast the next values of noisy sine waves (standardised target: MSE relative to variance)",
            smoke={"n_samples": 64, "length": 12, "horizon": 2},
        ),
        zoo.Dataset(
            name="adding", kind="sequence", task="regression", load=load_adding,
            description="adding problem: sum the two marked values of a (value, marker) sequence (mean predictor: 0.17)",
            smoke={"n_samples": 64, "length": 10},
        ),
        zoo.Dataset(
            name="digits_rows", kind="sequence", task="classification", load=load_digits_rows,
            description="8x8 handwritten digits read as 8 rows of 8 features, 10 classes (1797)",
        ),
    ]
