"""Small building blocks plugins share: name resolvers whose errors list the choices."""

from __future__ import annotations

import torch.nn as nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def activation(name: str, key: str = "model.activation") -> nn.Module:
    """``nn.Module`` for an activation name; a ``ValueError`` naming the choices otherwise."""
    try:
        return ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"{key}={name!r} is not an activation: choose one of {', '.join(ACTIVATIONS)}") from None


def check_range(key: str, value, low=None, high=None, *, low_open=False, high_open=False) -> None:
    """Raise ``ValueError`` naming ``key`` when ``value`` is outside ``[low, high]``."""
    bad = (low is not None and (value <= low if low_open else value < low)) or \
          (high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else f"{low} {'<' if low_open else '<='} "
        hi = "" if high is None else f" {'<' if high_open else '<='} {high}"
        raise ValueError(f"{key}={value!r} is out of range: expected {lo}{key.split('.')[-1]}{hi}")
