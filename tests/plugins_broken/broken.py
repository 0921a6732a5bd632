"""Deliberately broken architectures: each breaks exactly one clause of the plugin contract.

These are plugin files for ``tests/test_contract.py`` (loaded through ``ZOO_PLUGIN_DIR``), not
test modules. Every network is a small MLP on tabular data with one bug.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn as nn

import zoo


class Net(nn.Module):
    """``body -> relu -> out``, the correct base the broken variants change.

    Args:
        n_in: input features; n_out: classes; hidden: hidden units.
    """

    def __init__(self, n_in: int, n_out: int, hidden: int):
        super().__init__()
        self.body = nn.Linear(n_in, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.out(torch.relu(self.body(x)))


class NoGradNet(Net):
    """Declares a ``head`` layer but forward never uses it: it gets no gradient."""

    def __init__(self, n_in, n_out, hidden):
        super().__init__(n_in, n_out, hidden)
        self.head = nn.Linear(hidden, n_out, bias=False)


class WrongShapeNet(Net):
    """One output too few (an off-by-one in the output layer)."""

    def __init__(self, n_in, n_out, hidden):
        super().__init__(n_in, n_out - 1, hidden)


class CantLearnNet(nn.Module):
    """Ignores its input: a learned constant, which cannot fit one batch."""

    def __init__(self, n_in, n_out, hidden):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return self.bias.expand(len(x), -1)


class LeakyBufferNet(Net):
    """Keeps a random input scale in a non-persistent buffer: the state_dict misses it."""

    def __init__(self, n_in, n_out, hidden):
        super().__init__(n_in, n_out, hidden)
        self.register_buffer("scale", torch.rand(n_in) + 0.5, persistent=False)

    def forward(self, x):
        return super().forward(x * self.scale)


class UnseededNet(Net):
    """Scales its initial weights with Python's ``random``, which torch's seed does not fix."""

    def __init__(self, n_in, n_out, hidden):
        super().__init__(n_in, n_out, hidden)
        with torch.no_grad():
            self.body.weight.mul_(0.5 + random.random())


def _builder(cls):
    def build(info: zoo.DataInfo, hidden: int = 16, activation=None):
        zoo.check_range("model.hidden", hidden, 1)
        return cls(math.prod(info.input_shape), info.output_dim, hidden)
    return build


@zoo.hookimpl
def zoo_architectures():
    def arch(name, cls, **kw):
        kw.setdefault("defaults", {"hidden": 16})
        return zoo.Architecture(name=name, family="broken", kinds=("tabular",), build=_builder(cls),
                                smoke={"hidden": 8}, **kw)

    return [
        arch("no_grad_net", NoGradNet),
        arch("wrong_shape_net", WrongShapeNet),
        arch("cant_learn_net", CantLearnNet),
        arch("leaky_buffer_net", LeakyBufferNet),
        arch("unseeded_net", UnseededNet),
        # a class is not a config value: `zoo train model=class_default_net` could never compose
        arch("class_default_net", Net, defaults={"hidden": 16, "activation": nn.ReLU}),
        # builds with its smoke settings, not with its defaults
        arch("bad_defaults_net", Net, defaults={"hidden": 0}),
    ]


def _load_missing(seed: int):
    raise ValueError("data.path is required: point it at a CSV file")


@zoo.hookimpl
def zoo_datasets():
    return [zoo.Dataset(name="missing_csv", kind="tabular", task="classification", load=_load_missing,
                        description="a dataset that cannot load")]
